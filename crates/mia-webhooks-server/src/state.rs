//! What every request handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mia_webhooks_delivery::{AddressGuard, DispatcherHandle};
use mia_webhooks_model::EventCatalog;
use mia_webhooks_store::{AnyStore, ApiToken, TokenHash};

use crate::ingest_batcher::IngestBatcher;

/// The shared state of the router: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<AnyStore>,
    pub(crate) catalog: EventCatalog,
    pub(crate) guard: AddressGuard,
    /// The in-process delivery workers, if any.
    pub(crate) workers: Option<DispatcherHandle>,
    pub(crate) tokens: TokenCache,
    pub(crate) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub(crate) body_limit: usize,
    /// The most events ingested in one transaction.
    pub(crate) ingest_batch: usize,
    /// Started on the first ingestion (a Tokio runtime is certain there, not in [`AppState::new`]).
    ingest: OnceLock<IngestBatcher>,
}

impl AppState {
    /// State over `store`. `workers`, the in-process delivery workers if any, take the
    /// deliveries of each ingestion at once: leased in its transaction when they have room
    /// ([`DispatcherHandle::reserve`]), or woken to claim them.
    pub fn new(
        store: Arc<AnyStore>,
        catalog: EventCatalog,
        guard: AddressGuard,
        workers: Option<DispatcherHandle>,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                store,
                catalog,
                guard,
                workers,
                tokens: TokenCache::default(),
                metrics: crate::metrics::handle(),
                body_limit: 1024 * 1024,
                ingest_batch: crate::ingest_batcher::DEFAULT_BATCH,
                ingest: OnceLock::new(),
            }),
        }
    }

    /// The same state with another request body limit, in bytes.
    pub fn with_body_limit(self, body_limit: usize) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| unreachable!("configured before sharing"));
        AppState {
            inner: Arc::new(Inner {
                body_limit,
                ..inner
            }),
        }
    }

    /// The same state writing at most `events` ingested events per transaction (at least 1).
    pub fn with_ingest_batch(self, events: usize) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| unreachable!("configured before sharing"));
        AppState {
            inner: Arc::new(Inner {
                ingest_batch: events.max(1),
                ..inner
            }),
        }
    }

    pub(crate) fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    /// Wakes the in-process workers, if any, to claim deliveries just queued.
    pub(crate) fn wake_workers(&self) {
        if let Some(workers) = &self.inner.workers {
            workers.notify();
        }
    }

    /// The group-commit ingestion of this state's store, started on first use.
    pub(crate) fn ingest(&self) -> &IngestBatcher {
        self.inner.ingest.get_or_init(|| {
            IngestBatcher::spawn(
                Arc::clone(&self.inner.store),
                self.inner.ingest_batch,
                self.inner.workers.clone(),
            )
        })
    }
}

/// Tokens found recently, so that a busy emitter does not cost a database read per request.
/// Only found tokens are cached, briefly: a new token works at once, and nothing revokes tokens
/// yet.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<TokenHash, (ApiToken, Instant)>>,
}

const TOKEN_TTL: Duration = Duration::from_secs(30);
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<ApiToken> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_TTL)
            .map(|(token, _)| token.clone())
    }

    pub(crate) fn put(&self, token: ApiToken) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(token.hash, (token, Instant::now()));
    }
}
