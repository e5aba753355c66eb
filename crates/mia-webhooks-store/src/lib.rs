//! Durable storage of mia-webhooks: webhooks, events, deliveries, attempts and API tokens.
//!
//! One trait, [`Store`], and three backends that pass the same conformance suite:
//! [`MemoryStore`] (tests, embedding), `SqliteStore` (the embedded default, feature `sqlite`) and
//! `PostgresStore` (several server instances on one database, feature `postgres`).
//! [`AnyStore`] picks one from a URL at run time (`memory:`, a SQLite path or `sqlite://` URL,
//! `postgres://`). Every constructor takes [`StoreOptions`], which carry the [`SecretKeys`] that
//! seal webhook secrets at rest.
//!
//! The guarantees every backend keeps:
//! - **Ingest is atomic**: an event and all its deliveries are written in one transaction, or
//!   nothing is. Matching is an indexed lookup by (event name, scope), never a scan.
//! - **Claims are leased**: a claimed delivery carries a [`LeaseToken`]; only its holder can record
//!   a result, and an expired lease makes the delivery claimable again (a crashed worker loses
//!   nothing). A per-webhook cap bounds the deliveries of one webhook under live leases.
//! - **Results are batched**: [`Store::record`] writes many attempts and next states in one
//!   transaction, each only if its lease is still held.
//! - **Event bytes are written once** and never in the rows that claims and records rewrite.
//! - **Secrets** are encrypted at rest when a key is configured ([`SecretKeys`]).
//!
//! No type of a database driver appears in this API.
//!
//! # Example
//!
//! A webhook, an event that reaches it, and one attempt, on the in-memory store:
//!
//! ```
//! use std::time::Duration;
//!
//! use mia_webhooks_model::{Event, EventCatalog, EventId, Timestamp, Webhook, WebhookId, WebhookInput};
//! use mia_webhooks_store::{
//!     AttemptResult, ClaimRequest, MemoryStore, NewEvent, NextState, RecordOutcome, Store, StoreOptions,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new(StoreOptions::default());
//! let catalog = EventCatalog::built_in();
//! let now = Timestamp::from_millis(1_764_374_400_000);
//!
//! let new = WebhookInput {
//!     target_url: Some("https://example.com/hooks".into()),
//!     secret: Some("s3cr3t".into()),
//!     events: Some(vec!["project_created".into()]),
//!     ..WebhookInput::default()
//! }
//! .validate("company/acme".parse()?, &catalog)?;
//! let webhook = Webhook {
//!     id: WebhookId::new(),
//!     scope: new.scope,
//!     target_url: new.target_url,
//!     secret: new.secret,
//!     events: new.events,
//!     ca_certificate: new.ca_certificate,
//!     proxy: new.proxy,
//!     description: new.description,
//!     enabled: new.enabled,
//!     disabled_reason: None,
//!     created_at: now,
//!     updated_at: now,
//! };
//! store.create_webhook(&webhook).await?;
//!
//! let event = Event::parse(
//!     br#"{"eventName":"project_created","eventTimestamp":1764374400000,
//!          "payload":{"tenantId":"acme","projectId":"p1"}}"#,
//!     &catalog,
//! )?;
//! let receipts = store.ingest(&[NewEvent { id: EventId::new(), event }], now).await?;
//! assert_eq!(receipts[0].deliveries, 1);
//!
//! let request = ClaimRequest { limit: 10, lease: Duration::from_secs(60), per_webhook_cap: 8, now };
//! let claimed = store.claim(&request).await?;
//! assert_eq!(claimed[0].webhook.id, webhook.id);
//! // ... POST claimed[0].payload to the target, then:
//! let attempt = mia_webhooks_model::Attempt {
//!     number: claimed[0].attempt,
//!     started_at: now,
//!     duration_ms: 35,
//!     status_code: Some(200),
//!     failure: None,
//!     error: None,
//!     response_excerpt: None,
//! };
//! let outcomes = store
//!     .record(&[AttemptResult {
//!         delivery_id: claimed[0].delivery_id,
//!         lease: claimed[0].lease,
//!         webhook_id: webhook.id,
//!         attempt,
//!         next: NextState::Succeeded,
//!         disable_webhook: None,
//!         now,
//!     }])
//!     .await?;
//! assert_eq!(outcomes, [RecordOutcome::Recorded { failing_since: None }]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod any;
mod error;
mod memory;
mod options;
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, reason = "sealing serves the SQL backends only")
)]
mod secrets;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_error;
mod types;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use any::AnyStore;
pub use error::StoreError;
pub use memory::MemoryStore;
pub use options::StoreOptions;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use secrets::{KEY_LEN, SecretKeys};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use types::*;

use std::future::Future;

use mia_webhooks_model::{DeliveryId, Event, EventId, Timestamp, Webhook, WebhookId, WebhookPatch};

/// How long a claim sets aside the deliveries of a webhook whose secret no configured key opens
/// (see [`Store::claim`]): they are pending again after it, for a claim that can open it.
pub const UNREADABLE_SECRET_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

/// The most items one page of a listing holds, whatever the query asks.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The page size a listing uses for a requested `limit`.
pub(crate) fn page_limit(limit: usize) -> usize {
    limit.min(MAX_PAGE_SIZE)
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the server and the workers need from storage.
///
/// Methods take `now` from the caller so tests control the clock. Every method is safe to call
/// concurrently from many tasks and, for PostgreSQL, from many processes.
pub trait Store: Send + Sync + 'static {
    // --- Webhooks -------------------------------------------------------------------------

    /// Stores a new webhook (its id, timestamps and secret as given).
    fn create_webhook(&self, webhook: &Webhook) -> impl Future<Output = Result<()>> + Send;

    /// One webhook, with its secret.
    fn get_webhook(&self, id: WebhookId) -> impl Future<Output = Result<Option<Webhook>>> + Send;

    /// Applies `patch` (the secret is replaced only when the patch carries one) and returns the
    /// webhook as it now is. Disabling a webhook cancels its pending deliveries in the same
    /// transaction.
    fn update_webhook(
        &self,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Webhook>>> + Send;

    /// Deletes a webhook with its deliveries and their attempts. Returns whether it existed.
    /// A worker still holding a lease on one of its deliveries finds its record refused.
    fn delete_webhook(&self, id: WebhookId) -> impl Future<Output = Result<bool>> + Send;

    /// The webhooks installed exactly on `query.scope`, oldest first, optionally only those
    /// subscribed to any of `query.events`, one page at a time.
    fn list_webhooks(
        &self,
        query: &WebhookQuery,
    ) -> impl Future<Output = Result<Page<Webhook>>> + Send;

    // --- Ingestion ------------------------------------------------------------------------

    /// Writes each event (its exact bytes) and one pending delivery for every enabled webhook
    /// that subscribes to its name and whose scope receives it (SPEC §3). Each event is atomic
    /// with its deliveries; a batch is written in one transaction. The lookup is indexed by
    /// (event name, scope), never a scan of all webhooks.
    fn ingest(
        &self,
        events: &[NewEvent],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<IngestReceipt>>> + Send;

    /// [`Store::ingest`] then [`Store::claim`]: an in-process dispatcher with free slots
    /// leases the deliveries an ingestion creates (and any others due) without a claim of its
    /// own. A backend may do both in one transaction (SQLite does: on the path from ingestion to
    /// first attempt, a transaction and a wake-up of the dispatcher fewer); then a failed commit
    /// writes neither. A failed claim does not lose the events (they are written on their own,
    /// and the claim's error is returned beside their receipts); when the ingestion fails,
    /// nothing is claimed.
    fn ingest_then_claim(
        &self,
        events: &[NewEvent],
        now: Timestamp,
        request: &ClaimRequest,
    ) -> impl Future<Output = (Result<Vec<IngestReceipt>>, Result<Vec<ClaimedDelivery>>)> + Send
    {
        async move {
            match self.ingest(events, now).await {
                Ok(receipts) => (Ok(receipts), self.claim(request).await),
                Err(err) => (Err(err), Ok(Vec::new())),
            }
        }
    }

    /// Writes an event and one pending delivery to `webhook` only, whatever it subscribes to
    /// and even when it is disabled ("send test event"). `None` when the webhook does not exist.
    fn ingest_for_webhook(
        &self,
        event: &NewEvent,
        webhook: WebhookId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<IngestReceipt>>> + Send;

    // --- The queue ------------------------------------------------------------------------

    /// Leases up to `request.limit` due deliveries: pending ones whose time has come
    /// (`next_attempt_at <= now`) and delivering ones whose lease expired. A lease is live while
    /// `now < leased_until`; from `leased_until` on, the delivery is claimable again with a new
    /// token. Skips webhooks that already have `request.per_webhook_cap` deliveries under a live
    /// lease. Deliveries come in due order; nothing more about order is promised. Each claimed
    /// delivery carries what an attempt needs: the webhook's target, secret, CA and proxy, and
    /// the event bytes. A claim does not count as an attempt: `attempt` is the number the next
    /// recorded attempt will have.
    ///
    /// A webhook whose secret no configured key opens (sealed by a process with another key)
    /// holds up its own deliveries only: they are left out of the claim, logged, and set aside
    /// (with the rest of its due backlog), pending, for [`UNREADABLE_SECRET_BACKOFF`], while the
    /// claim goes on with the others.
    fn claim(
        &self,
        request: &ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedDelivery>>> + Send;

    /// Writes the attempts and next states of many deliveries in one transaction. A result whose
    /// lease is no longer held (expired and re-claimed, released, or the webhook deleted) is
    /// refused and changes nothing; an expired lease that nobody re-claimed is still held.
    /// Results apply in order (the same delivery twice: the second finds its lease gone), and
    /// each outcome reports the webhook's health after it. An attempt is stored under the
    /// delivery's attempt count after it, whatever `attempt.number` says. Returns one outcome
    /// per result, in order.
    ///
    /// The states a record writes are those of [`NextState`] (succeeded, pending again for a
    /// retry at T, failed) and cancelled, which no result asks for: a retry of a delivery whose
    /// webhook is disabled (while the attempt was in flight, or by a 410 Gone in the same batch)
    /// is cancelled instead and reported as [`RecordOutcome::Cancelled`], and a result with
    /// `disable_webhook` (a 410 Gone) disables its webhook and cancels that webhook's pending
    /// deliveries in the same transaction. Outside `record`, a delivery is cancelled when its
    /// webhook is disabled ([`Store::update_webhook`], [`Store::disable_webhook`]) while it is
    /// pending, or when its lease is given back ([`Store::release`]) after that; deleting a
    /// webhook ([`Store::delete_webhook`]) removes its deliveries outright instead.
    fn record(
        &self,
        results: &[AttemptResult],
    ) -> impl Future<Output = Result<Vec<RecordOutcome>>> + Send;

    /// [`Store::record`] then [`Store::claim`], each part with its own result: the worker's
    /// round of store work. Recording first frees per-webhook capacity for the claim. A backend
    /// may do both in one transaction (SQLite and PostgreSQL do: one commit and two round
    /// trips fewer per round); then a failed commit fails both parts and writes neither. A
    /// failed claim does not lose the results (they are written on their own), and a failed
    /// record does not prevent the claim.
    fn record_then_claim(
        &self,
        results: &[AttemptResult],
        request: &ClaimRequest,
    ) -> impl Future<Output = (Result<Vec<RecordOutcome>>, Result<Vec<ClaimedDelivery>>)> + Send
    {
        async move {
            let recorded = if results.is_empty() {
                Ok(Vec::new())
            } else {
                self.record(results).await
            };
            (recorded, self.claim(request).await)
        }
    }

    /// Gives leased deliveries back without an attempt (a worker stopping before it started
    /// them, or holding one whose lease is too short for an attempt): they are pending again at
    /// once, due when they were due; those of a webhook disabled meanwhile are cancelled, as
    /// its pending deliveries were. A lease no longer held changes nothing.
    fn release(
        &self,
        leases: &[(DeliveryId, LeaseToken)],
    ) -> impl Future<Output = Result<()>> + Send;

    // --- The delivery log -----------------------------------------------------------------

    /// The deliveries of a webhook, newest first, optionally of one status, one page at a time.
    fn list_deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> impl Future<Output = Result<Page<mia_webhooks_model::Delivery>>> + Send;

    /// One delivery with all its attempts, oldest first, and its event's bytes.
    fn get_delivery(
        &self,
        id: DeliveryId,
    ) -> impl Future<Output = Result<Option<DeliveryDetail>>> + Send;

    /// Queues a new pending delivery of the same event to the same webhook. `None` when the
    /// delivery does not exist.
    fn redeliver(
        &self,
        id: DeliveryId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<mia_webhooks_model::Delivery>>> + Send;

    // --- Webhook health -------------------------------------------------------------------

    /// Since when every attempt to this webhook has failed; `None` when its latest attempt
    /// succeeded, it has had none, or an edit that may fix it (`WebhookPatch::restarts_failure_clock`)
    /// came after its last failure.
    fn failing_since(
        &self,
        id: WebhookId,
    ) -> impl Future<Output = Result<Option<Timestamp>>> + Send;

    /// Disables a webhook with a reason and cancels its pending deliveries, in one transaction.
    /// Returns whether it existed.
    fn disable_webhook(
        &self,
        id: WebhookId,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool>> + Send;

    // --- API tokens -----------------------------------------------------------------------

    /// Stores a token (its hash only).
    fn create_token(&self, token: &ApiToken) -> impl Future<Output = Result<()>> + Send;

    /// The token whose hash is `hash`.
    fn find_token(&self, hash: &TokenHash)
    -> impl Future<Output = Result<Option<ApiToken>>> + Send;

    /// How many tokens exist (zero on a fresh database: time for a bootstrap token).
    fn count_tokens(&self) -> impl Future<Output = Result<u64>> + Send;

    // --- Operations -----------------------------------------------------------------------

    /// Deletes finished deliveries (succeeded, failed, cancelled) last changed before `cutoff`,
    /// their attempts, and events older than `cutoff` left without deliveries.
    fn purge(&self, cutoff: Timestamp) -> impl Future<Output = Result<PurgeReport>> + Send;

    /// Counts for metrics and readiness: deliveries by status, disabled webhooks.
    fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send;

    /// Whether the database answers (for `/readyz`).
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// An event ready for ingestion: the parsed event and the id it will have.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The id to store it under.
    pub id: EventId,
    /// The event (name, routing, exact bytes).
    pub event: Event,
}
