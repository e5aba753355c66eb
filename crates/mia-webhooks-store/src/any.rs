//! [`AnyStore`]: one of the backends, chosen at run time from a URL.

use mia_webhooks_model::{Delivery, DeliveryId, Timestamp, Webhook, WebhookId, WebhookPatch};

use crate::{
    ApiToken, AttemptResult, ClaimRequest, ClaimedDelivery, DeliveryDetail, DeliveryQuery,
    IngestReceipt, LeaseToken, MemoryStore, NewEvent, Page, PurgeReport, RecordOutcome, Result,
    Store, StoreOptions, StoreStats, TokenHash, WebhookQuery,
};

/// Any backend, chosen from a URL by [`AnyStore::open`]; it implements [`Store`] by delegation.
///
/// ```
/// use mia_webhooks_store::{AnyStore, Store, StoreOptions};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = AnyStore::open("memory:", StoreOptions::default()).await?;
/// assert_eq!(store.backend(), "memory");
/// store.ping().await?;
/// # Ok::<(), mia_webhooks_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// In process memory (`memory:`).
    Memory(MemoryStore),
    /// A SQLite file (`sqlite://path`, `sqlite:path` or a plain path).
    #[cfg(feature = "sqlite")]
    Sqlite(crate::SqliteStore),
    /// A PostgreSQL database (`postgres://` or `postgresql://`).
    #[cfg(feature = "postgres")]
    Postgres(crate::PostgresStore),
}

impl AnyStore {
    /// Opens the store `url` names:
    ///
    /// - `memory:` or `memory://`: a fresh in-memory store;
    /// - `postgres://...` or `postgresql://...`: PostgreSQL (feature `postgres`);
    /// - `sqlite://path`, `sqlite:path` or anything else, taken as a file path: SQLite
    ///   (feature `sqlite`).
    ///
    /// A backend left out of the build is a [`StoreError::Config`](crate::StoreError::Config) that says so.
    pub async fn open(url: &str, options: StoreOptions) -> Result<AnyStore> {
        if url == "memory:" || url == "memory://" {
            return Ok(AnyStore::Memory(MemoryStore::new(options)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return open_postgres(url, options).await;
        }
        open_sqlite(url, options).await
    }

    /// The backend's name: `memory`, `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(_) => "postgres",
        }
    }

    /// Whether the data outlives the process (everything but `memory:`).
    pub fn is_durable(&self) -> bool {
        !matches!(self, AnyStore::Memory(_))
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, options: StoreOptions) -> Result<AnyStore> {
    crate::postgres::PostgresStore::connect(url, options)
        .await
        .map(AnyStore::Postgres)
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, _options: StoreOptions) -> Result<AnyStore> {
    Err(crate::StoreError::Config(
        "this build of mia-webhooks was built without postgres support (enable the `postgres` feature)".into(),
    ))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, options: StoreOptions) -> Result<AnyStore> {
    crate::SqliteStore::open(url, options)
        .await
        .map(AnyStore::Sqlite)
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(url: &str, _options: StoreOptions) -> Result<AnyStore> {
    Err(crate::StoreError::Config(format!(
        "{url:?} names a SQLite database, but this build of mia-webhooks was built without sqlite support \
         (enable the `sqlite` feature)"
    )))
}

/// Calls the same method on whichever backend this is.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call.await,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => $call.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn create_webhook(&self, webhook: &Webhook) -> Result<()> {
        delegate!(self, s => s.create_webhook(webhook))
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Option<Webhook>> {
        delegate!(self, s => s.get_webhook(id))
    }

    async fn update_webhook(
        &self,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> Result<Option<Webhook>> {
        delegate!(self, s => s.update_webhook(id, patch, now))
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<bool> {
        delegate!(self, s => s.delete_webhook(id))
    }

    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>> {
        delegate!(self, s => s.list_webhooks(query))
    }

    async fn ingest(&self, events: &[NewEvent], now: Timestamp) -> Result<Vec<IngestReceipt>> {
        delegate!(self, s => s.ingest(events, now))
    }

    async fn ingest_for_webhook(
        &self,
        event: &NewEvent,
        webhook: WebhookId,
        now: Timestamp,
    ) -> Result<Option<IngestReceipt>> {
        delegate!(self, s => s.ingest_for_webhook(event, webhook, now))
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>> {
        delegate!(self, s => s.claim(request))
    }

    async fn record(&self, results: &[AttemptResult]) -> Result<Vec<RecordOutcome>> {
        delegate!(self, s => s.record(results))
    }

    async fn ingest_then_claim(
        &self,
        events: &[NewEvent],
        now: Timestamp,
        request: &ClaimRequest,
    ) -> (Result<Vec<IngestReceipt>>, Result<Vec<ClaimedDelivery>>) {
        delegate!(self, s => s.ingest_then_claim(events, now, request))
    }

    async fn record_then_claim(
        &self,
        results: &[AttemptResult],
        request: &ClaimRequest,
    ) -> (Result<Vec<RecordOutcome>>, Result<Vec<ClaimedDelivery>>) {
        delegate!(self, s => s.record_then_claim(results, request))
    }

    async fn release(&self, leases: &[(DeliveryId, LeaseToken)]) -> Result<()> {
        delegate!(self, s => s.release(leases))
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Page<Delivery>> {
        delegate!(self, s => s.list_deliveries(query))
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>> {
        delegate!(self, s => s.get_delivery(id))
    }

    async fn redeliver(&self, id: DeliveryId, now: Timestamp) -> Result<Option<Delivery>> {
        delegate!(self, s => s.redeliver(id, now))
    }

    async fn failing_since(&self, id: WebhookId) -> Result<Option<Timestamp>> {
        delegate!(self, s => s.failing_since(id))
    }

    async fn disable_webhook(&self, id: WebhookId, reason: &str, now: Timestamp) -> Result<bool> {
        delegate!(self, s => s.disable_webhook(id, reason, now))
    }

    async fn create_token(&self, token: &ApiToken) -> Result<()> {
        delegate!(self, s => s.create_token(token))
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<ApiToken>> {
        delegate!(self, s => s.find_token(hash))
    }

    async fn count_tokens(&self) -> Result<u64> {
        delegate!(self, s => s.count_tokens())
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<PurgeReport> {
        delegate!(self, s => s.purge(cutoff))
    }

    async fn stats(&self) -> Result<StoreStats> {
        delegate!(self, s => s.stats())
    }

    async fn ping(&self) -> Result<()> {
        delegate!(self, s => s.ping())
    }
}
