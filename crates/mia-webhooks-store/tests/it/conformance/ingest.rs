//! Ingestion: scope matching, subscriptions, atomicity, test events.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use mia_webhooks_model::{DeliveryStatus, EventId, WebhookId};
use mia_webhooks_store::{Store, StoreError, StoreOptions, StoreStats};

use super::{TestBackend, open};
use crate::support::*;

pub async fn ingest_matches_the_scope_matrix<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let scopes = [
        "instance",
        "company/t1",
        "company/t2",
        "company/t1/project/p1",
        "company/t1/project/p2",
        "company/t2/project/p1",
    ];
    let hooks: Vec<_> = scopes
        .iter()
        .map(|s| webhook(s, &["thing_happened"]))
        .collect();
    for hook in &hooks {
        store.create_webhook(hook).await.unwrap();
    }
    // (tenant, project) of the event, and the scopes that receive it (SPEC §3).
    type Case = (
        (Option<&'static str>, Option<&'static str>),
        &'static [&'static str],
    );
    let matrix: [Case; 7] = [
        ((None, None), &["instance"]),
        ((Some("t1"), None), &["instance", "company/t1"]),
        (
            (Some("t1"), Some("p1")),
            &["instance", "company/t1", "company/t1/project/p1"],
        ),
        (
            (Some("t1"), Some("p2")),
            &["instance", "company/t1", "company/t1/project/p2"],
        ),
        (
            (Some("t2"), Some("p1")),
            &["instance", "company/t2", "company/t2/project/p1"],
        ),
        ((None, Some("p1")), &["instance"]),
        ((Some("t3"), Some("p1")), &["instance"]),
    ];
    let mut expected: Vec<BTreeSet<EventId>> = vec![BTreeSet::new(); hooks.len()];
    for ((tenant, project), receivers) in matrix {
        let event = event("thing_happened", tenant, project);
        let receipts = store
            .ingest(std::slice::from_ref(&event), T0)
            .await
            .unwrap();
        assert_eq!(receipts[0].event_id, event.id);
        assert_eq!(
            receipts[0].deliveries,
            receivers.len(),
            "event of {tenant:?}/{project:?}"
        );
        for (i, hook) in hooks.iter().enumerate() {
            if receivers.contains(&scopes[i]) {
                assert!(
                    hook.scope.receives(event.event.routing()),
                    "the model agrees on {}",
                    scopes[i]
                );
                expected[i].insert(event.id);
            }
        }
    }
    for (i, hook) in hooks.iter().enumerate() {
        let got: BTreeSet<EventId> = deliveries_of(&store, hook.id)
            .await
            .iter()
            .map(|d| d.event_id)
            .collect();
        assert_eq!(
            got, expected[i],
            "deliveries of the webhook on {}",
            scopes[i]
        );
    }
}

pub async fn ingest_matches_only_subscribed_names<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let both = webhook("instance", &["alpha_happened", "beta_happened"]);
    let alpha = webhook("company/t1", &["alpha_happened"]);
    let beta = webhook("company/t1/project/p1", &["beta_happened"]);
    for hook in [&both, &alpha, &beta] {
        store.create_webhook(hook).await.unwrap();
    }
    let receipts = store
        .ingest(
            &[
                event("alpha_happened", Some("t1"), Some("p1")),
                event("beta_happened", Some("t1"), Some("p1")),
                event("gamma_happened", Some("t1"), Some("p1")),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.deliveries).collect::<Vec<_>>(),
        [2, 2, 0]
    );
    assert_eq!(deliveries_of(&store, both.id).await.len(), 2);
    let alpha_names: Vec<_> = deliveries_of(&store, alpha.id)
        .await
        .iter()
        .map(|d| d.event_name.to_string())
        .collect();
    assert_eq!(alpha_names, ["alpha_happened"]);
    let beta_names: Vec<_> = deliveries_of(&store, beta.id)
        .await
        .iter()
        .map(|d| d.event_name.to_string())
        .collect();
    assert_eq!(beta_names, ["beta_happened"]);
}

pub async fn disabled_webhooks_get_no_deliveries<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let off = mia_webhooks_model::Webhook {
        enabled: false,
        disabled_reason: Some("turned off".into()),
        ..webhook("instance", &["tag_created"])
    };
    let on = webhook("instance", &["tag_created"]);
    store.create_webhook(&off).await.unwrap();
    store.create_webhook(&on).await.unwrap();
    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], T0)
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
    assert!(deliveries_of(&store, off.id).await.is_empty());
    assert!(
        store
            .disable_webhook(on.id, "by hand", at(1))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], at(2))
            .await
            .unwrap()[0]
            .deliveries,
        0
    );
}

pub async fn ingest_batch_returns_receipts_in_order_and_keeps_exact_bytes<B: TestBackend>(
    backend: B,
) {
    let store = open(&backend).await;
    assert!(store.ingest(&[], T0).await.unwrap().is_empty());
    let hook = webhook("company/t1", &["alpha_happened", "beta_happened"]);
    store.create_webhook(&hook).await.unwrap();
    let events = [
        event("alpha_happened", Some("t1"), None),
        event("beta_happened", Some("t2"), None),
        event("beta_happened", Some("t1"), Some("p9")),
    ];
    let receipts = store.ingest(&events, at(7)).await.unwrap();
    assert_eq!(receipts.len(), 3);
    for (receipt, event) in receipts.iter().zip(&events) {
        assert_eq!(receipt.event_id, event.id);
    }
    assert_eq!(
        receipts.iter().map(|r| r.deliveries).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    let deliveries = deliveries_of(&store, hook.id).await;
    assert_eq!(deliveries.len(), 2);
    for delivery in &deliveries {
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempt_count, 0);
        assert_eq!(delivery.next_attempt_at, Some(at(7)));
        assert_eq!((delivery.created_at, delivery.updated_at), (at(7), at(7)));
        assert!(delivery.last_attempt.is_none());
        let event = events.iter().find(|e| e.id == delivery.event_id).unwrap();
        assert_eq!(&delivery.event_name, event.event.name());
        let detail = store.get_delivery(delivery.id).await.unwrap().unwrap();
        assert_eq!(
            detail.payload,
            event.event.bytes(),
            "the exact envelope bytes"
        );
    }
}

fn assert_empty(stats: StoreStats) {
    assert_eq!(
        stats,
        StoreStats::default(),
        "nothing of a failed ingestion is left"
    );
}

pub async fn injected_failure_leaves_neither_event_nor_deliveries<B: TestBackend>(backend: B) {
    let options = StoreOptions::default();
    let fault = options.fail_ingest_before_commit.clone();
    let store = backend.open(options).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let single = event("tag_created", None, None);
    let batch = [
        event("tag_created", None, None),
        event("tag_created", None, None),
    ];
    let test_event = event("webhook_tested", None, None);
    let leased = event("tag_created", None, None);

    fault.store(true, Ordering::SeqCst);
    assert_injected(store.ingest(std::slice::from_ref(&single), T0).await);
    assert_injected(store.ingest(&batch, T0).await);
    assert_injected(store.ingest_for_webhook(&test_event, hook.id, T0).await);
    let (receipts, claimed) = store
        .ingest_then_claim(std::slice::from_ref(&leased), T0, &claim_at(T0, 10))
        .await;
    assert_injected(receipts);
    assert!(claimed.unwrap_or_default().is_empty());
    fault.store(false, Ordering::SeqCst);

    assert_empty(store.stats().await.unwrap());
    assert!(deliveries_of(&store, hook.id).await.is_empty());
    assert!(store.claim(&claim_at(at(1), 100)).await.unwrap().is_empty());
    // The events were not written either: the same ids go in now without a conflict.
    assert_eq!(
        store
            .ingest(std::slice::from_ref(&single), at(2))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
    assert_eq!(store.ingest(&batch, at(2)).await.unwrap().len(), 2);
    assert!(
        store
            .ingest_for_webhook(&test_event, hook.id, at(2))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.ingest(&[leased], at(2)).await.unwrap()[0].deliveries,
        1
    );
    assert_eq!(deliveries_of(&store, hook.id).await.len(), 5);
}

pub async fn duplicate_event_id_fails_the_whole_batch<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let first = event("tag_created", None, None);
    store
        .ingest(std::slice::from_ref(&first), T0)
        .await
        .unwrap();
    let fresh = event("tag_created", None, None);
    match store.ingest(&[fresh.clone(), first.clone()], at(1)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    match store.ingest_for_webhook(&first, hook.id, at(1)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        deliveries_of(&store, hook.id).await.len(),
        1,
        "the batch was written whole or not at all"
    );
    assert_eq!(
        store
            .ingest(std::slice::from_ref(&fresh), at(2))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
}

pub async fn ingest_for_webhook_queues_one_delivery_even_when_disabled<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = mia_webhooks_model::Webhook {
        enabled: false,
        ..webhook("company/t1", &["alpha_happened"])
    };
    let bystander = webhook("instance", &["webhook_tested"]);
    store.create_webhook(&hook).await.unwrap();
    store.create_webhook(&bystander).await.unwrap();

    let test_event = event("webhook_tested", None, None);
    let receipt = store
        .ingest_for_webhook(&test_event, hook.id, at(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((receipt.event_id, receipt.deliveries), (test_event.id, 1));
    let deliveries = deliveries_of(&store, hook.id).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event_name.as_str(), "webhook_tested");
    assert!(
        deliveries_of(&store, bystander.id).await.is_empty(),
        "only the named webhook gets it"
    );
    let claimed = store.claim(&claim_at(at(3), 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload.as_ref(), test_event.event.bytes());

    let unknown = event("webhook_tested", None, None);
    assert!(
        store
            .ingest_for_webhook(&unknown, WebhookId::new(), at(4))
            .await
            .unwrap()
            .is_none()
    );
    // Nothing was written for the unknown webhook: its event id is still free.
    assert_eq!(
        store.ingest(&[unknown], at(5)).await.unwrap()[0].deliveries,
        1
    );
}
