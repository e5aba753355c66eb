//! What claims keep between calls: decoded webhooks and event envelopes.
//!
//! Decoding a webhook row (opening its sealed secret, parsing its URLs and certificate) costs
//! more than reading it, and a busy queue claims deliveries of the same few webhooks over and
//! over. A claim reads each webhook's `revision` (a fresh random value on every write of the
//! webhook, migration 0002) and reuses the decoded copy kept under the same revision; only new or
//! changed webhooks are read in full. The revision comes from the database in the claim's own
//! transaction, so an edit by another process is seen as soon as it is committed.
//!
//! Event envelopes never change once written, so the bytes an ingestion committed serve the
//! claims that follow without reading them back: claims come in ingestion order, and a budget of
//! bytes keeps the newest events. A claim reads only the events it does not find here (written
//! by another process, or evicted).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use mia_webhooks_model::{EventName, Webhook};
use uuid::Uuid;

/// Past this many webhooks the cache starts again empty (deleted webhooks leave entries behind).
const MAX_ENTRIES: usize = 4096;

/// Decoded webhooks by id, each with the revision it was read at. Shared by the clones of a
/// store.
#[derive(Default)]
pub(super) struct WebhookCache {
    entries: Mutex<HashMap<Uuid, (i64, Arc<Webhook>)>>,
}

impl WebhookCache {
    /// The copy of webhook `id` at `revision`, if kept.
    pub(super) fn get(&self, id: Uuid, revision: i64) -> Option<Arc<Webhook>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&id)
            .filter(|(kept, _)| *kept == revision)
            .map(|(_, webhook)| Arc::clone(webhook))
    }

    /// Keeps `webhook` as read at `revision`.
    pub(super) fn put(&self, revision: i64, webhook: &Arc<Webhook>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(webhook.id.as_uuid(), (revision, Arc::clone(webhook)));
    }
}

impl std::fmt::Debug for WebhookCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the webhooks themselves: they hold opened secrets.
        let len = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("WebhookCache")
            .field("entries", &len)
            .finish()
    }
}

/// The bytes of envelopes the event cache keeps at most.
const EVENT_BUDGET: usize = 16 << 20;

/// An event's name and envelope bytes.
pub(super) type CachedEvent = (EventName, Arc<[u8]>);

/// Event envelopes by id, the newest first to stay, within [`EVENT_BUDGET`] bytes. Shared by
/// the clones of a store.
#[derive(Default)]
pub(super) struct EventCache {
    entries: Mutex<EventEntries>,
}

#[derive(Default)]
struct EventEntries {
    events: HashMap<Uuid, CachedEvent>,
    /// Ids in the order they were kept, oldest first.
    order: VecDeque<Uuid>,
    bytes: usize,
}

impl EventCache {
    /// The event `id`, if kept.
    pub(super) fn get(&self, id: Uuid) -> Option<CachedEvent> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .events
            .get(&id)
            .map(|(name, bytes)| (name.clone(), Arc::clone(bytes)))
    }

    /// Keeps event `id` (committed: its bytes never change), dropping the oldest ones past the
    /// budget.
    pub(super) fn put(&self, id: Uuid, name: &EventName, bytes: &Arc<[u8]>) {
        if bytes.len() > EVENT_BUDGET {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.events.contains_key(&id) {
            return;
        }
        entries.bytes += bytes.len();
        entries.events.insert(id, (name.clone(), Arc::clone(bytes)));
        entries.order.push_back(id);
        while entries.bytes > EVENT_BUDGET {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some((_, dropped)) = entries.events.remove(&oldest) {
                entries.bytes -= dropped.len();
            }
        }
    }
}

impl std::fmt::Debug for EventCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("EventCache")
            .field("events", &entries.events.len())
            .field("bytes", &entries.bytes)
            .finish()
    }
}

/// A fresh revision for a webhook row: random, never 0 (the revision of rows written before
/// migration 0002).
pub(super) fn new_revision() -> i64 {
    // The low 64 bits of a v7 UUID are random apart from its two variant bits.
    let random = Uuid::now_v7().as_u128() as u64 as i64;
    if random == 0 { 1 } else { random }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mia_webhooks_model::{EventSet, Secret, TargetUrl, Timestamp, WebhookId};

    fn webhook() -> Arc<Webhook> {
        Arc::new(Webhook {
            id: WebhookId::new(),
            scope: "instance".parse().unwrap(),
            target_url: TargetUrl::new("https://example.com/hooks").unwrap(),
            secret: Secret::new("s3cr3t").unwrap(),
            events: EventSet::from_stored(["tag_created".to_owned()]).unwrap(),
            ca_certificate: None,
            proxy: None,
            description: None,
            enabled: true,
            disabled_reason: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        })
    }

    #[test]
    fn a_copy_is_reused_only_at_its_revision() {
        let cache = WebhookCache::default();
        let hook = webhook();
        let id = hook.id.as_uuid();
        assert!(cache.get(id, 5).is_none());
        cache.put(5, &hook);
        assert!(Arc::ptr_eq(&cache.get(id, 5).unwrap(), &hook));
        assert!(cache.get(id, 6).is_none(), "another revision is stale");
        assert!(!format!("{cache:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = WebhookCache::default();
        for _ in 0..MAX_ENTRIES + 10 {
            cache.put(1, &webhook());
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }

    #[test]
    fn events_stay_within_the_budget_newest_first() {
        let cache = EventCache::default();
        let name = EventName::new("tag_created").unwrap();
        let big: Arc<[u8]> = Arc::from(vec![b'x'; EVENT_BUDGET / 4]);
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            cache.put(*id, &name, &big);
        }
        assert!(cache.get(ids[0]).is_none(), "the oldest went first");
        assert!(cache.get(ids[1]).is_none());
        for id in &ids[2..] {
            let (kept_name, bytes) = cache.get(*id).unwrap();
            assert_eq!(kept_name, name);
            assert!(Arc::ptr_eq(&bytes, &big));
        }
        assert!(cache.entries.lock().unwrap().bytes <= EVENT_BUDGET);
        let huge: Arc<[u8]> = Arc::from(vec![b'x'; EVENT_BUDGET + 1]);
        let id = Uuid::now_v7();
        cache.put(id, &name, &huge);
        assert!(cache.get(id).is_none(), "larger than the budget: not kept");
    }

    #[test]
    fn revisions_differ_and_are_never_zero() {
        let a = new_revision();
        let b = new_revision();
        assert_ne!(a, b);
        assert_ne!(a, 0);
    }
}
