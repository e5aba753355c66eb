//! The PostgreSQL backend: several server instances share one database.
//!
//! A connection pool; migrations embedded in the binary and run at [`PostgresStore::connect`]
//! (sqlx holds a PostgreSQL advisory lock while it migrates, so two processes starting at once
//! do not race). Claims lock the webhooks they take deliveries from with `SKIP LOCKED`, so
//! concurrent claimers split the work without waiting on each other and the per-webhook cap
//! holds across all of them. Records write a whole batch of results in one transaction with
//! array parameters (`UNNEST`), a fixed number of round trips whatever the batch size.
//!
//! Schema isolation: the URL may carry startup options, for example
//! `postgres://host/db?options[search_path]=tenant_a`, and the tables then live in that schema
//! (which must exist).

mod ingest;
mod log;
#[cfg(test)]
mod plans;
mod queue;
mod rows;
mod tokens;
mod webhooks;

use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;

use mia_webhooks_model::{
    Delivery, DeliveryId, Secret, Timestamp, Webhook, WebhookId, WebhookPatch,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::secrets;
use crate::{
    ApiToken, AttemptResult, ClaimRequest, ClaimedDelivery, DeliveryDetail, DeliveryQuery,
    IngestReceipt, LeaseToken, NewEvent, Page, PurgeReport, RecordOutcome, Result, Store,
    StoreError, StoreOptions, StoreStats, TokenHash, WebhookQuery,
};

/// The migrations of the PostgreSQL schema, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A [`Store`] on a PostgreSQL database (feature `postgres`).
///
/// Cloning is cheap: clones share the connection pool.
///
/// ```no_run
/// use mia_webhooks_store::{PostgresStore, Store, StoreOptions};
///
/// # async fn run() -> Result<(), mia_webhooks_store::StoreError> {
/// // Migrates the database on connect; several instances may start at once.
/// let url = "postgres://webhooks@db.internal:5432/webhooks";
/// let store = PostgresStore::connect(url, StoreOptions::default()).await?;
/// store.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: StoreOptions,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// How long an operation waits for a pooled connection.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`), with a pool, and applies the
    /// migrations this binary carries.
    ///
    /// Startup options in the URL are honoured: `?options[search_path]=my_schema` keeps the
    /// tables in `my_schema`.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<PostgresStore> {
        // sqlx would take any scheme and go looking for the host; say what is wrong instead.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Config(
                "a PostgreSQL URL starts with postgres:// or postgresql://".to_owned(),
            ));
        }
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(
                options
                    .max_connections
                    .unwrap_or_else(default_pool_size)
                    .max(1),
            )
            // While the database is unreachable, a request waits this long for a connection,
            // then fails (the API answers 503) instead of hanging for sqlx's 30 s.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect)
            .await
            .map_err(db_error)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(crate::sql_error::migration_error)?;
        Ok(PostgresStore { pool, options })
    }

    /// Closes every connection of the pool, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl PostgresStore {
    /// The stored form of a webhook's secret (sealed when a key is configured).
    fn seal_secret(&self, webhook: WebhookId, secret: &Secret) -> Result<String> {
        secrets::seal_secret(self.options.secret_keys.as_ref(), webhook, secret)
    }

    /// A webhook's secret from its stored form.
    fn open_secret(&self, webhook: WebhookId, stored: &str) -> Result<Secret> {
        secrets::open_secret(self.options.secret_keys.as_ref(), webhook, stored)
    }
}

/// The default pool size: enough for a server's request handlers and workers, few enough that several
/// instances fit in PostgreSQL's default of 100 connections.
fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    u32::try_from(cores.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .clamp(4, 16)
}

impl Store for PostgresStore {
    async fn create_webhook(&self, webhook: &Webhook) -> Result<()> {
        webhooks::create(self, webhook).await
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Option<Webhook>> {
        webhooks::get(self, id).await
    }

    async fn update_webhook(
        &self,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> Result<Option<Webhook>> {
        webhooks::update(self, id, patch, now).await
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<bool> {
        webhooks::delete(self, id).await
    }

    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>> {
        webhooks::list(self, query).await
    }

    async fn ingest(&self, events: &[NewEvent], now: Timestamp) -> Result<Vec<IngestReceipt>> {
        ingest::ingest(self, events, now).await
    }

    async fn ingest_for_webhook(
        &self,
        event: &NewEvent,
        webhook: WebhookId,
        now: Timestamp,
    ) -> Result<Option<IngestReceipt>> {
        ingest::ingest_for_webhook(self, event, webhook, now).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>> {
        queue::claim(self, request).await
    }

    async fn record(&self, results: &[AttemptResult]) -> Result<Vec<RecordOutcome>> {
        queue::record(self, results).await
    }

    async fn record_then_claim(
        &self,
        results: &[AttemptResult],
        request: &ClaimRequest,
    ) -> (Result<Vec<RecordOutcome>>, Result<Vec<ClaimedDelivery>>) {
        queue::record_then_claim(self, results, request).await
    }

    async fn release(&self, leases: &[(DeliveryId, LeaseToken)]) -> Result<()> {
        queue::release(self, leases).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Page<Delivery>> {
        log::list_deliveries(self, query).await
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>> {
        log::get_delivery(self, id).await
    }

    async fn redeliver(&self, id: DeliveryId, now: Timestamp) -> Result<Option<Delivery>> {
        log::redeliver(self, id, now).await
    }

    async fn failing_since(&self, id: WebhookId) -> Result<Option<Timestamp>> {
        webhooks::failing_since(self, id).await
    }

    async fn disable_webhook(&self, id: WebhookId, reason: &str, now: Timestamp) -> Result<bool> {
        webhooks::disable(self, id, reason, now).await
    }

    async fn create_token(&self, token: &ApiToken) -> Result<()> {
        tokens::create(self, token).await
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<ApiToken>> {
        tokens::find(self, hash).await
    }

    async fn count_tokens(&self) -> Result<u64> {
        tokens::count(self).await
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<PurgeReport> {
        log::purge(self, cutoff).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        log::stats(self).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// A database error stripped of its detail.
///
/// PostgreSQL's `DETAIL` of a constraint violation can quote the whole failing row, and a
/// webhook row holds its secret; only the SQLSTATE, the message and the constraint are kept.
#[derive(Debug)]
struct PgError {
    code: String,
    message: String,
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl StdError for PgError {}

/// Converts a driver error, keeping it as the source and never letting row data through.
fn db_error(err: sqlx::Error) -> StoreError {
    if crate::sql_error::unreachable(&err) {
        return StoreError::Unavailable(Box::new(err));
    }
    match err {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                let what = match db.constraint() {
                    Some("webhooks_pkey") => "a webhook with this id already exists",
                    Some("events_pkey") => "an event with this id already exists",
                    Some("deliveries_pkey") => "a delivery with this id already exists",
                    Some("api_tokens_pkey") => "a token with this id already exists",
                    Some("api_tokens_hash_key") => "a token with this hash already exists",
                    _ => "a row with this key already exists",
                };
                return StoreError::Conflict(what.to_owned());
            }
            StoreError::Database(Box::new(PgError {
                code: db.code().map(|c| c.into_owned()).unwrap_or_default(),
                message: db.message().to_owned(),
            }))
        }
        other => crate::sql_error::database_error(other),
    }
}

/// Caps a requested page size and converts it for a `LIMIT` of one more (to learn `has_more`).
fn page_limit(limit: usize) -> (usize, i64) {
    let limit = crate::page_limit(limit);
    (
        limit,
        i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1),
    )
}

/// Splits a fetched page of `limit + 1` rows into a [`Page`].
fn into_page<T>(mut items: Vec<T>, limit: usize) -> Page<T> {
    let has_more = items.len() > limit;
    items.truncate(limit);
    Page { items, has_more }
}
