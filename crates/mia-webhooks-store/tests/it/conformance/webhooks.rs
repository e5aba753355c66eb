//! Webhooks: create, read, patch, delete, list; secrets under a key.

use mia_webhooks_model::{
    DeliveryStatus, EventName, EventSet, Secret, TargetUrl, WebhookId, WebhookPatch,
};
use mia_webhooks_store::{
    NextState, RecordOutcome, SecretKeys, Store, StoreError, StoreOptions, WebhookQuery,
};

use super::{TestBackend, open};
use crate::support::*;

pub async fn create_then_get_returns_every_field<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let full = full_webhook();
    let plain = webhook("instance", &["tag_created"]);
    store.create_webhook(&full).await.unwrap();
    store.create_webhook(&plain).await.unwrap();
    assert_same_webhook(&store.get_webhook(full.id).await.unwrap().unwrap(), &full);
    assert_same_webhook(&store.get_webhook(plain.id).await.unwrap().unwrap(), &plain);
}

pub async fn creating_a_duplicate_id_conflicts<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let first = webhook("instance", &["tag_created"]);
    store.create_webhook(&first).await.unwrap();
    let again = webhook("company/other", &["project_created"]);
    let again = mia_webhooks_model::Webhook {
        id: first.id,
        ..again
    };
    match store.create_webhook(&again).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_same_webhook(&store.get_webhook(first.id).await.unwrap().unwrap(), &first);
    // The failed create left no index rows behind: the first webhook alone receives.
    let receipts = store
        .ingest(&[event("project_created", Some("other"), Some("p"))], T0)
        .await
        .unwrap();
    assert_eq!(receipts[0].deliveries, 0);
}

pub async fn unknown_webhooks_are_none_or_false<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let id = WebhookId::new();
    assert!(store.get_webhook(id).await.unwrap().is_none());
    assert!(
        store
            .update_webhook(id, WebhookPatch::default(), at(1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.delete_webhook(id).await.unwrap());
    assert!(!store.disable_webhook(id, "gone", at(1)).await.unwrap());
    assert_eq!(store.failing_since(id).await.unwrap(), None);
    assert!(deliveries_of(&store, id).await.is_empty());
}

pub async fn update_replaces_only_given_fields_and_keeps_the_secret<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let original = full_webhook();
    store.create_webhook(&original).await.unwrap();

    let patch = WebhookPatch {
        target_url: Some(TargetUrl::new("https://elsewhere.example/new").unwrap()),
        proxy: Some(None),
        description: Some(Some("changed".into())),
        ..WebhookPatch::default()
    };
    let updated = store
        .update_webhook(original.id, patch, at(5))
        .await
        .unwrap()
        .unwrap();
    let mut expected = original.clone();
    expected.target_url = TargetUrl::new("https://elsewhere.example/new").unwrap();
    expected.proxy = None;
    expected.description = Some("changed".into());
    expected.updated_at = at(5);
    assert_same_webhook(&updated, &expected);
    assert_same_webhook(
        &store.get_webhook(original.id).await.unwrap().unwrap(),
        &expected,
    );

    let patch = WebhookPatch {
        secret: Some(Secret::new("a brand new secret").unwrap()),
        ..WebhookPatch::default()
    };
    let updated = store
        .update_webhook(original.id, patch, at(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.secret.expose(), b"a brand new secret");
    let stored = store.get_webhook(original.id).await.unwrap().unwrap();
    assert_eq!(stored.secret.expose(), b"a brand new secret");
    assert_eq!(stored.updated_at, at(6));
    assert_eq!(stored.created_at, original.created_at);
}

pub async fn update_of_events_rewrites_the_fanout_index<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("company/t1", &["alpha_happened"]);
    store.create_webhook(&hook).await.unwrap();
    let count = |name: &'static str| {
        let store = &store;
        async move {
            store
                .ingest(&[event(name, Some("t1"), None)], T0)
                .await
                .unwrap()[0]
                .deliveries
        }
    };
    assert_eq!(count("alpha_happened").await, 1);
    assert_eq!(count("beta_happened").await, 0);

    let events =
        EventSet::from_stored(["beta_happened".to_owned(), "gamma_happened".to_owned()]).unwrap();
    let patch = WebhookPatch {
        events: Some(events.clone()),
        ..WebhookPatch::default()
    };
    let updated = store
        .update_webhook(hook.id, patch, at(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.events, events);
    assert_eq!(count("alpha_happened").await, 0);
    assert_eq!(count("beta_happened").await, 1);
    assert_eq!(count("gamma_happened").await, 1);

    let listed = store
        .list_webhooks(&WebhookQuery {
            scope: scope("company/t1"),
            events: vec![EventName::new("alpha_happened").unwrap()],
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    assert!(
        listed.items.is_empty(),
        "the event filter follows the new subscriptions"
    );
}

pub async fn disabling_by_update_cancels_pending_deliveries<B: TestBackend>(backend: B) {
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
    // One delivery is in flight: it finishes its attempt; the other is cancelled.
    let claimed = store.claim(&claim_at(at(1), 1)).await.unwrap();
    assert_eq!(claimed.len(), 1);

    let off = WebhookPatch {
        enabled: Some(false),
        ..WebhookPatch::default()
    };
    let updated = store
        .update_webhook(hook.id, off, at(2))
        .await
        .unwrap()
        .unwrap();
    assert!(!updated.enabled);
    let deliveries = deliveries_of(&store, hook.id).await;
    let status_of = |id| deliveries.iter().find(|d| d.id == id).unwrap().status;
    assert_eq!(
        status_of(claimed[0].delivery_id),
        DeliveryStatus::Delivering
    );
    let other = deliveries
        .iter()
        .find(|d| d.id != claimed[0].delivery_id)
        .unwrap();
    assert_eq!(other.status, DeliveryStatus::Cancelled);
    assert_eq!(other.next_attempt_at, None);
    assert_eq!(other.updated_at, at(2));
    assert!(store.claim(&claim_at(at(3), 10)).await.unwrap().is_empty());
    let outcome = store.record(&[success(&claimed[0], at(3))]).await.unwrap();
    assert_eq!(
        outcome,
        [RecordOutcome::Recorded {
            failing_since: None
        }]
    );

    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], at(4))
            .await
            .unwrap()[0]
            .deliveries,
        0
    );
    let on = WebhookPatch {
        enabled: Some(true),
        ..WebhookPatch::default()
    };
    assert!(
        store
            .update_webhook(hook.id, on, at(5))
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], at(6))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
}

pub async fn delete_cascades_to_deliveries_and_attempts<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let doomed = webhook("instance", &["tag_created"]);
    let kept = webhook("instance", &["tag_created"]);
    store.create_webhook(&doomed).await.unwrap();
    store.create_webhook(&kept).await.unwrap();
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
    let (of_doomed, of_kept): (Vec<_>, Vec<_>) =
        claimed.iter().partition(|c| c.webhook.id == doomed.id);
    // One delivery of the doomed webhook has an attempt, one is still leased.
    let recorded = store
        .record(&[failure(
            of_doomed[0],
            at(1),
            mia_webhooks_store::NextState::RetryAt(at(9)),
        )])
        .await
        .unwrap();
    assert!(matches!(recorded[0], RecordOutcome::Recorded { .. }));

    assert!(store.delete_webhook(doomed.id).await.unwrap());
    assert!(store.get_webhook(doomed.id).await.unwrap().is_none());
    assert!(deliveries_of(&store, doomed.id).await.is_empty());
    for claimed in &of_doomed {
        assert!(
            store
                .get_delivery(claimed.delivery_id)
                .await
                .unwrap()
                .is_none()
        );
    }
    // The worker still holding a lease finds its record refused.
    assert_eq!(
        store.record(&[success(of_doomed[1], at(2))]).await.unwrap(),
        [RecordOutcome::LeaseLost]
    );
    assert!(
        store.claim(&claim_at(at(10), 10)).await.unwrap().is_empty(),
        "no retry of a deleted webhook"
    );
    // The other webhook is untouched, and the deleted one receives nothing more.
    assert_eq!(deliveries_of(&store, kept.id).await.len(), 2);
    assert!(matches!(
        store.record(&[success(of_kept[0], at(2))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], at(3))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
    assert!(!store.delete_webhook(doomed.id).await.unwrap());
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.delivering, stats.succeeded),
        (1, 1, 1)
    );
}

pub async fn list_webhooks_by_exact_scope_and_event_filter<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let a = webhook("company/t1", &["alpha_happened", "beta_happened"]);
    let b = webhook("company/t1", &["beta_happened"]);
    let c = webhook("company/t1", &["gamma_happened"]);
    let elsewhere = [
        webhook("instance", &["alpha_happened"]),
        webhook("company/t2", &["alpha_happened"]),
        webhook("company/t1/project/p1", &["alpha_happened"]),
    ];
    for hook in [&a, &b, &c].into_iter().chain(&elsewhere) {
        store.create_webhook(hook).await.unwrap();
    }
    let list = |events: &[&str]| {
        let store = &store;
        let events = events.iter().map(|e| EventName::new(*e).unwrap()).collect();
        async move {
            let page = store
                .list_webhooks(&WebhookQuery {
                    scope: scope("company/t1"),
                    events,
                    limit: 100,
                    after: None,
                })
                .await
                .unwrap();
            assert!(!page.has_more);
            page.items.iter().map(|w| w.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(&[]).await,
        [a.id, b.id, c.id],
        "oldest first, this scope only"
    );
    assert_eq!(list(&["alpha_happened"]).await, [a.id]);
    assert_eq!(
        list(&["beta_happened", "gamma_happened"]).await,
        [a.id, b.id, c.id]
    );
    assert_eq!(list(&["delta_happened"]).await, Vec::<WebhookId>::new());
    assert_eq!(webhook_ids_on(&store, "instance").await, [elsewhere[0].id]);
    assert_eq!(
        webhook_ids_on(&store, "company/t1/project/p1").await,
        [elsewhere[2].id]
    );
    assert!(webhook_ids_on(&store, "company/t3").await.is_empty());
    // Listed webhooks carry their secrets like any read.
    let page = store
        .list_webhooks(&WebhookQuery {
            scope: scope("company/t1"),
            events: vec![],
            limit: 1,
            after: None,
        })
        .await
        .unwrap();
    assert!(page.has_more);
    assert_same_webhook(&page.items[0], &a);
}

pub async fn list_webhooks_pages_are_stable_under_inserts<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let mut expected = Vec::new();
    for _ in 0..5 {
        let hook = webhook("company/t1", &["tag_created"]);
        store.create_webhook(&hook).await.unwrap();
        store
            .create_webhook(&webhook("company/t2", &["tag_created"]))
            .await
            .unwrap();
        expected.push(hook.id);
    }
    let page = |after| {
        let store = &store;
        async move {
            store
                .list_webhooks(&WebhookQuery {
                    scope: scope("company/t1"),
                    events: vec![],
                    limit: 2,
                    after,
                })
                .await
                .unwrap()
        }
    };
    let mut seen = Vec::new();
    let first = page(None).await;
    assert!(first.has_more);
    seen.extend(first.items.iter().map(|w| w.id));
    // Webhooks created between page fetches come later in the order: no skip, no duplicate.
    for _ in 0..3 {
        let hook = webhook("company/t1", &["tag_created"]);
        store.create_webhook(&hook).await.unwrap();
        expected.push(hook.id);
    }
    loop {
        let next = page(seen.last().copied()).await;
        assert!(next.items.len() <= 2);
        seen.extend(next.items.iter().map(|w| w.id));
        if !next.has_more {
            break;
        }
    }
    assert_eq!(seen, expected);
}

pub async fn secrets_round_trip_under_a_key<B: TestBackend>(backend: B) {
    let keys = SecretKeys::from_bytes([42; 32], &[]);
    let store = backend
        .open(StoreOptions {
            secret_keys: Some(keys),
            ..StoreOptions::default()
        })
        .await;
    let hook = full_webhook();
    store.create_webhook(&hook).await.unwrap();
    assert_same_webhook(&store.get_webhook(hook.id).await.unwrap().unwrap(), &hook);
    let patch = WebhookPatch {
        secret: Some(Secret::new("rotated by its owner").unwrap()),
        ..WebhookPatch::default()
    };
    store.update_webhook(hook.id, patch, at(1)).await.unwrap();
    store
        .ingest(&[event("tag_created", Some("acme"), Some("shop"))], at(2))
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(3), 1)).await.unwrap();
    assert_eq!(claimed[0].webhook.secret.expose(), b"rotated by its owner");
}

/// A delivery in flight when its webhook is disabled is not retried: its attempt is recorded
/// and, where the result asks for a retry, it ends cancelled instead (the disabling could not
/// cancel it while it was leased). A result that ends it anyway (success, failed) stands.
pub async fn a_retry_after_disabling_is_cancelled<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let three = [
        event("tag_created", None, None),
        event("tag_created", None, None),
        event("tag_created", None, None),
    ];
    store.ingest(&three, T0).await.unwrap();
    let claimed = store.claim(&claim_at(at(1), 3)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let off = WebhookPatch {
        enabled: Some(false),
        ..WebhookPatch::default()
    };
    store.update_webhook(hook.id, off, at(2)).await.unwrap();

    let outcomes = store
        .record(&[
            failure(&claimed[0], at(3), NextState::RetryAt(at(60))),
            failure(&claimed[1], at(3), NextState::Failed),
            success(&claimed[2], at(3)),
        ])
        .await
        .unwrap();
    assert!(
        matches!(
            outcomes[0],
            RecordOutcome::Cancelled {
                failing_since: Some(_)
            }
        ),
        "{outcomes:?}"
    );
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o, RecordOutcome::Recorded { .. })),
        "{outcomes:?}"
    );
    let deliveries = deliveries_of(&store, hook.id).await;
    let find = |id| deliveries.iter().find(|d| d.id == id).unwrap();
    let retried = find(claimed[0].delivery_id);
    assert_eq!(retried.status, DeliveryStatus::Cancelled);
    assert_eq!(retried.next_attempt_at, None);
    assert_eq!(retried.attempt_count, 1);
    assert_eq!(find(claimed[1].delivery_id).status, DeliveryStatus::Failed);
    assert_eq!(
        find(claimed[2].delivery_id).status,
        DeliveryStatus::Succeeded
    );
    let detail = store
        .get_delivery(claimed[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.attempts.len(), 1);
    // Nothing is sent to the disabled webhook later.
    assert!(
        store
            .claim(&claim_at(at(120), 10))
            .await
            .unwrap()
            .is_empty()
    );

    // Enabled again, a retry is a retry.
    let on = WebhookPatch {
        enabled: Some(true),
        ..WebhookPatch::default()
    };
    store.update_webhook(hook.id, on, at(130)).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], at(131))
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(132), 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let outcomes = store
        .record(&[failure(&claimed[0], at(133), NextState::RetryAt(at(200)))])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], RecordOutcome::Recorded { .. }),
        "{outcomes:?}"
    );
    let again = deliveries_of(&store, hook.id).await;
    let retry = again
        .iter()
        .find(|d| d.id == claimed[0].delivery_id)
        .unwrap();
    assert_eq!(retry.status, DeliveryStatus::Pending);
    assert_eq!(retry.next_attempt_at, Some(at(200)));
}

/// The same within one batch: a 410 Gone disables the webhook (the one-result-at-a-time path
/// of the SQL backends), and the retries of its other deliveries in the batch, before and after
/// the 410, end cancelled and say so.
pub async fn retries_in_a_batch_with_a_410_are_cancelled<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let three: Vec<_> = (0..3).map(|_| event("tag_created", None, None)).collect();
    store.ingest(&three, T0).await.unwrap();
    let claimed = store.claim(&claim_at(at(1), 3)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let mut gone = failure(&claimed[0], at(2), NextState::Failed);
    gone.attempt.status_code = Some(410);
    gone.disable_webhook = Some("the receiver answered 410 Gone".into());
    let outcomes = store
        .record(&[
            failure(&claimed[1], at(2), NextState::RetryAt(at(60))),
            gone,
            failure(&claimed[2], at(2), NextState::RetryAt(at(60))),
        ])
        .await
        .unwrap();
    let failing = Some(at(2));
    assert_eq!(
        outcomes,
        [
            RecordOutcome::Cancelled {
                failing_since: failing
            },
            RecordOutcome::Recorded {
                failing_since: failing
            },
            RecordOutcome::Cancelled {
                failing_since: failing
            },
        ]
    );
    let deliveries = deliveries_of(&store, hook.id).await;
    let status = |id| deliveries.iter().find(|d| d.id == id).unwrap().status;
    assert_eq!(status(claimed[0].delivery_id), DeliveryStatus::Failed);
    assert_eq!(status(claimed[1].delivery_id), DeliveryStatus::Cancelled);
    assert_eq!(status(claimed[2].delivery_id), DeliveryStatus::Cancelled);
    assert!(!store.get_webhook(hook.id).await.unwrap().unwrap().enabled);
    assert!(
        store
            .claim(&claim_at(at(120), 10))
            .await
            .unwrap()
            .is_empty()
    );
}
