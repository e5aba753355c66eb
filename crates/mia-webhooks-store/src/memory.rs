//! The in-memory backend: the reference implementation of [`Store`]'s semantics, for tests and
//! for embedding without a database.
//!
//! All state sits behind one `std::sync::Mutex`. Every method takes the lock, does its work
//! synchronously and releases it before returning: the lock is never held across an `.await`,
//! and each method is atomic, like a database transaction. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use mia_webhooks_model::{
    Attempt, Delivery, DeliveryId, DeliveryStatus, EventId, EventName, Scope, Timestamp, TokenId,
    Webhook, WebhookId, WebhookPatch,
};
use uuid::Uuid;

use crate::{
    ApiToken, AttemptResult, ClaimRequest, ClaimedDelivery, DeliveryDetail, DeliveryQuery,
    IngestReceipt, LeaseToken, NewEvent, NextState, Page, PurgeReport, RecordOutcome, Result,
    Store, StoreError, StoreOptions, StoreStats, TokenHash, WebhookQuery, page_limit,
};

/// A store that keeps everything in process memory.
///
/// It passes the same conformance suite as the database backends and is what they are checked
/// against. Secrets stay in memory as given ([`StoreOptions::secret_keys`] does not apply).
/// Cloning is cheap: clones share the same data.
///
/// ```
/// use mia_webhooks_store::{MemoryStore, Store, StoreOptions};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new(StoreOptions::default());
/// store.ping().await?;
/// assert_eq!(store.count_tokens().await?, 0);
/// # Ok::<(), mia_webhooks_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    options: StoreOptions,
}

#[derive(Debug, Default)]
struct State {
    webhooks: BTreeMap<WebhookId, StoredWebhook>,
    /// The fan-out index: (event name, scope) to the webhooks subscribed there.
    index: HashMap<(EventName, Scope), BTreeSet<WebhookId>>,
    events: HashMap<EventId, StoredEvent>,
    deliveries: BTreeMap<DeliveryId, DeliveryRow>,
    by_webhook: HashMap<WebhookId, BTreeSet<DeliveryId>>,
    /// The queue: (claimable_at, id) of every pending or delivering delivery.
    queue: BTreeSet<(Timestamp, DeliveryId)>,
    /// Deliveries under a lease (live or expired).
    delivering: HashSet<DeliveryId>,
    tokens: HashMap<TokenHash, ApiToken>,
    token_ids: HashSet<TokenId>,
}

#[derive(Debug)]
struct StoredWebhook {
    webhook: Arc<Webhook>,
    failing_since: Option<Timestamp>,
}

#[derive(Debug)]
struct StoredEvent {
    name: EventName,
    bytes: Arc<[u8]>,
    created_at: Timestamp,
}

#[derive(Debug)]
struct DeliveryRow {
    id: DeliveryId,
    event_id: EventId,
    webhook_id: WebhookId,
    status: DeliveryStatus,
    attempt_count: u32,
    next_attempt_at: Option<Timestamp>,
    claimable_at: Option<Timestamp>,
    lease: Option<LeaseToken>,
    created_at: Timestamp,
    updated_at: Timestamp,
    attempts: Vec<Attempt>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(options: StoreOptions) -> Self {
        MemoryStore {
            state: Arc::default(),
            options,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change behind (every method
        // checks before it mutates), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn index_webhook(&mut self, webhook: &Webhook) {
        for name in webhook.events.iter() {
            self.index
                .entry((name.clone(), webhook.scope.clone()))
                .or_default()
                .insert(webhook.id);
        }
    }

    fn unindex_webhook(&mut self, webhook: &Webhook) {
        for name in webhook.events.iter() {
            let key = (name.clone(), webhook.scope.clone());
            if let Some(ids) = self.index.get_mut(&key) {
                ids.remove(&webhook.id);
                if ids.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
    }

    /// Moves a delivery in the queue (or out of it, with `None`).
    fn set_claimable(&mut self, id: DeliveryId, at: Option<Timestamp>) {
        let Some(row) = self.deliveries.get_mut(&id) else {
            return;
        };
        if let Some(old) = row.claimable_at {
            self.queue.remove(&(old, id));
        }
        row.claimable_at = at;
        if let Some(at) = at {
            self.queue.insert((at, id));
        }
    }

    fn set_status(&mut self, id: DeliveryId, status: DeliveryStatus) {
        if let Some(row) = self.deliveries.get_mut(&id) {
            row.status = status;
        }
        if status == DeliveryStatus::Delivering {
            self.delivering.insert(id);
        } else {
            self.delivering.remove(&id);
        }
    }

    fn insert_delivery(
        &mut self,
        event_id: EventId,
        webhook_id: WebhookId,
        now: Timestamp,
    ) -> DeliveryId {
        let id = DeliveryId::new();
        self.deliveries.insert(
            id,
            DeliveryRow {
                id,
                event_id,
                webhook_id,
                status: DeliveryStatus::Pending,
                attempt_count: 0,
                next_attempt_at: Some(now),
                claimable_at: None,
                lease: None,
                created_at: now,
                updated_at: now,
                attempts: Vec::new(),
            },
        );
        self.set_claimable(id, Some(now));
        self.by_webhook.entry(webhook_id).or_default().insert(id);
        id
    }

    fn cancel_pending(&mut self, webhook_id: WebhookId, now: Timestamp) {
        let ids: Vec<DeliveryId> = self
            .by_webhook
            .get(&webhook_id)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for id in ids {
            let pending = self
                .deliveries
                .get(&id)
                .is_some_and(|row| row.status == DeliveryStatus::Pending);
            if pending {
                self.set_status(id, DeliveryStatus::Cancelled);
                self.set_claimable(id, None);
                if let Some(row) = self.deliveries.get_mut(&id) {
                    row.next_attempt_at = None;
                    row.updated_at = now;
                }
            }
        }
    }

    fn disable(&mut self, id: WebhookId, reason: &str, now: Timestamp) -> bool {
        let Some(stored) = self.webhooks.get_mut(&id) else {
            return false;
        };
        let webhook = Arc::make_mut(&mut stored.webhook);
        // A webhook disabled already keeps its reason (an owner's over a late automatic one).
        if webhook.enabled {
            webhook.enabled = false;
            webhook.disabled_reason = Some(reason.to_owned());
            webhook.updated_at = now;
        }
        self.cancel_pending(id, now);
        true
    }

    fn remove_delivery(&mut self, id: DeliveryId) -> Option<DeliveryRow> {
        self.set_claimable(id, None);
        self.delivering.remove(&id);
        let row = self.deliveries.remove(&id)?;
        if let Some(ids) = self.by_webhook.get_mut(&row.webhook_id) {
            ids.remove(&id);
        }
        Some(row)
    }

    fn delivery(&self, row: &DeliveryRow) -> Result<Delivery> {
        let event = self.events.get(&row.event_id).ok_or_else(|| {
            StoreError::Corrupt(format!("delivery {} refers to a missing event", row.id))
        })?;
        Ok(Delivery {
            id: row.id,
            event_id: row.event_id,
            event_name: event.name.clone(),
            webhook_id: row.webhook_id,
            status: row.status,
            attempt_count: row.attempt_count,
            next_attempt_at: if row.status == DeliveryStatus::Pending {
                row.next_attempt_at
            } else {
                None
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_attempt: row.attempts.last().cloned(),
        })
    }

    fn ingest_one(&mut self, event: &NewEvent, now: Timestamp) -> IngestReceipt {
        self.events.insert(
            event.id,
            StoredEvent {
                name: event.event.name().clone(),
                bytes: Arc::from(event.event.bytes()),
                created_at: now,
            },
        );
        let name = event.event.name();
        let mut matching = BTreeSet::new();
        for scope in event.event.routing().candidate_scopes() {
            if let Some(ids) = self.index.get(&(name.clone(), scope)) {
                matching.extend(
                    ids.iter()
                        .copied()
                        .filter(|id| self.webhooks.get(id).is_some_and(|w| w.webhook.enabled)),
                );
            }
        }
        for webhook_id in &matching {
            self.insert_delivery(event.id, *webhook_id, now);
        }
        IngestReceipt {
            event_id: event.id,
            deliveries: matching.len(),
        }
    }

    fn check_new_events<'a>(&self, events: impl IntoIterator<Item = &'a NewEvent>) -> Result<()> {
        let mut seen = HashSet::new();
        for event in events {
            if self.events.contains_key(&event.id) || !seen.insert(event.id) {
                return Err(StoreError::Conflict(format!(
                    "event {} already exists",
                    event.id
                )));
            }
        }
        Ok(())
    }
}

fn max_delivery_id() -> DeliveryId {
    DeliveryId::from_uuid(Uuid::max())
}

impl Store for MemoryStore {
    async fn create_webhook(&self, webhook: &Webhook) -> Result<()> {
        let mut state = self.lock();
        if state.webhooks.contains_key(&webhook.id) {
            return Err(StoreError::Conflict(format!(
                "webhook {} already exists",
                webhook.id
            )));
        }
        state.index_webhook(webhook);
        state.webhooks.insert(
            webhook.id,
            StoredWebhook {
                webhook: Arc::new(webhook.clone()),
                failing_since: None,
            },
        );
        Ok(())
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Option<Webhook>> {
        Ok(self
            .lock()
            .webhooks
            .get(&id)
            .map(|stored| Webhook::clone(&stored.webhook)))
    }

    async fn update_webhook(
        &self,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> Result<Option<Webhook>> {
        let mut state = self.lock();
        let Some(stored) = state.webhooks.get(&id) else {
            return Ok(None);
        };
        let before = Arc::clone(&stored.webhook);
        let disabling = patch.enabled == Some(false);
        let restart_clock = patch.restarts_failure_clock(&before);
        let mut after = Webhook::clone(&before);
        patch.apply(&mut after, now);
        state.unindex_webhook(&before);
        state.index_webhook(&after);
        if let Some(stored) = state.webhooks.get_mut(&id) {
            stored.webhook = Arc::new(after.clone());
            if restart_clock {
                stored.failing_since = None;
            }
        }
        if disabling {
            state.cancel_pending(id, now);
        }
        Ok(Some(after))
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<bool> {
        let mut state = self.lock();
        let Some(stored) = state.webhooks.remove(&id) else {
            return Ok(false);
        };
        state.unindex_webhook(&stored.webhook);
        for delivery in state.by_webhook.remove(&id).unwrap_or_default() {
            state.remove_delivery(delivery);
        }
        Ok(true)
    }

    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>> {
        let state = self.lock();
        let limit = page_limit(query.limit);
        let start = query
            .after
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut items: Vec<Webhook> = state
            .webhooks
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, stored)| &stored.webhook)
            .filter(|w| w.scope == query.scope)
            .filter(|w| {
                query.events.is_empty()
                    || query
                        .events
                        .iter()
                        .any(|name| w.events.contains(name.as_str()))
            })
            .take(limit + 1)
            .map(|w| Webhook::clone(w))
            .collect();
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    async fn ingest(&self, events: &[NewEvent], now: Timestamp) -> Result<Vec<IngestReceipt>> {
        let mut state = self.lock();
        state.check_new_events(events)?;
        if !events.is_empty() {
            // Nothing is written yet: failing here leaves the state as it was, like a rolled-back
            // transaction.
            self.options.check_ingest_fault()?;
        }
        Ok(events
            .iter()
            .map(|event| state.ingest_one(event, now))
            .collect())
    }

    async fn ingest_for_webhook(
        &self,
        event: &NewEvent,
        webhook: WebhookId,
        now: Timestamp,
    ) -> Result<Option<IngestReceipt>> {
        let mut state = self.lock();
        if !state.webhooks.contains_key(&webhook) {
            return Ok(None);
        }
        state.check_new_events([event])?;
        self.options.check_ingest_fault()?;
        state.events.insert(
            event.id,
            StoredEvent {
                name: event.event.name().clone(),
                bytes: Arc::from(event.event.bytes()),
                created_at: now,
            },
        );
        state.insert_delivery(event.id, webhook, now);
        Ok(Some(IngestReceipt {
            event_id: event.id,
            deliveries: 1,
        }))
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>> {
        // Nothing is leased yet: failing here leaves the state as it was.
        self.options.check_claim_fault()?;
        let mut state = self.lock();
        let now = request.now;
        let mut in_flight: HashMap<WebhookId, usize> = HashMap::new();
        for id in &state.delivering {
            if let Some(row) = state.deliveries.get(id) {
                if row.claimable_at.is_some_and(|until| until > now) {
                    *in_flight.entry(row.webhook_id).or_default() += 1;
                }
            }
        }
        let mut chosen = Vec::new();
        for (_, id) in state.queue.range(..=(now, max_delivery_id())) {
            if chosen.len() >= request.limit {
                break;
            }
            let Some(row) = state.deliveries.get(id) else {
                continue;
            };
            let count = in_flight.entry(row.webhook_id).or_default();
            if *count >= request.per_webhook_cap {
                continue;
            }
            *count += 1;
            chosen.push(*id);
        }
        let lease = LeaseToken::new();
        let leased_until = now.saturating_add(request.lease);
        let mut payloads: HashMap<EventId, Arc<[u8]>> = HashMap::new();
        let mut claimed = Vec::with_capacity(chosen.len());
        for id in chosen {
            state.set_status(id, DeliveryStatus::Delivering);
            state.set_claimable(id, Some(leased_until));
            let Some(row) = state.deliveries.get_mut(&id) else {
                continue;
            };
            row.lease = Some(lease);
            row.updated_at = now;
            let (event_id, webhook_id, attempt, created_at) = (
                row.event_id,
                row.webhook_id,
                row.attempt_count + 1,
                row.created_at,
            );
            let event = state.events.get(&event_id).ok_or_else(|| {
                StoreError::Corrupt(format!("delivery {id} refers to a missing event"))
            })?;
            let webhook = state.webhooks.get(&webhook_id).ok_or_else(|| {
                StoreError::Corrupt(format!("delivery {id} refers to a missing webhook"))
            })?;
            let payload = payloads
                .entry(event_id)
                .or_insert_with(|| Arc::clone(&event.bytes));
            claimed.push(ClaimedDelivery {
                delivery_id: id,
                lease,
                leased_until,
                event_id,
                event_name: event.name.clone(),
                attempt,
                created_at,
                webhook: Arc::clone(&webhook.webhook),
                payload: Arc::clone(payload),
            });
        }
        Ok(claimed)
    }

    async fn record(&self, results: &[AttemptResult]) -> Result<Vec<RecordOutcome>> {
        let mut state = self.lock();
        if !results.is_empty() {
            // Nothing is written yet: failing here leaves the state as it was, like a rolled-back
            // transaction.
            self.options.check_record_fault()?;
        }
        let mut outcomes = Vec::with_capacity(results.len());
        // Retries recorded as pending, by webhook: a 410 later in the batch cancels them.
        let mut retried: Vec<(usize, WebhookId)> = Vec::new();
        let mut disabled: HashSet<WebhookId> = HashSet::new();
        for result in results {
            let held = state
                .deliveries
                .get(&result.delivery_id)
                .is_some_and(|row| {
                    row.status == DeliveryStatus::Delivering && row.lease == Some(result.lease)
                });
            if !held {
                outcomes.push(RecordOutcome::LeaseLost);
                continue;
            }
            let webhook_enabled = state
                .deliveries
                .get(&result.delivery_id)
                .is_some_and(|row| {
                    state
                        .webhooks
                        .get(&row.webhook_id)
                        .is_some_and(|w| w.webhook.enabled)
                });
            let (status, next_at) = match result.next {
                NextState::Succeeded => (DeliveryStatus::Succeeded, None),
                // Disabled while the attempt was in flight: no retry.
                NextState::RetryAt(_) if !webhook_enabled => (DeliveryStatus::Cancelled, None),
                NextState::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
                NextState::Failed => (DeliveryStatus::Failed, None),
            };
            state.set_status(result.delivery_id, status);
            state.set_claimable(result.delivery_id, next_at);
            let Some(row) = state.deliveries.get_mut(&result.delivery_id) else {
                continue;
            };
            row.lease = None;
            row.next_attempt_at = next_at;
            row.attempt_count += 1;
            row.updated_at = result.now;
            let mut attempt = result.attempt.clone();
            attempt.number = row.attempt_count;
            row.attempts.push(attempt);
            let webhook_id = row.webhook_id;
            let failing_since = match state.webhooks.get_mut(&webhook_id) {
                Some(stored) => {
                    stored.failing_since = if result.attempt.succeeded() {
                        None
                    } else {
                        Some(stored.failing_since.unwrap_or(result.attempt.started_at))
                    };
                    stored.failing_since
                }
                None => None,
            };
            if let Some(reason) = &result.disable_webhook {
                state.disable(webhook_id, reason, result.now);
                disabled.insert(webhook_id);
            }
            if status == DeliveryStatus::Pending {
                retried.push((outcomes.len(), webhook_id));
            }
            outcomes.push(if status == DeliveryStatus::Cancelled {
                RecordOutcome::Cancelled { failing_since }
            } else {
                RecordOutcome::Recorded { failing_since }
            });
        }
        for (index, webhook) in retried {
            if disabled.contains(&webhook) {
                outcomes[index] = outcomes[index].cancelled();
            }
        }
        Ok(outcomes)
    }

    async fn release(&self, leases: &[(DeliveryId, LeaseToken)]) -> Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        for (id, lease) in leases {
            let Some(row) = state.deliveries.get_mut(id) else {
                continue;
            };
            if row.status != DeliveryStatus::Delivering || row.lease != Some(*lease) {
                continue;
            }
            row.lease = None;
            let due = row.next_attempt_at;
            let enabled = state
                .webhooks
                .get(&row.webhook_id)
                .is_some_and(|w| w.webhook.enabled);
            if enabled {
                state.set_status(*id, DeliveryStatus::Pending);
                state.set_claimable(*id, due);
            } else {
                // Disabled meanwhile: cancelled, as its pending deliveries were.
                row.next_attempt_at = None;
                row.updated_at = Timestamp::now();
                state.set_status(*id, DeliveryStatus::Cancelled);
                state.set_claimable(*id, None);
            }
        }
        Ok(())
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Page<Delivery>> {
        let state = self.lock();
        let limit = page_limit(query.limit);
        let Some(ids) = state.by_webhook.get(&query.webhook) else {
            return Ok(Page {
                items: Vec::new(),
                has_more: false,
            });
        };
        let end = query
            .before
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut items = Vec::new();
        for id in ids.range((std::ops::Bound::Unbounded, end)).rev() {
            let Some(row) = state.deliveries.get(id) else {
                continue;
            };
            if query.status.is_some_and(|status| status != row.status) {
                continue;
            }
            items.push(state.delivery(row)?);
            if items.len() > limit {
                break;
            }
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>> {
        let state = self.lock();
        let Some(row) = state.deliveries.get(&id) else {
            return Ok(None);
        };
        let payload = state
            .events
            .get(&row.event_id)
            .map(|e| e.bytes.to_vec())
            .unwrap_or_default();
        Ok(Some(DeliveryDetail {
            delivery: state.delivery(row)?,
            attempts: row.attempts.clone(),
            payload,
        }))
    }

    async fn redeliver(&self, id: DeliveryId, now: Timestamp) -> Result<Option<Delivery>> {
        let mut state = self.lock();
        let Some(row) = state.deliveries.get(&id) else {
            return Ok(None);
        };
        let (event_id, webhook_id) = (row.event_id, row.webhook_id);
        let new_id = state.insert_delivery(event_id, webhook_id, now);
        let row = state
            .deliveries
            .get(&new_id)
            .ok_or_else(|| StoreError::Corrupt("redelivery vanished".into()))?;
        state.delivery(row).map(Some)
    }

    async fn failing_since(&self, id: WebhookId) -> Result<Option<Timestamp>> {
        Ok(self
            .lock()
            .webhooks
            .get(&id)
            .and_then(|stored| stored.failing_since))
    }

    async fn disable_webhook(&self, id: WebhookId, reason: &str, now: Timestamp) -> Result<bool> {
        Ok(self.lock().disable(id, reason, now))
    }

    async fn create_token(&self, token: &ApiToken) -> Result<()> {
        let mut state = self.lock();
        if state.tokens.contains_key(&token.hash) || state.token_ids.contains(&token.id) {
            return Err(StoreError::Conflict(format!(
                "token {} or its hash already exists",
                token.id
            )));
        }
        state.token_ids.insert(token.id);
        state.tokens.insert(token.hash, token.clone());
        Ok(())
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<ApiToken>> {
        Ok(self.lock().tokens.get(hash).cloned())
    }

    async fn count_tokens(&self) -> Result<u64> {
        Ok(self.lock().tokens.len() as u64)
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<PurgeReport> {
        let mut state = self.lock();
        let mut report = PurgeReport::default();
        let old: Vec<DeliveryId> = state
            .deliveries
            .values()
            .filter(|row| row.status.is_final() && row.updated_at < cutoff)
            .map(|row| row.id)
            .collect();
        for id in old {
            if let Some(row) = state.remove_delivery(id) {
                report.deliveries += 1;
                report.attempts += row.attempts.len() as u64;
            }
        }
        let referenced: HashSet<EventId> =
            state.deliveries.values().map(|row| row.event_id).collect();
        let before = state.events.len();
        state
            .events
            .retain(|id, event| event.created_at >= cutoff || referenced.contains(id));
        report.events = (before - state.events.len()) as u64;
        Ok(report)
    }

    async fn stats(&self) -> Result<StoreStats> {
        let state = self.lock();
        let mut stats = StoreStats::default();
        for row in state.deliveries.values() {
            match row.status {
                DeliveryStatus::Pending => stats.pending += 1,
                DeliveryStatus::Delivering => stats.delivering += 1,
                DeliveryStatus::Succeeded => stats.succeeded += 1,
                DeliveryStatus::Failed => stats.failed += 1,
                DeliveryStatus::Cancelled => stats.cancelled += 1,
            }
        }
        stats.disabled_webhooks = state
            .webhooks
            .values()
            .filter(|w| !w.webhook.enabled)
            .count() as u64;
        Ok(stats)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
