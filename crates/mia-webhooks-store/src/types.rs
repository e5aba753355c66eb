//! The values that cross the [`Store`](crate::Store) trait.

use std::sync::Arc;
use std::time::Duration;

use mia_webhooks_model::{
    Attempt, Delivery, DeliveryId, DeliveryStatus, EventId, EventName, Role, Scope, Timestamp,
    TokenId, Webhook, WebhookId,
};
use uuid::Uuid;

/// One page of a listing, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Whether at least one more item follows; the id of the last item is the next cursor.
    pub has_more: bool,
}

/// Which webhooks to list.
#[derive(Debug, Clone)]
pub struct WebhookQuery {
    /// The exact scope the webhooks are installed on.
    pub scope: Scope,
    /// When not empty, only webhooks subscribed to at least one of these.
    pub events: Vec<EventName>,
    /// At most this many (the store caps it at 1000).
    pub limit: usize,
    /// Only webhooks after this one (ids are time-ordered, so pages are stable under inserts).
    pub after: Option<WebhookId>,
}

/// Which deliveries of a webhook to list.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    /// The webhook.
    pub webhook: WebhookId,
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// At most this many (the store caps it at 1000).
    pub limit: usize,
    /// Only deliveries older than this one (newest first, stable under inserts).
    pub before: Option<DeliveryId>,
}

/// What ingesting one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestReceipt {
    /// The event.
    pub event_id: EventId,
    /// How many deliveries were queued for it.
    pub deliveries: usize,
}

/// A request for due deliveries.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// At most this many.
    pub limit: usize,
    /// How long the lease lasts; it must exceed the attempt timeout.
    pub lease: Duration,
    /// At most this many deliveries of one webhook under a live lease at once, counting those
    /// already held by any worker.
    pub per_webhook_cap: usize,
    /// The time of the claim.
    pub now: Timestamp,
}

/// Proof of holding a claimed delivery; a record without the current token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub Uuid);

impl LeaseToken {
    /// A fresh, unique token.
    pub fn new() -> Self {
        LeaseToken(Uuid::now_v7())
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

/// A leased delivery with everything its next attempt needs.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery (sent as `X-Mia-Delivery`).
    pub delivery_id: DeliveryId,
    /// The lease to present when recording.
    pub lease: LeaseToken,
    /// When the lease expires.
    pub leased_until: Timestamp,
    /// The event.
    pub event_id: EventId,
    /// The event's name (sent as `X-Mia-Event`).
    pub event_name: EventName,
    /// The number of this attempt: 1 for the first.
    pub attempt: u32,
    /// When the delivery was queued.
    pub created_at: Timestamp,
    /// The webhook as it is now: target, current secret, CA, proxy. Deliveries of one webhook
    /// in a claim share it.
    pub webhook: Arc<Webhook>,
    /// The event's exact bytes. Deliveries of one event in a claim share them.
    pub payload: Arc<[u8]>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    /// The attempt succeeded.
    Succeeded,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// No more attempts.
    Failed,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was claimed with.
    pub lease: LeaseToken,
    /// The webhook (for its health).
    pub webhook_id: WebhookId,
    /// What the attempt did.
    pub attempt: Attempt,
    /// What comes next.
    pub next: NextState,
    /// Disable the webhook with this reason (410 Gone), in the same transaction.
    pub disable_webhook: Option<String>,
    /// The time of recording.
    pub now: Timestamp,
}

/// What [`Store::record`](crate::Store::record) did with one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Written. `failing_since` is the webhook's health after it: since when every attempt
    /// has failed, `None` after a success.
    Recorded {
        /// Since when the webhook has failed continuously.
        failing_since: Option<Timestamp>,
    },
    /// Written, but the result asked for a retry and the delivery ends the call cancelled: its
    /// webhook was disabled while the attempt was in flight, or by a 410 Gone in the same
    /// batch. `failing_since` as for `Recorded`.
    Cancelled {
        /// Since when the webhook has failed continuously.
        failing_since: Option<Timestamp>,
    },
    /// The lease was no longer held; nothing was written.
    LeaseLost,
}

impl RecordOutcome {
    /// The outcome of a retry whose delivery a 410 later in the same batch cancelled.
    pub(crate) fn cancelled(self) -> RecordOutcome {
        match self {
            RecordOutcome::Recorded { failing_since } => RecordOutcome::Cancelled { failing_since },
            other => other,
        }
    }
}

/// One delivery with its attempts and its event.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// The event's exact bytes.
    pub payload: Vec<u8>,
}

/// The SHA-256 of an API token: all the store keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Self {
        use sha2::Digest as _;
        TokenHash(sha2::Sha256::digest(token.as_bytes()).into())
    }
}

/// An API token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// The hash of the token.
    pub hash: TokenHash,
    /// What it may do.
    pub role: Role,
    /// A label for people ("bootstrap", "console-backend", ...).
    pub label: String,
    /// When it was made.
    pub created_at: Timestamp,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Deliveries removed.
    pub deliveries: u64,
    /// Attempts removed.
    pub attempts: u64,
    /// Events removed.
    pub events: u64,
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Deliveries waiting for an attempt.
    pub pending: u64,
    /// Deliveries under a lease.
    pub delivering: u64,
    /// Deliveries that succeeded.
    pub succeeded: u64,
    /// Deliveries that failed for good.
    pub failed: u64,
    /// Deliveries cancelled.
    pub cancelled: u64,
    /// Webhooks that are disabled.
    pub disabled_webhooks: u64,
}
