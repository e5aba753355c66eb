//! The queue: claims, leases, records, the per-webhook cap, concurrent claimers, releases.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mia_webhooks_model::{DeliveryId, DeliveryStatus};
use mia_webhooks_store::{
    AttemptResult, ClaimRequest, LeaseToken, NextState, RecordOutcome, Store, StoreOptions,
};

use super::{TestBackend, open};
use crate::support::*;

pub async fn claim_returns_what_an_attempt_needs<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = full_webhook();
    store.create_webhook(&hook).await.unwrap();
    let event = event("project_created", Some("acme"), Some("shop"));
    store
        .ingest(std::slice::from_ref(&event), T0)
        .await
        .unwrap();
    let delivery = deliveries_of(&store, hook.id).await.remove(0);

    let request = ClaimRequest {
        limit: 10,
        lease: Duration::from_secs(30),
        per_webhook_cap: 8,
        now: at(2),
    };
    let claimed = store.claim(&request).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let claimed = &claimed[0];
    assert_eq!(claimed.delivery_id, delivery.id);
    assert_eq!(claimed.event_id, event.id);
    assert_eq!(claimed.event_name.as_str(), "project_created");
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.created_at, T0);
    assert_eq!(claimed.leased_until, at(32));
    assert_eq!(claimed.payload.as_ref(), event.event.bytes());
    assert_same_webhook(&claimed.webhook, &hook);

    let now = store
        .get_delivery(delivery.id)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(now.status, DeliveryStatus::Delivering);
    assert_eq!(now.attempt_count, 0, "a claim is not an attempt");
    assert_eq!(
        now.next_attempt_at, None,
        "only pending deliveries have a next attempt time"
    );
    assert!(
        store.claim(&request).await.unwrap().is_empty(),
        "a leased delivery is not claimed twice"
    );
}

pub async fn claims_share_webhooks_and_payloads_within_a_batch<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let one = webhook("instance", &["tag_created"]);
    let two = webhook("instance", &["tag_created"]);
    store.create_webhook(&one).await.unwrap();
    store.create_webhook(&two).await.unwrap();
    store
        .ingest(
            &[
                event("tag_created", None, None),
                event("tag_created", None, None),
            ],
            T0,
        )
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    for a in &claimed {
        for b in &claimed {
            if a.webhook.id == b.webhook.id {
                assert!(Arc::ptr_eq(&a.webhook, &b.webhook), "one webhook, one copy");
            }
            if a.event_id == b.event_id {
                assert!(
                    Arc::ptr_eq(&a.payload, &b.payload),
                    "one event, one copy of its bytes"
                );
            }
        }
    }
    let leases: HashSet<_> = claimed.iter().map(|c| (c.delivery_id, c.lease)).collect();
    assert_eq!(leases.len(), 4);
}

pub async fn claim_takes_only_due_deliveries_up_to_the_limit<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let now_events = [
        event("tag_created", None, None),
        event("tag_created", None, None),
        event("tag_created", None, None),
    ];
    store.ingest(&now_events, T0).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], at(100))
        .await
        .unwrap();

    assert!(
        store.claim(&claim_at(at(50), 0)).await.unwrap().is_empty(),
        "a limit of 0 takes nothing"
    );
    let first = store.claim(&claim_at(at(50), 2)).await.unwrap();
    assert_eq!(first.len(), 2);
    let second = store.claim(&claim_at(at(50), 10)).await.unwrap();
    assert_eq!(second.len(), 1, "the delivery due at +100 s waits");
    let taken: HashSet<_> = first.iter().chain(&second).map(|c| c.event_id).collect();
    assert_eq!(taken, now_events.iter().map(|e| e.id).collect());
    assert!(store.claim(&claim_at(at(99), 10)).await.unwrap().is_empty());
    assert_eq!(
        store.claim(&claim_at(at(100), 10)).await.unwrap().len(),
        1,
        "due at its time exactly"
    );
}

pub async fn expired_lease_is_claimable_again_with_a_new_token<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();
    let short = |now| ClaimRequest {
        limit: 10,
        lease: Duration::from_secs(30),
        per_webhook_cap: 8,
        now,
    };

    let first = store.claim(&short(at(0))).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store.claim(&short(at(10))).await.unwrap().is_empty(),
        "the lease is live"
    );
    assert!(
        store.claim(&short(at(29))).await.unwrap().is_empty(),
        "the lease is live"
    );
    // The lease ends at leased_until: from then on the delivery is claimable again.
    let second = store.claim(&short(at(30))).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].delivery_id, first[0].delivery_id);
    assert_ne!(second[0].lease, first[0].lease);
    assert_eq!(second[0].attempt, 1, "no attempt was recorded");
    assert_eq!(second[0].leased_until, at(60));

    assert_eq!(
        store.record(&[success(&first[0], at(31))]).await.unwrap(),
        [RecordOutcome::LeaseLost]
    );
    assert_eq!(
        store.record(&[success(&second[0], at(31))]).await.unwrap(),
        [RecordOutcome::Recorded {
            failing_since: None
        }]
    );
}

pub async fn stale_lease_record_is_refused_and_writes_nothing<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();
    let stale = store.claim(&claim_at(at(0), 1)).await.unwrap().remove(0);
    let current = store.claim(&claim_at(at(60), 1)).await.unwrap().remove(0);
    assert_eq!(stale.delivery_id, current.delivery_id);

    let mut result = failure(&stale, at(61), NextState::Failed);
    result.disable_webhook = Some("410 Gone".into());
    let before = store.stats().await.unwrap();
    assert_eq!(
        store.record(&[result]).await.unwrap(),
        [RecordOutcome::LeaseLost]
    );

    let detail = store
        .get_delivery(stale.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert!(detail.attempts.is_empty(), "no attempt written");
    assert_eq!(detail.delivery.status, DeliveryStatus::Delivering);
    assert_eq!(detail.delivery.attempt_count, 0);
    assert_eq!(
        store.failing_since(hook.id).await.unwrap(),
        None,
        "health untouched"
    );
    assert!(
        store.get_webhook(hook.id).await.unwrap().unwrap().enabled,
        "not disabled"
    );
    assert_eq!(store.stats().await.unwrap(), before);
    // The holder of the current lease still records.
    assert!(matches!(
        store.record(&[success(&current, at(62))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
}

pub async fn record_takes_any_text_a_receiver_sends<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let (_, claimed) = one_claimed(&store).await;
    let mut result = failure(&claimed, at(2), NextState::RetryAt(at(100)));
    result.attempt.response_excerpt = Some("a\0b".to_owned());
    result.attempt.error = Some("the receiver answered 500 \0".to_owned());
    // PostgreSQL's `text` cannot hold NUL; a batch that failed on it would fail every time it
    // was tried again, and nothing behind it would be recorded.
    let outcomes = store.record(&[result]).await.unwrap();
    assert_eq!(
        outcomes,
        [RecordOutcome::Recorded {
            failing_since: Some(at(2))
        }]
    );
    let detail = store
        .get_delivery(claimed.delivery_id)
        .await
        .unwrap()
        .unwrap();
    let attempt = &detail.attempts[0];
    let excerpt = attempt.response_excerpt.as_deref().unwrap();
    assert!(excerpt == "a\0b" || excerpt == "a\u{FFFD}b", "{excerpt:?}");
    assert!(
        attempt
            .error
            .as_deref()
            .unwrap()
            .starts_with("the receiver answered 500 ")
    );
}

pub async fn record_writes_a_batch_of_results<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hooks = [
        webhook("instance", &["tag_created"]),
        webhook("instance", &["tag_created"]),
        webhook("instance", &["tag_created"]),
    ];
    for hook in &hooks {
        store.create_webhook(hook).await.unwrap();
    }
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let outcomes = store
        .record(&[
            success(&claimed[0], at(2)),
            failure(&claimed[1], at(2), NextState::RetryAt(at(100))),
            failure(&claimed[2], at(2), NextState::Failed),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            RecordOutcome::Recorded {
                failing_since: None
            },
            RecordOutcome::Recorded {
                failing_since: Some(at(2))
            },
            RecordOutcome::Recorded {
                failing_since: Some(at(2))
            },
        ]
    );
    let delivery = |i: usize| {
        let store = &store;
        let id = claimed[i].delivery_id;
        async move { store.get_delivery(id).await.unwrap().unwrap() }
    };
    let ok = delivery(0).await;
    assert_eq!(
        (
            ok.delivery.status,
            ok.delivery.attempt_count,
            ok.delivery.next_attempt_at
        ),
        (DeliveryStatus::Succeeded, 1, None)
    );
    assert_eq!(ok.delivery.updated_at, at(2));
    assert_eq!(ok.attempts.len(), 1);
    assert_eq!(ok.attempts[0].status_code, Some(200));
    let retry = delivery(1).await;
    assert_eq!(retry.delivery.status, DeliveryStatus::Pending);
    assert_eq!(retry.delivery.next_attempt_at, Some(at(100)));
    assert_eq!(
        retry
            .delivery
            .last_attempt
            .as_ref()
            .and_then(|a| a.status_code),
        Some(500)
    );
    let failed = delivery(2).await;
    assert_eq!(
        (failed.delivery.status, failed.delivery.next_attempt_at),
        (DeliveryStatus::Failed, None)
    );

    assert!(store.record(&[]).await.unwrap().is_empty());
    assert!(store.claim(&claim_at(at(99), 10)).await.unwrap().is_empty());
    let again = store.claim(&claim_at(at(100), 10)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].delivery_id, again[0].attempt),
        (claimed[1].delivery_id, 2)
    );
}

pub async fn record_refuses_lost_leases_one_by_one<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(
            &[
                event("tag_created", None, None),
                event("tag_created", None, None),
            ],
            T0,
        )
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    let mut forged = success(&claimed[1], at(2));
    forged.lease = LeaseToken::new();
    let outcomes = store
        .record(&[
            success(&claimed[0], at(2)),
            forged,
            // The same result twice: the first ends the lease, the second finds it gone.
            success(&claimed[0], at(2)),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            RecordOutcome::Recorded {
                failing_since: None
            },
            RecordOutcome::LeaseLost,
            RecordOutcome::LeaseLost
        ]
    );
    assert_eq!(
        store
            .get_delivery(claimed[0].delivery_id)
            .await
            .unwrap()
            .unwrap()
            .attempts
            .len(),
        1
    );
    let untouched = store
        .get_delivery(claimed[1].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.delivery.status, DeliveryStatus::Delivering);
    assert!(untouched.attempts.is_empty());
    assert!(matches!(
        store.record(&[success(&claimed[1], at(3))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
}

pub async fn per_webhook_cap_counts_live_leases<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let busy = webhook("instance", &["alpha_happened", "beta_happened"]);
    let quiet = webhook("instance", &["alpha_happened"]);
    store.create_webhook(&busy).await.unwrap();
    store.create_webhook(&quiet).await.unwrap();
    let mut events = vec![
        event("alpha_happened", None, None),
        event("alpha_happened", None, None),
    ];
    events.extend((0..3).map(|_| event("beta_happened", None, None)));
    store.ingest(&events, T0).await.unwrap();
    let capped = |now, limit| ClaimRequest {
        limit,
        lease: Duration::from_secs(60),
        per_webhook_cap: 2,
        now,
    };
    let per_webhook = |claimed: &[mia_webhooks_store::ClaimedDelivery]| {
        let mut counts = HashMap::new();
        for c in claimed {
            *counts.entry(c.webhook.id).or_insert(0) += 1;
        }
        counts
    };

    let first = store.claim(&capped(at(1), 10)).await.unwrap();
    assert_eq!(
        per_webhook(&first),
        HashMap::from([(busy.id, 2), (quiet.id, 2)])
    );
    assert!(
        store.claim(&capped(at(2), 10)).await.unwrap().is_empty(),
        "busy is at its cap, quiet has no more"
    );

    let busy_claim = first.iter().find(|c| c.webhook.id == busy.id).unwrap();
    store.record(&[success(busy_claim, at(3))]).await.unwrap();
    let second = store.claim(&capped(at(3), 10)).await.unwrap();
    assert_eq!(
        per_webhook(&second),
        HashMap::from([(busy.id, 1)]),
        "one slot came free"
    );

    // Expired leases do not count: at +61 s every lease of the first claim has ended.
    let third = store.claim(&capped(at(61), 10)).await.unwrap();
    assert_eq!(third.iter().filter(|c| c.webhook.id == quiet.id).count(), 2);
    // busy: the lease of `second` (until +63 s) is live and counts, so one more fits.
    assert_eq!(third.iter().filter(|c| c.webhook.id == busy.id).count(), 1);
    let cap_zero = ClaimRequest {
        per_webhook_cap: 0,
        ..capped(at(1000), 10)
    };
    assert!(store.claim(&cap_zero).await.unwrap().is_empty());
}

pub async fn concurrent_claimers_never_hold_the_same_delivery<B: TestBackend>(backend: B) {
    const WEBHOOKS: usize = 10;
    const EVENTS: usize = 20;
    const CLAIMERS: usize = 8;
    // A connection per claimer (PostgreSQL's default pool is smaller on a small machine), so
    // the eight transactions really run at once; SQLite writes through its one connection
    // whatever this says.
    let store = Arc::new(
        backend
            .open(StoreOptions {
                max_connections: Some(CLAIMERS as u32),
                ..StoreOptions::default()
            })
            .await,
    );
    for _ in 0..WEBHOOKS {
        store
            .create_webhook(&webhook("instance", &["tag_created"]))
            .await
            .unwrap();
    }
    let events: Vec<_> = (0..EVENTS)
        .map(|_| event("tag_created", None, None))
        .collect();
    store.ingest(&events, T0).await.unwrap();

    // Who holds what right now. A task forgets a delivery before recording it, so the next
    // holder can only appear after the record committed.
    let held: Arc<Mutex<HashSet<DeliveryId>>> = Arc::default();
    let finished: Arc<Mutex<Vec<DeliveryId>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..CLAIMERS {
        let (store, held, finished) = (store.clone(), held.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let mut claims = 0;
            loop {
                let claimed = store.claim(&claim_at(at(1), 5)).await.unwrap();
                if claimed.is_empty() {
                    return claims;
                }
                claims += claimed.len();
                for c in &claimed {
                    assert!(
                        held.lock().unwrap().insert(c.delivery_id),
                        "{} is held twice",
                        c.delivery_id
                    );
                }
                tokio::task::yield_now().await;
                let mut results = Vec::new();
                for c in &claimed {
                    held.lock().unwrap().remove(&c.delivery_id);
                    // First attempts fail and are due again at once, so deliveries change hands.
                    results.push(if c.attempt == 1 {
                        failure(c, at(1), NextState::RetryAt(at(1)))
                    } else {
                        finished.lock().unwrap().push(c.delivery_id);
                        success(c, at(1))
                    });
                }
                for outcome in store.record(&results).await.unwrap() {
                    assert!(
                        matches!(outcome, RecordOutcome::Recorded { .. }),
                        "no lease was lost"
                    );
                }
            }
        }));
    }
    let mut claims = 0;
    for task in tasks {
        claims += task.await.unwrap();
    }
    let total = WEBHOOKS * EVENTS;
    assert_eq!(
        claims,
        2 * total,
        "every delivery was claimed exactly twice"
    );
    let finished = finished.lock().unwrap().clone();
    assert_eq!(finished.iter().collect::<HashSet<_>>().len(), total);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.succeeded, stats.pending, stats.delivering),
        (total as u64, 0, 0)
    );
}

/// A lease given back after its webhook was disabled does not make the delivery pending again:
/// it is cancelled, as the webhook's pending deliveries were, so nothing more is sent to it.
pub async fn release_cancels_what_a_disabled_webhook_had_leased<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let (hook, claimed) = one_claimed(&store).await;
    store
        .disable_webhook(hook.id, "disabled by hand", at(2))
        .await
        .unwrap();

    store
        .release(&[(claimed.delivery_id, claimed.lease)])
        .await
        .unwrap();
    let released = store
        .get_delivery(claimed.delivery_id)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(released.status, DeliveryStatus::Cancelled);
    assert_eq!(released.next_attempt_at, None);
    assert!(store.claim(&claim_at(at(3), 10)).await.unwrap().is_empty());
}

pub async fn release_makes_deliveries_due_at_once<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(
            &[
                event("tag_created", None, None),
                event("tag_created", None, None),
            ],
            T0,
        )
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(claimed.len(), 2);

    store
        .release(&[
            (claimed[0].delivery_id, claimed[0].lease),
            (claimed[1].delivery_id, LeaseToken::new()),
        ])
        .await
        .unwrap();
    store.release(&[]).await.unwrap();
    let released = store
        .get_delivery(claimed[0].delivery_id)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(released.status, DeliveryStatus::Pending);
    assert_eq!(released.next_attempt_at, Some(T0), "due when it was due");
    assert_eq!(released.attempt_count, 0);

    let again = store.claim(&claim_at(at(2), 10)).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "the other lease was not released by a wrong token"
    );
    assert_eq!(
        (again[0].delivery_id, again[0].attempt),
        (claimed[0].delivery_id, 1)
    );
    assert_eq!(
        store.record(&[success(&claimed[0], at(3))]).await.unwrap(),
        [RecordOutcome::LeaseLost]
    );
    assert!(matches!(
        store.record(&[success(&claimed[1], at(3))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
}

/// `record_then_claim`: the results are written first, so the slot a result frees under the
/// per-webhook cap goes to the claim of the same call; a lost lease is refused without
/// stopping the claim; and with nothing due the claim is empty while the results still land.
pub async fn record_then_claim_records_first_and_claims_into_the_freed_slot<B: TestBackend>(
    backend: B,
) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let three = [
        event("tag_created", None, None),
        event("tag_created", None, None),
        event("tag_created", None, None),
    ];
    store.ingest(&three, T0).await.unwrap();
    let one_at_a_time = |now| ClaimRequest {
        limit: 10,
        lease: Duration::from_secs(60),
        per_webhook_cap: 1,
        now,
    };
    let first = store.claim(&one_at_a_time(at(1))).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(store.claim(&one_at_a_time(at(1))).await.unwrap().is_empty());

    // A result for a lease nobody holds rides along and is refused.
    let stale = AttemptResult {
        lease: LeaseToken::new(),
        ..success(&first[0], at(2))
    };
    let (recorded, claimed) = store
        .record_then_claim(&[success(&first[0], at(2)), stale], &one_at_a_time(at(2)))
        .await;
    assert_eq!(
        recorded.unwrap(),
        [
            RecordOutcome::Recorded {
                failing_since: None
            },
            RecordOutcome::LeaseLost
        ]
    );
    let second = claimed.unwrap();
    assert_eq!(second.len(), 1, "the slot the success freed");
    assert_ne!(second[0].delivery_id, first[0].delivery_id);
    assert_eq!(second[0].attempt, 1);

    // The last one, then nothing is due: the claim is empty, the result still lands.
    let (recorded, claimed) = store
        .record_then_claim(
            &[failure(&second[0], at(3), NextState::RetryAt(at(600)))],
            &one_at_a_time(at(3)),
        )
        .await;
    assert_eq!(recorded.unwrap().len(), 1);
    let third = claimed.unwrap();
    assert_eq!(third.len(), 1);
    let (recorded, claimed) = store
        .record_then_claim(&[success(&third[0], at(4))], &one_at_a_time(at(4)))
        .await;
    assert_eq!(recorded.unwrap().len(), 1);
    assert!(claimed.unwrap().is_empty());
    let deliveries = deliveries_of(&store, hook.id).await;
    let statuses: HashMap<DeliveryId, DeliveryStatus> =
        deliveries.iter().map(|d| (d.id, d.status)).collect();
    assert_eq!(statuses[&first[0].delivery_id], DeliveryStatus::Succeeded);
    assert_eq!(statuses[&second[0].delivery_id], DeliveryStatus::Pending);
    assert_eq!(statuses[&third[0].delivery_id], DeliveryStatus::Succeeded);
    let retried = deliveries
        .iter()
        .find(|d| d.id == second[0].delivery_id)
        .unwrap();
    assert_eq!(retried.next_attempt_at, Some(at(600)));
    assert_eq!(retried.attempt_count, 1);
}

/// `ingest_then_claim`: the deliveries the ingestion creates are leased by the same call, under
/// the per-webhook cap (which counts what is already held) and the limit; what is left stays
/// due for the next claim; and each claimed delivery carries its event's exact bytes.
pub async fn ingest_then_claim_leases_the_new_deliveries_under_the_cap<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let busy = webhook("instance", &["tag_created"]);
    let quiet = webhook("instance", &["tag_created"]);
    store.create_webhook(&busy).await.unwrap();
    store.create_webhook(&quiet).await.unwrap();
    let request = |limit, now| ClaimRequest {
        limit,
        lease: Duration::from_secs(60),
        per_webhook_cap: 2,
        now,
    };
    // One delivery of `busy` is already held elsewhere: it may take one more.
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();
    let held = store.claim(&request(1, at(1))).await.unwrap();
    assert_eq!(held.len(), 1);
    let other_first = held[0].webhook.id;

    let events = [
        event("tag_created", None, None),
        event("tag_created", None, None),
    ];
    let (receipts, claimed) = store
        .ingest_then_claim(&events, at(2), &request(10, at(2)))
        .await;
    let receipts = receipts.unwrap();
    assert_eq!(receipts.len(), 2);
    assert!(receipts.iter().all(|r| r.deliveries == 2));
    let claimed = claimed.unwrap();
    // Five deliveries are due (the first event's other one and four new ones); the cap of two
    // per webhook, counting the one held, leaves room for three.
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    let per_webhook = |id| claimed.iter().filter(|d| d.webhook.id == id).count();
    assert_eq!(per_webhook(other_first), 1);
    assert_eq!(
        per_webhook(if other_first == busy.id {
            quiet.id
        } else {
            busy.id
        }),
        2
    );
    let mut new_ones = 0;
    for delivery in &claimed {
        assert_eq!(delivery.attempt, 1);
        let source = events.iter().find(|e| e.id == delivery.event_id);
        if let Some(source) = source {
            assert_eq!(&*delivery.payload, source.event.bytes());
            new_ones += 1;
        }
    }
    // Due order: the first event's waiting delivery, then two of the new ones.
    assert_eq!(new_ones, 2);
    // The leases are live: nothing more until one is given back, then exactly what is left.
    assert!(store.claim(&request(10, at(3))).await.unwrap().is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.pending + stats.delivering, 6);
    assert_eq!(stats.delivering, 4);

    // A limit smaller than what is due takes only that many.
    let third = [event("tag_created", None, None)];
    store
        .release(
            &claimed
                .iter()
                .map(|d| (d.delivery_id, d.lease))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let (receipts, claimed) = store
        .ingest_then_claim(&third, at(4), &request(1, at(4)))
        .await;
    assert_eq!(receipts.unwrap()[0].deliveries, 2);
    assert_eq!(claimed.unwrap().len(), 1);
}

/// A record that fails inside its transaction (the test hook `fail_record_before_commit` fires
/// after every write and before the commit; on the memory store, before any write) leaves
/// nothing behind: no attempt, no next state, no health, no disabling by a 410; every lease is
/// still held, so the same results go in once the fault is gone. Both ways of writing a batch
/// fail alike (results only, and one with a 410, which SQLite writes one at a time), and so does
/// the record part of `record_then_claim`.
pub async fn injected_record_failure_writes_nothing_and_keeps_every_lease<B: TestBackend>(
    backend: B,
) {
    let options = StoreOptions::default();
    let fault = options.fail_record_before_commit.clone();
    let store = backend.open(options).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let events: Vec<_> = (0..4).map(|_| event("tag_created", None, None)).collect();
    store.ingest(&events, T0).await.unwrap();
    let claimed = store.claim(&claim_at(at(1), 3)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let ids: Vec<DeliveryId> = claimed.iter().map(|c| c.delivery_id).collect();
    let details = |ids: Vec<DeliveryId>| {
        let store = &store;
        async move {
            let mut all = Vec::new();
            for id in ids {
                let detail = store.get_delivery(id).await.unwrap().unwrap();
                all.push((detail.delivery, detail.attempts));
            }
            all
        }
    };
    let before = details(ids.clone()).await;
    assert!(
        before
            .iter()
            .all(|(d, attempts)| d.status == DeliveryStatus::Delivering && attempts.is_empty())
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.delivering, stats.pending), (3, 1));

    let results = [
        success(&claimed[0], at(2)),
        failure(&claimed[1], at(2), NextState::RetryAt(at(100))),
        failure(&claimed[2], at(2), NextState::Failed),
    ];
    let mut gone = failure(&claimed[1], at(2), NextState::Failed);
    gone.attempt.status_code = Some(410);
    gone.disable_webhook = Some("the receiver answered 410 Gone".into());
    let with_gone = [success(&claimed[0], at(2)), gone];
    // While the three leases are live the webhook is at this cap: the claim takes nothing.
    let at_cap = ClaimRequest {
        per_webhook_cap: 3,
        ..claim_at(at(2), 10)
    };

    fault.store(true, Ordering::SeqCst);
    assert_injected(store.record(&results).await);
    assert_injected(store.record(&with_gone).await);
    let (recorded, claim) = store.record_then_claim(&results, &at_cap).await;
    assert_injected(recorded);
    assert!(
        claim.unwrap().is_empty(),
        "the three leases still count against the cap"
    );
    fault.store(false, Ordering::SeqCst);

    assert_eq!(details(ids.clone()).await, before, "nothing was written");
    assert_eq!(store.stats().await.unwrap(), stats);
    let stored = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(
        stored.enabled && stored.disabled_reason.is_none(),
        "the 410 did not disable the webhook"
    );
    assert_eq!(store.failing_since(hook.id).await.unwrap(), None);

    // Every lease is still held: the same results go in, each under its lease.
    assert_eq!(
        store.record(&results).await.unwrap(),
        [
            RecordOutcome::Recorded {
                failing_since: None
            },
            RecordOutcome::Recorded {
                failing_since: Some(at(2))
            },
            RecordOutcome::Recorded {
                failing_since: Some(at(2))
            },
        ]
    );
    let after = details(ids).await;
    let statuses: Vec<_> = after
        .iter()
        .map(|(d, attempts)| (d.status, d.attempt_count, attempts.len()))
        .collect();
    assert_eq!(
        statuses,
        [
            (DeliveryStatus::Succeeded, 1, 1),
            (DeliveryStatus::Pending, 1, 1),
            (DeliveryStatus::Failed, 1, 1),
        ]
    );
}
