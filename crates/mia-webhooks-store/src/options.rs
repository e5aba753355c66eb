//! What every backend's constructor takes besides its location.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Result, SecretKeys, StoreError};

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
    #[doc(hidden)]
    pub fail_ingest_before_commit: Arc<AtomicBool>,
    /// Fault injection for the conformance suite, not for production: while this is `true`,
    /// every backend fails [`Store::record`](crate::Store::record) of a non-empty batch, and the
    /// record part of [`Store::record_then_claim`](crate::Store::record_then_claim), inside
    /// their transaction, after writing the attempts, next states, health and any disabling and
    /// before the commit (the memory store, which has no transaction, before writing anything),
    /// so tests can show that a failed record writes nothing and every lease stays held.
    #[doc(hidden)]
    pub fail_record_before_commit: Arc<AtomicBool>,
}

impl StoreOptions {
    /// Fails when the test hook [`StoreOptions::fail_ingest_before_commit`] is set. Backends call
    /// this inside the ingest transaction, after its writes and before the commit.
    pub(crate) fn check_ingest_fault(&self) -> Result<()> {
        if self.fail_ingest_before_commit.load(Ordering::SeqCst) {
            return Err(StoreError::Database(Box::new(InjectedFault("ingestion"))));
        }
        Ok(())
    }

    /// Fails when the test hook [`StoreOptions::fail_record_before_commit`] is set. Backends call
    /// this inside the record transaction, after its writes and before the commit.
    pub(crate) fn check_record_fault(&self) -> Result<()> {
        if self.fail_record_before_commit.load(Ordering::SeqCst) {
            return Err(StoreError::Database(Box::new(InjectedFault("record"))));
        }
        Ok(())
    }
}

/// The error of an injected fault, naming the operation it failed.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0} failed before its commit")]
struct InjectedFault(&'static str);
