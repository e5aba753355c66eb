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
    /// - `sqlite://path`, `sqlite:path` or anything else without a `scheme://`, taken as a
    ///   file path: SQLite (feature `sqlite`).
    ///
    /// Any other `scheme://` (a mistyped `postgress://`, say) is refused by [`AnyStore::check_url`]
    /// rather than taken for a file path. A backend left out of the build is a
    /// [`StoreError::Config`](crate::StoreError::Config) that says so.
    pub async fn open(url: &str, options: StoreOptions) -> Result<AnyStore> {
        Self::check_url(url)?;
        if url == "memory:" || url == "memory://" {
            return Ok(AnyStore::Memory(MemoryStore::new(options)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return open_postgres(url, options).await;
        }
        open_sqlite(url, options).await
    }

    /// Checks, without opening or creating anything, that `url` names a backend
    /// [`AnyStore::open`] knows, and (SQLite) that it names a file in a directory that exists.
    /// The error shows the URL's scheme, never the rest, which may hold a password.
    ///
    /// ```
    /// use mia_webhooks_store::AnyStore;
    ///
    /// assert!(AnyStore::check_url("postgres://app@db/hooks").is_ok());
    /// assert!(AnyStore::check_url("sqlite://mia-webhooks.db").is_ok());
    /// assert!(AnyStore::check_url("./mia-webhooks.db").is_ok());
    /// for url in ["postgress://app:pw@db/hooks", "postgresql//app:pw@db/hooks", " postgres://app:pw@db"] {
    ///     let err = AnyStore::check_url(url).unwrap_err().to_string();
    ///     assert!(!err.contains("pw"), "{err}");
    /// }
    /// ```
    pub fn check_url(url: &str) -> Result<()> {
        const KNOWN: &str = "use sqlite://PATH, sqlite:PATH or a file path for SQLite, \
                             postgres://... or postgresql://... for PostgreSQL, or memory:";
        if url == "memory:" || url == "memory://" {
            return Ok(());
        }
        if url.trim() != url {
            return Err(crate::StoreError::Config(
                "the database URL must not begin or end with whitespace".into(),
            ));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            if is_scheme(scheme) {
                return match scheme {
                    "postgres" | "postgresql" => Ok(()),
                    "sqlite" => check_sqlite(url),
                    _ => Err(crate::StoreError::Config(format!(
                        "unknown database URL scheme \"{scheme}://\"; {KNOWN}"
                    ))),
                };
            }
        }
        // `postgres:host/db` reads like a URL with its slashes forgotten, not like a file.
        for scheme in ["postgres:", "postgresql:"] {
            if url.starts_with(scheme) {
                return Err(crate::StoreError::Config(format!(
                    "a PostgreSQL URL starts with \"{scheme}//\""
                )));
            }
        }
        // `postgresql//app:pw@db/x` has lost its scheme's colon: taken for a file path, the
        // errors about that path would show the password. A bare path is refused when it reads
        // like credentials (`sqlite:` in front keeps such a file name possible).
        if !url.starts_with("sqlite:") && url.contains('@') && url.contains(':') {
            return Err(crate::StoreError::Config(
                "names no known backend: it reads like a URL with credentials but does not start \
                 with postgres:// or postgresql:// (not shown, it may hold a password); for a \
                 SQLite file whose path has '@' and ':', write sqlite:PATH"
                    .into(),
            ));
        }
        check_sqlite(url)
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

/// Whether `text` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
/// One letter is not taken for one: `C://` is a drive.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && text.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The location names a file (not a directory), in a directory that exists.
#[cfg(feature = "sqlite")]
fn check_sqlite(url: &str) -> Result<()> {
    crate::sqlite::check_directory(&crate::sqlite::parse_location(url)?)
}

#[cfg(not(feature = "sqlite"))]
fn check_sqlite(_url: &str) -> Result<()> {
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: std::result::Result<(), &str>) {
        match (AnyStore::check_url(url), expected) {
            (Ok(()), Ok(())) => {}
            (Err(err), Err(part)) => {
                let text = err.to_string();
                assert!(text.contains(part), "{url}: {text}");
                assert!(
                    !text.contains("pw"),
                    "{url}: the error shows a password: {text}"
                );
            }
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn check_url_knows_every_backend_and_refuses_unknown_schemes() {
        check("memory:", Ok(()));
        check("memory://", Ok(()));
        check("postgres://app:pw@db/hooks", Ok(()));
        check("postgresql://app@db/hooks?sslmode=require", Ok(()));
        check("mia-webhooks.db", Ok(()));
        check("./hooks.db", Ok(()));
        let absolute = std::env::temp_dir().join("hooks.db");
        check(absolute.to_str().unwrap(), Ok(()));
        check("postgress://app:pw@db/hooks", Err("\"postgress://\""));
        check("mysql://app:pw@db/hooks", Err("\"mysql://\""));
        check("Postgres://app:pw@db/hooks", Err("\"Postgres://\""));
        check("postgres:app:pw@db/hooks", Err("\"postgres://\""));
        check("postgresql:db", Err("\"postgresql://\""));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn check_url_checks_sqlite_locations() {
        check("sqlite://mia-webhooks.db", Ok(()));
        let absolute = std::env::temp_dir().join("hooks.db");
        check(&format!("sqlite://{}", absolute.display()), Ok(()));
        check("sqlite:hooks.db", Ok(()));
        check("sqlite://", Err("names no file"));
        check("sqlite::memory:", Err("memory:"));
        check(
            "sqlite:///no/such/directory/hooks.db",
            Err("the directory /no/such/directory does not exist"),
        );
        check("/no/such/directory/hooks.db", Err("does not exist"));
    }
}
