//! What every backend's constructor takes besides its location.

#[cfg(feature = "fault-injection")]
use std::sync::Arc;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Result, SecretKeys};

/// Options shared by every backend.
///
/// ```
/// use mia_webhooks_store::{SecretKeys, StoreOptions};
///
/// let keys = SecretKeys::from_bytes([7; 32], &[]);
/// let options = StoreOptions { secret_keys: Some(keys), ..StoreOptions::default() };
/// assert!(options.secret_keys.is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// The operator keys that seal webhook secrets at rest. Without keys, secrets are stored as
    /// given (the server warns once at start). The in-memory store keeps secrets in process
    /// memory and ignores this.
    pub secret_keys: Option<SecretKeys>,
    /// The most connections a backend keeps open to read (SQLite) or in its pool (PostgreSQL).
    /// `None` picks a default suited to the backend.
    pub max_connections: Option<u32>,
    /// SQLite: the page cache of the write connection, in MiB (`None`: 64). It holds the index
    /// pages ingestion and claims touch, and bounds the memory the embedded database takes
    /// beside the read connections' 2 MiB each. Other backends ignore it.
    pub sqlite_cache_mib: Option<u32>,
    /// Fault injection for the conformance suite, not for production: while this is `true`,
    /// every backend fails [`Store::ingest`](crate::Store::ingest) and
    /// [`Store::ingest_for_webhook`](crate::Store::ingest_for_webhook) inside their transaction,
    /// after writing the events and their deliveries and before the commit (the memory store,
    /// which has no transaction, before writing anything), so tests can show that nothing of a
    /// failed ingestion is left behind.
    ///
    /// Only with the feature `fault-injection`, which the crate's own tests turn on: a build
    /// without it has neither the field nor the check.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fail_ingest_before_commit: Arc<AtomicBool>,
    /// Fault injection for the conformance suite, not for production: while this is `true`,
    /// every backend fails [`Store::record`](crate::Store::record) of a non-empty batch, and the
    /// record part of [`Store::record_then_claim`](crate::Store::record_then_claim), inside
    /// their transaction, after writing the attempts, next states, health and any disabling and
    /// before the commit (the memory store, which has no transaction, before writing anything),
    /// so tests can show that a failed record writes nothing and every lease stays held.
    /// Only with the feature `fault-injection`.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fail_record_before_commit: Arc<AtomicBool>,
    /// Fault injection for the conformance suite and the worker's tests, not for production:
    /// while this is `true`, a [`Store::claim`](crate::Store::claim) that finds something to
    /// lease, and the claim part of `ingest_then_claim` and `record_then_claim`, fail inside
    /// their transaction after leasing and before the commit (the memory store fails every
    /// claim, before leasing anything), so tests can show what a failed claim leaves. Only with
    /// the feature `fault-injection`.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fail_claim_before_commit: Arc<AtomicBool>,
}

impl StoreOptions {
    /// Fails when the test hook `fail_ingest_before_commit` is set. Backends call this inside the
    /// ingest transaction, after its writes and before the commit. Without the feature
    /// `fault-injection` it does nothing.
    #[inline]
    pub(crate) fn check_ingest_fault(&self) -> Result<()> {
        #[cfg(feature = "fault-injection")]
        if self.fail_ingest_before_commit.load(Ordering::SeqCst) {
            return Err(injected("ingestion"));
        }
        Ok(())
    }

    /// Fails when the test hook `fail_record_before_commit` is set. Backends call this inside
    /// the record transaction, after its writes and before the commit. Without the feature
    /// `fault-injection` it does nothing.
    #[inline]
    pub(crate) fn check_record_fault(&self) -> Result<()> {
        #[cfg(feature = "fault-injection")]
        if self.fail_record_before_commit.load(Ordering::SeqCst) {
            return Err(injected("record"));
        }
        Ok(())
    }

    /// Fails when the test hook `fail_claim_before_commit` is set. Backends call this inside
    /// the claim transaction, after leasing and before the commit. Without the feature
    /// `fault-injection` it does nothing.
    #[inline]
    pub(crate) fn check_claim_fault(&self) -> Result<()> {
        #[cfg(feature = "fault-injection")]
        if self.fail_claim_before_commit.load(Ordering::SeqCst) {
            return Err(injected("claim"));
        }
        Ok(())
    }
}

/// The error of an injected fault, naming the operation it failed.
#[cfg(feature = "fault-injection")]
fn injected(operation: &'static str) -> crate::StoreError {
    crate::StoreError::Database(Box::new(InjectedFault(operation)))
}

/// The error of an injected fault, naming the operation it failed.
#[cfg(feature = "fault-injection")]
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0} failed before its commit")]
struct InjectedFault(&'static str);
