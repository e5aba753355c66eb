//! What the SQLite queue adds to the conformance suite: the cache of decoded webhooks never
//! hands out a stale copy, the per-webhook cap holds across claim rounds, a webhook below its cap
//! is found behind another's backlog, records of more results than one statement takes, or
//! with two leases of one delivery, keep the outcomes a one-at-a-time record would give, and a
//! large ingestion batch matches every event by its own routing.

use std::collections::HashMap;
use std::time::Duration;

use mia_webhooks_model::{
    Attempt, DeliveryStatus, Event, EventCatalog, EventId, EventSet, FailureKind, Secret,
    TargetUrl, Timestamp, Webhook, WebhookId, WebhookPatch,
};

use super::SqliteStore;
use crate::{
    AttemptResult, ClaimRequest, ClaimedDelivery, NewEvent, NextState, RecordOutcome, Store,
    StoreOptions,
};

const T0: Timestamp = Timestamp::from_millis(1_764_374_400_000);

fn webhook() -> Webhook {
    Webhook {
        id: WebhookId::new(),
        scope: "instance".parse().expect("scope"),
        target_url: TargetUrl::new("https://example.com/hooks").expect("url"),
        secret: Secret::new("first secret").expect("secret"),
        events: EventSet::from_stored(["order_placed".to_owned()]).expect("events"),
        ca_certificate: None,
        proxy: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: T0,
        updated_at: T0,
    }
}

fn event() -> NewEvent {
    // A name added by configuration: no payload fields required.
    let catalog = EventCatalog::with_extra(["order_placed"]).expect("catalog");
    let body = br#"{"eventName":"order_placed","eventTimestamp":1764374400000,"payload":{}}"#;
    NewEvent {
        id: EventId::new(),
        event: Event::parse(body, &catalog).expect("event"),
    }
}

fn request(limit: usize, per_webhook_cap: usize) -> ClaimRequest {
    ClaimRequest {
        limit,
        lease: Duration::from_secs(60),
        per_webhook_cap,
        now: T0,
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    let options = StoreOptions {
        secret_keys: Some(crate::SecretKeys::from_bytes([9; 32], &[])),
        ..StoreOptions::default()
    };
    SqliteStore::open(dir.path().join("hooks.db").to_str().expect("path"), options)
        .await
        .expect("open")
}

#[tokio::test]
async fn a_claim_after_an_edit_hands_out_the_edited_webhook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let hook = webhook();
    store.create_webhook(&hook).await.expect("create");
    store
        .ingest(&[event(), event(), event()], T0)
        .await
        .expect("ingest");

    let first = store.claim(&request(1, 8)).await.expect("claim");
    assert_eq!(first[0].webhook.secret.expose_str(), "first secret");

    let patch = WebhookPatch {
        secret: Some(Secret::new("second secret").expect("secret")),
        target_url: Some(TargetUrl::new("https://example.com/other").expect("url")),
        ..WebhookPatch::default()
    };
    store
        .update_webhook(hook.id, patch, T0)
        .await
        .expect("update")
        .expect("found");
    let second = store.claim(&request(1, 8)).await.expect("claim");
    assert_eq!(second[0].webhook.secret.expose_str(), "second secret");
    assert_eq!(
        second[0].webhook.target_url.as_str(),
        "https://example.com/other"
    );

    // Disabling (from the store's own health path) is an edit too.
    store
        .disable_webhook(hook.id, "410 Gone", T0)
        .await
        .expect("disable");
    store
        .ingest_for_webhook(&event(), hook.id, T0)
        .await
        .expect("test event");
    let third = store.claim(&request(10, 8)).await.expect("claim");
    assert_eq!(
        third.len(),
        1,
        "only the test event; the rest were cancelled"
    );
    assert!(!third[0].webhook.enabled);
    assert_eq!(
        third[0].webhook.disabled_reason.as_deref(),
        Some("410 Gone")
    );
    store.close().await;
}

#[tokio::test]
async fn a_webhook_below_its_cap_is_found_behind_a_backlog_of_one_at_its_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let flooded = webhook();
    store.create_webhook(&flooded).await.expect("create");
    // 300 deliveries of `flooded`, due first...
    let backlog: Vec<NewEvent> = (0..300).map(|_| event()).collect();
    store.ingest(&backlog, T0).await.expect("ingest");
    // ...then one webhook more, and one delivery each, due a second later.
    let quiet = webhook();
    store.create_webhook(&quiet).await.expect("create");
    store
        .ingest(&[event()], T0.saturating_add(Duration::from_secs(1)))
        .await
        .expect("ingest");

    let later = ClaimRequest {
        now: T0.saturating_add(Duration::from_secs(2)),
        ..request(20, 4)
    };
    let claimed = store.claim(&later).await.expect("claim");
    let mut per_webhook: HashMap<WebhookId, usize> = HashMap::new();
    for c in &claimed {
        *per_webhook.entry(c.webhook.id).or_default() += 1;
    }
    assert_eq!(
        per_webhook,
        HashMap::from([(flooded.id, 4), (quiet.id, 1)]),
        "the cap holds, and the quiet webhook is not hidden by the flooded one's backlog"
    );
    // Due order: the flooded webhook's deliveries were due first.
    assert_eq!(claimed.last().map(|c| c.webhook.id), Some(quiet.id));

    // Every webhook with due deliveries is now at its cap (or has none left): nothing more.
    assert!(store.claim(&later).await.expect("claim").is_empty());
    store.close().await;
}

fn result(claimed: &ClaimedDelivery, ok: bool, now: Timestamp) -> AttemptResult {
    AttemptResult {
        delivery_id: claimed.delivery_id,
        lease: claimed.lease,
        webhook_id: claimed.webhook.id,
        attempt: Attempt {
            number: claimed.attempt,
            started_at: now,
            duration_ms: 3,
            status_code: Some(if ok { 200 } else { 503 }),
            failure: (!ok).then_some(FailureKind::HttpStatus),
            error: None,
            response_excerpt: Some("\0 a NUL, 'quotes' and \u{1F600}".into()),
        },
        next: if ok {
            NextState::Succeeded
        } else {
            NextState::RetryAt(now)
        },
        disable_webhook: None,
        now,
    }
}

#[tokio::test]
async fn a_record_of_more_results_than_one_statement_takes_writes_them_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let hooks = [webhook(), webhook(), webhook()];
    for hook in &hooks {
        store.create_webhook(hook).await.expect("create");
    }
    let events: Vec<NewEvent> = (0..200).map(|_| event()).collect();
    store.ingest(&events, T0).await.expect("ingest");
    let claimed = store.claim(&request(600, 1000)).await.expect("claim");
    assert_eq!(claimed.len(), 600);

    // Failures first for the first webhook, then successes: its health is applied in order.
    let results: Vec<AttemptResult> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| result(c, c.webhook.id != hooks[0].id || i >= 300, T0))
        .collect();
    let outcomes = store.record(&results).await.expect("record");
    assert_eq!(outcomes.len(), 600);
    for (i, (c, outcome)) in claimed.iter().zip(&outcomes).enumerate() {
        let failing = c.webhook.id == hooks[0].id && i < 300;
        let expected = RecordOutcome::Recorded {
            failing_since: failing.then_some(T0),
        };
        assert_eq!(*outcome, expected, "result {i}");
    }
    assert_eq!(
        store.failing_since(hooks[0].id).await.expect("health"),
        None
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.delivering, 0);
    assert_eq!(stats.succeeded + stats.pending, 600);
    let detail = store
        .get_delivery(claimed[599].delivery_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(detail.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].number, 1);
    assert_eq!(
        detail.attempts[0].response_excerpt.as_deref(),
        Some("\0 a NUL, 'quotes' and \u{1F600}"),
        "texts are stored byte for byte"
    );
    store.close().await;
}

#[tokio::test]
async fn a_record_with_an_expired_and_a_current_lease_of_one_delivery_records_the_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    store.create_webhook(&webhook()).await.expect("create");
    store.ingest(&[event(), event()], T0).await.expect("ingest");
    let short = ClaimRequest {
        lease: Duration::from_secs(1),
        ..request(1, 8)
    };
    let stale = store.claim(&short).await.expect("claim").remove(0);
    let later = T0.saturating_add(Duration::from_secs(5));
    let current = store
        .claim(&ClaimRequest {
            now: later,
            ..request(2, 8)
        })
        .await
        .expect("claim");
    assert_eq!(current.len(), 2, "the expired lease and the other delivery");
    let again = current
        .iter()
        .find(|c| c.delivery_id == stale.delivery_id)
        .expect("claimed again");
    let other = current
        .iter()
        .find(|c| c.delivery_id != stale.delivery_id)
        .expect("the other delivery");

    let outcomes = store
        .record(&[
            result(&stale, true, later),
            result(other, true, later),
            result(again, true, later),
            result(again, true, later),
        ])
        .await
        .expect("record");
    let recorded = RecordOutcome::Recorded {
        failing_since: None,
    };
    assert_eq!(
        outcomes,
        [
            RecordOutcome::LeaseLost,
            recorded,
            recorded,
            RecordOutcome::LeaseLost
        ]
    );
    let detail = store
        .get_delivery(stale.delivery_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        detail.attempts.len(),
        1,
        "one attempt, by the current holder"
    );
    store.close().await;
}

#[tokio::test]
async fn a_large_ingest_batch_matches_each_event_by_its_own_routing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let on = |scope: &str| Webhook {
        scope: scope.parse().expect("scope"),
        ..webhook()
    };
    let everywhere = on("instance");
    let first = on("company/t1");
    let second = on("company/t2");
    for hook in [&everywhere, &first, &second] {
        store.create_webhook(hook).await.expect("create");
    }
    let catalog = EventCatalog::with_extra(["order_placed"]).expect("catalog");
    let of = |tenant: &str| {
        let body = format!(
            r#"{{"eventName":"order_placed","eventTimestamp":1764374400000,"payload":{{"tenantId":"{tenant}"}}}}"#
        );
        NewEvent {
            id: EventId::new(),
            event: Event::parse(body.as_bytes(), &catalog).expect("event"),
        }
    };
    // More events (and deliveries) than one statement takes, three routings.
    let events: Vec<NewEvent> = (0..300).map(|i| of(["t1", "t2", "t3"][i % 3])).collect();
    let receipts = store.ingest(&events, T0).await.expect("ingest");
    assert_eq!(receipts.len(), 300);
    for (i, (receipt, event)) in receipts.iter().zip(&events).enumerate() {
        assert_eq!(receipt.event_id, event.id);
        let expected = if i % 3 == 2 { 1 } else { 2 };
        assert_eq!(receipt.deliveries, expected, "event {i}");
    }
    let claimed = store.claim(&request(1000, 1000)).await.expect("claim");
    assert_eq!(claimed.len(), 500);
    let mut per_webhook: HashMap<WebhookId, usize> = HashMap::new();
    for c in &claimed {
        *per_webhook.entry(c.webhook.id).or_default() += 1;
        assert_eq!(
            c.payload.as_ref(),
            events
                .iter()
                .find(|e| e.id == c.event_id)
                .expect("event")
                .event
                .bytes()
        );
    }
    assert_eq!(
        per_webhook,
        HashMap::from([(everywhere.id, 300), (first.id, 100), (second.id, 100)])
    );
    store.close().await;

    // A new process knows no event yet: the bytes come from the database, the same.
    let reopened = open(&dir).await;
    let after_the_leases = ClaimRequest {
        now: T0.saturating_add(Duration::from_secs(61)),
        ..request(1000, 1000)
    };
    let again = reopened.claim(&after_the_leases).await.expect("claim");
    assert_eq!(again.len(), 500);
    for c in &again {
        let event = events.iter().find(|e| e.id == c.event_id).expect("event");
        assert_eq!(c.payload.as_ref(), event.event.bytes());
        assert_eq!(c.event_name, *event.event.name());
    }
    reopened.close().await;
}
