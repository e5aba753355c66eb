//! The SQLite backend: one file, the embedded default.
//!
//! SQLite has one writer at a time. The store keeps a pool of exactly one connection for every
//! write transaction (begun `IMMEDIATE`, so a second process waits on `busy_timeout` instead of
//! failing) and a separate pool of read-only connections for listings; WAL lets readers run while
//! the writer writes. Claims and records batch many deliveries per transaction and take a few
//! statements per batch whatever its size (`batch.rs`, `queue.rs`, `record.rs`), which is what
//! makes a single writer fast; claims reuse the webhooks they decoded and the events ingestion
//! wrote (`cache.rs`); WAL checkpoints run in the background (`checkpoint.rs`), not in the
//! commits.
//!
//! The schema is in `migrations/sqlite/`, embedded in the binary and applied at open.

mod batch;
mod cache;
mod checkpoint;
mod log;
mod operations;
#[cfg(test)]
mod plans;
mod queue;
#[cfg(test)]
mod queue_tests;
mod record;
mod rows;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mia_webhooks_model::{Delivery, DeliveryId, Timestamp, Webhook, WebhookId, WebhookPatch};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::sql_error::{database_error, migration_error};
use crate::{
    ApiToken, AttemptResult, ClaimRequest, ClaimedDelivery, DeliveryDetail, DeliveryQuery,
    IngestReceipt, LeaseToken, NewEvent, Page, PurgeReport, RecordOutcome, Result, Store,
    StoreError, StoreOptions, StoreStats, TokenHash, WebhookQuery,
};

/// The embedded migrations of the SQLite schema.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The page cache of the write connection in MiB unless [`StoreOptions::sqlite_cache_mib`]
/// says otherwise. Ingestion touches index pages all over the deliveries-by-webhook index;
/// keeping them cached saves a read per page.
const WRITER_CACHE_MIB: u32 = 64;

/// Result rows the connection's worker thread may run ahead of the caller.
const ROW_BUFFER: usize = 1024;

/// Read connections when [`StoreOptions::max_connections`] is not set.
const DEFAULT_READERS: u32 = 4;

/// A store in one SQLite file.
///
/// Cloning is cheap and shares the connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    options: StoreOptions,
    path: PathBuf,
    lifecycle: Arc<checkpoint::Lifecycle>,
    webhook_cache: Arc<cache::WebhookCache>,
    event_cache: Arc<cache::EventCache>,
}

impl SqliteStore {
    /// Opens the database at `location`, creating the file on first use and applying the
    /// migrations this binary carries; data already there is kept.
    ///
    /// `location` is a path (`./mia-webhooks.db`) or a URL: `sqlite://relative.db`,
    /// `sqlite:///absolute/path.db`, `sqlite:path.db`. Its directory must exist. A database
    /// migrated by a newer binary (one with migrations this binary does not know) is refused.
    pub async fn open(location: &str, options: StoreOptions) -> Result<SqliteStore> {
        let path = parse_location(location)?;
        check_directory(&path)?;
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(256)
            // The worker thread hands rows over without waiting for the caller to take each one
            // (sqlx's default is 50 at a time, a thread wake-up per row on a busy machine).
            .row_buffer_size(ROW_BUFFER)
            // Statement journals and temporary indexes in memory, not in files of the temp dir.
            .pragma("temp_store", "memory");
        // A pool tests an idle connection before lending it (`ping`): a round trip to the
        // connection's thread on every transaction (besides the one sqlx makes when the
        // connection comes back), for a local file that cannot hang up.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(
                connect
                    .clone()
                    .pragma(
                        "cache_size",
                        // Negative: KiB.
                        format!(
                            "-{}",
                            u64::from(options.sqlite_cache_mib.unwrap_or(WRITER_CACHE_MIB)) * 1024
                        ),
                    )
                    .pragma("wal_autocheckpoint", checkpoint::WRITER_AUTOCHECKPOINT)
                    .pragma("journal_size_limit", checkpoint::LOG_LIMIT_BYTES),
            )
            .await
            .map_err(database_error)?;
        MIGRATOR.run(&writer).await.map_err(migration_error)?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(options.max_connections.unwrap_or(DEFAULT_READERS).max(1))
            .connect_with(connect.clone().read_only(true))
            .await
            .map_err(database_error)?;
        let lifecycle = Arc::new(checkpoint::Lifecycle::default());
        checkpoint::spawn(connect, writer.clone(), Arc::downgrade(&lifecycle));
        Ok(SqliteStore {
            writer,
            reader,
            options,
            path,
            lifecycle,
            webhook_cache: Arc::default(),
            event_cache: Arc::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (of every clone), waiting for work in progress, and folds the
    /// write-ahead log back into the database file. Dropping the last clone closes the
    /// connections too, in the background.
    pub async fn close(&self) {
        self.lifecycle.close().await;
        self.reader.close().await;
        // Best effort: a tidy file for backups; the log is replayed on the next open anyway.
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::debug!(error = %err, "final WAL checkpoint failed");
        }
        self.writer.close().await;
    }

    /// A write transaction on the single write connection. `IMMEDIATE` takes the write lock at
    /// once, so another process holding it makes us wait (`busy_timeout`) rather than fail
    /// half-way.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(database_error)
    }

    fn keys(&self) -> Option<&crate::SecretKeys> {
        self.options.secret_keys.as_ref()
    }
}

/// The file path inside a SQLite location.
pub(crate) fn parse_location(location: &str) -> Result<PathBuf> {
    let path = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or(location);
    if path.is_empty() {
        return Err(StoreError::Config(format!(
            "the SQLite location {location:?} names no file"
        )));
    }
    if path == ":memory:" || path.starts_with(":memory:") || path.contains("mode=memory") {
        return Err(StoreError::Config(
            "an in-memory SQLite database is not supported; use `memory:` for the in-memory store"
                .into(),
        ));
    }
    if path != location && path.contains('?') {
        return Err(StoreError::Config(format!(
            "the SQLite URL {location:?} has query parameters; the store sets its own options"
        )));
    }
    Ok(PathBuf::from(path))
}

pub(crate) fn check_directory(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(StoreError::Config(format!(
            "the SQLite database {} is a directory",
            path.display()
        )));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(StoreError::Config(format!(
                "cannot create the SQLite database {}: the directory {} does not exist",
                path.display(),
                dir.display()
            )))
        }
        _ => Ok(()),
    }
}

impl Store for SqliteStore {
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
        queue::ingest(self, events, now).await
    }

    async fn ingest_for_webhook(
        &self,
        event: &NewEvent,
        webhook: WebhookId,
        now: Timestamp,
    ) -> Result<Option<IngestReceipt>> {
        queue::ingest_for_webhook(self, event, webhook, now).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>> {
        queue::claim(self, request).await
    }

    async fn record(&self, results: &[AttemptResult]) -> Result<Vec<RecordOutcome>> {
        record::record(self, results).await
    }

    async fn ingest_then_claim(
        &self,
        events: &[NewEvent],
        now: Timestamp,
        request: &ClaimRequest,
    ) -> (Result<Vec<IngestReceipt>>, Result<Vec<ClaimedDelivery>>) {
        queue::ingest_then_claim(self, events, now, request).await
    }

    async fn record_then_claim(
        &self,
        results: &[AttemptResult],
        request: &ClaimRequest,
    ) -> (Result<Vec<RecordOutcome>>, Result<Vec<ClaimedDelivery>>) {
        record::record_then_claim(self, results, request).await
    }

    async fn release(&self, leases: &[(DeliveryId, LeaseToken)]) -> Result<()> {
        queue::release(self, leases).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Page<Delivery>> {
        log::list(self, query).await
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>> {
        log::get(self, id).await
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
        operations::create_token(self, token).await
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<ApiToken>> {
        operations::find_token(self, hash).await
    }

    async fn count_tokens(&self) -> Result<u64> {
        operations::count_tokens(self).await
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<PurgeReport> {
        operations::purge(self, cutoff).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        operations::stats(self).await
    }

    async fn ping(&self) -> Result<()> {
        operations::ping(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(location: &str, expected: Result<&str, &str>) {
        match (parse_location(location), expected) {
            (Ok(path), Ok(want)) => assert_eq!(path, PathBuf::from(want), "{location}"),
            (Err(StoreError::Config(message)), Err(want)) => {
                assert!(
                    message.contains(want),
                    "{location}: {message:?} should contain {want:?}"
                )
            }
            (got, want) => panic!("{location}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn locations() {
        check("./mia-webhooks.db", Ok("./mia-webhooks.db"));
        check("sqlite://data/hooks.db", Ok("data/hooks.db"));
        check("sqlite:///var/lib/hooks.db", Ok("/var/lib/hooks.db"));
        check("sqlite:hooks.db", Ok("hooks.db"));
        check("sqlite:", Err("names no file"));
        check("sqlite::memory:", Err("use `memory:`"));
        check("sqlite://hooks.db?mode=rwc", Err("query parameters"));
    }

    #[test]
    fn missing_directories_are_named() {
        let dir =
            std::env::temp_dir().join(format!("mia-webhooks-missing-{}", uuid::Uuid::now_v7()));
        let path = dir.join("hooks.db");
        match check_directory(&path) {
            Err(StoreError::Config(message)) => {
                assert!(message.contains(&dir.display().to_string()), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(check_directory(Path::new("relative.db")).is_ok());
    }
}
