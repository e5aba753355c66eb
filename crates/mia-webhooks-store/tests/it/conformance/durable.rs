//! What only a durable backend can show: data and leases outlive the store, and secrets sealed
//! under one key set are read back under another.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mia_webhooks_model::{DeliveryStatus, Role, Secret, TokenId, WebhookPatch};
use mia_webhooks_store::{
    ApiToken, ClaimRequest, NextState, RecordOutcome, SecretKeys, Store, StoreError, StoreOptions,
    TokenHash, UNREADABLE_SECRET_BACKOFF,
};

use super::{TestBackend, open};
use crate::support::*;

const KEY_A: [u8; 32] = [0xA1; 32];
const KEY_B: [u8; 32] = [0xB2; 32];

fn keyed(current: [u8; 32], old: &[[u8; 32]]) -> StoreOptions {
    StoreOptions {
        secret_keys: Some(SecretKeys::from_bytes(current, old)),
        ..StoreOptions::default()
    }
}

pub async fn reopening_keeps_all_data<B: TestBackend>(backend: B) {
    let hook = full_webhook();
    let event = event("project_created", Some("acme"), Some("shop"));
    let token = ApiToken {
        id: TokenId::new(),
        hash: TokenHash::of("mwh_reopen"),
        role: Role::Emitter,
        label: "emitter".into(),
        created_at: T0,
    };
    let (delivery, stats) = {
        let store = open(&backend).await;
        store.create_webhook(&hook).await.unwrap();
        store.create_token(&token).await.unwrap();
        store
            .ingest(std::slice::from_ref(&event), T0)
            .await
            .unwrap();
        let claimed = store.claim(&claim_at(at(1), 1)).await.unwrap().remove(0);
        store
            .record(&[failure(&claimed, at(2), NextState::RetryAt(at(10)))])
            .await
            .unwrap();
        (
            store
                .get_delivery(claimed.delivery_id)
                .await
                .unwrap()
                .unwrap(),
            store.stats().await.unwrap(),
        )
    };

    let store = open(&backend).await;
    assert_same_webhook(&store.get_webhook(hook.id).await.unwrap().unwrap(), &hook);
    assert_eq!(store.find_token(&token.hash).await.unwrap(), Some(token));
    let again = store
        .get_delivery(delivery.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery, delivery.delivery);
    assert_eq!(again.attempts, delivery.attempts);
    assert_eq!(again.payload, event.event.bytes());
    assert_eq!(store.stats().await.unwrap(), stats);
    assert_eq!(store.failing_since(hook.id).await.unwrap(), Some(at(2)));
    let retried = store.claim(&claim_at(at(10), 10)).await.unwrap();
    assert_eq!((retried.len(), retried[0].attempt), (1, 2));
}

pub async fn a_dropped_store_loses_no_claimed_delivery<B: TestBackend>(backend: B) {
    let hook = webhook("instance", &["tag_created"]);
    let lease = |now| ClaimRequest {
        limit: 10,
        lease: Duration::from_secs(30),
        per_webhook_cap: 8,
        now,
    };
    let lost = {
        let store = open(&backend).await;
        store.create_webhook(&hook).await.unwrap();
        store
            .ingest(&[event("tag_created", None, None)], T0)
            .await
            .unwrap();
        let claimed = store.claim(&lease(at(1))).await.unwrap();
        assert_eq!(claimed.len(), 1);
        // The worker dies here: the store is dropped without a record or a release.
        claimed.into_iter().next().unwrap()
    };

    let store = open(&backend).await;
    assert!(
        store.claim(&lease(at(10))).await.unwrap().is_empty(),
        "the lease outlived the process"
    );
    let again = store.claim(&lease(at(31))).await.unwrap();
    assert_eq!(again.len(), 1, "the expired lease gave the delivery back");
    assert_eq!(again[0].delivery_id, lost.delivery_id);
    assert_ne!(again[0].lease, lost.lease);
    assert_eq!(again[0].attempt, 1);
    assert_eq!(
        store.record(&[success(&lost, at(32))]).await.unwrap(),
        [RecordOutcome::LeaseLost]
    );
    assert!(matches!(
        store.record(&[success(&again[0], at(32))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
}

pub async fn secrets_open_after_key_rotation<B: TestBackend>(backend: B) {
    let sealed_under_a = full_webhook();
    backend
        .open(keyed(KEY_A, &[]))
        .await
        .create_webhook(&sealed_under_a)
        .await
        .unwrap();

    // Rotation: B is current, A still opens what it sealed; new writes use B.
    let sealed_under_b = webhook("instance", &["tag_created"]);
    {
        let rotated = backend.open(keyed(KEY_B, &[KEY_A])).await;
        assert_same_webhook(
            &rotated
                .get_webhook(sealed_under_a.id)
                .await
                .unwrap()
                .unwrap(),
            &sealed_under_a,
        );
        rotated.create_webhook(&sealed_under_b).await.unwrap();
        // An update re-seals the secret with the current key.
        let patch = WebhookPatch {
            description: Some(Some("re-sealed".into())),
            ..WebhookPatch::default()
        };
        rotated
            .update_webhook(sealed_under_a.id, patch, at(1))
            .await
            .unwrap()
            .unwrap();
    }

    let only_b = backend.open(keyed(KEY_B, &[])).await;
    let reread = only_b
        .get_webhook(sealed_under_a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.secret.expose(), sealed_under_a.secret.expose());
    assert_eq!(reread.description.as_deref(), Some("re-sealed"));
    assert_same_webhook(
        &only_b
            .get_webhook(sealed_under_b.id)
            .await
            .unwrap()
            .unwrap(),
        &sealed_under_b,
    );
}

fn assert_secret_key_error<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    key_id: &str,
    secret: &Secret,
) {
    match result {
        Err(StoreError::SecretKey(message)) => {
            assert!(
                message.contains(key_id),
                "{message:?} names the key id {key_id}"
            );
            let secret = std::str::from_utf8(secret.expose()).unwrap();
            assert!(!message.contains(secret), "{message:?} shows the secret");
        }
        other => panic!("expected a secret key error, got {other:?}"),
    }
}

pub async fn wrong_or_missing_key_is_a_secret_key_error<B: TestBackend>(backend: B) {
    let hook = webhook("instance", &["tag_created"]);
    let key_a = SecretKeys::from_bytes(KEY_A, &[]);
    let id_a = key_a.current_key_id().to_owned();
    {
        let store = backend.open(keyed(KEY_A, &[])).await;
        store.create_webhook(&hook).await.unwrap();
        store
            .ingest(&[event("tag_created", None, None)], T0)
            .await
            .unwrap();
    }

    let wrong = backend.open(keyed(KEY_B, &[])).await;
    assert_secret_key_error(wrong.get_webhook(hook.id).await, &id_a, &hook.secret);
    // A claim leaves out the delivery it cannot open and sets it aside, pending, not leased.
    assert!(wrong.claim(&claim_at(at(1), 10)).await.unwrap().is_empty());
    let stats = wrong.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivering), (1, 0));
    drop(wrong);

    let missing = open(&backend).await;
    assert_secret_key_error(missing.get_webhook(hook.id).await, &id_a, &hook.secret);
    drop(missing);

    // With the right key the delivery is there to take once the backoff is over.
    let right = backend.open(keyed(KEY_A, &[])).await;
    assert_same_webhook(&right.get_webhook(hook.id).await.unwrap().unwrap(), &hook);
    let backoff = UNREADABLE_SECRET_BACKOFF.as_secs();
    assert!(
        right
            .claim(&claim_at(at(backoff), 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        right
            .claim(&claim_at(at(1 + backoff), 10))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A webhook whose secret this process cannot open (sealed by another process under another
/// key) holds up its own deliveries only: the claim takes every other due delivery, even those
/// due after it, and sets the unreadable one aside for a process that can open it.
pub async fn an_unreadable_secret_holds_up_only_its_own_webhook<B: TestBackend>(backend: B) {
    let known = webhook("instance", &["tag_created"]);
    let sealed_elsewhere = webhook("instance", &["tag_deleted"]);
    let store = backend.open(keyed(KEY_A, &[])).await;
    store.create_webhook(&known).await.unwrap();
    let other = backend.open(keyed(KEY_B, &[])).await;
    other.create_webhook(&sealed_elsewhere).await.unwrap();
    // A backlog of three, due before anything else, and more than one claim's cap.
    let backlog: Vec<_> = (0..3).map(|_| event("tag_deleted", None, None)).collect();
    other.ingest(&backlog, T0).await.unwrap();
    store
        .ingest(
            &[
                event("tag_created", None, None),
                event("tag_created", None, None),
            ],
            at(1),
        )
        .await
        .unwrap();

    let capped = |now| ClaimRequest {
        per_webhook_cap: 2,
        ..claim_at(now, 10)
    };
    let claimed = store.claim(&capped(at(2))).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.webhook.id == known.id));
    // The whole backlog is set aside, not only what the claim leased: the next claim does not
    // run into it again.
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivering), (3, 2));
    assert!(store.claim(&capped(at(3))).await.unwrap().is_empty());
    let aside = deliveries_of(&store, sealed_elsewhere.id).await;
    let backoff = UNREADABLE_SECRET_BACKOFF.as_secs();
    assert!(
        aside
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending
                && d.next_attempt_at == Some(at(2 + backoff)))
    );
    // Set aside for the backoff, then there for the process that can open it.
    assert!(other.claim(&claim_at(at(3), 10)).await.unwrap().is_empty());
    let taken = other.claim(&claim_at(at(2 + backoff), 10)).await.unwrap();
    assert_eq!(taken.len(), 3);
    assert!(taken.iter().all(|c| c.webhook.id == sealed_elsewhere.id));
    assert_eq!(
        taken[0].webhook.secret.expose(),
        sealed_elsewhere.secret.expose()
    );
}

pub async fn plain_secrets_stay_readable_once_a_key_is_set<B: TestBackend>(backend: B) {
    let hook = webhook("instance", &["tag_created"]);
    open(&backend).await.create_webhook(&hook).await.unwrap();
    {
        let keyed_store = backend.open(keyed(KEY_A, &[])).await;
        assert_same_webhook(
            &keyed_store.get_webhook(hook.id).await.unwrap().unwrap(),
            &hook,
        );
        let patch = WebhookPatch {
            enabled: Some(true),
            ..WebhookPatch::default()
        };
        keyed_store
            .update_webhook(hook.id, patch, at(1))
            .await
            .unwrap();
    }
    // The update sealed it: without the key it no longer opens.
    let id_a = SecretKeys::from_bytes(KEY_A, &[])
        .current_key_id()
        .to_owned();
    assert_secret_key_error(
        open(&backend).await.get_webhook(hook.id).await,
        &id_a,
        &hook.secret,
    );
}

/// A claim that fails (here: an injected fault) does not take the results of its round down
/// with it: `record_then_claim` still records them, and the claim's error is reported on its own.
pub async fn a_failed_claim_keeps_the_results_of_its_round<B: TestBackend>(backend: B) {
    let hook = webhook("instance", &["tag_created"]);
    let options = StoreOptions::default();
    let fault = options.fail_claim_before_commit.clone();
    let store = backend.open(options).await;
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .ingest(&[event("tag_created", None, None)], at(1))
        .await
        .unwrap();

    fault.store(true, Ordering::SeqCst);
    let (recorded, claim) = store
        .record_then_claim(&[success(&claimed[0], at(2))], &claim_at(at(2), 10))
        .await;
    fault.store(false, Ordering::SeqCst);
    assert_injected(claim);
    assert_eq!(
        recorded.unwrap(),
        [RecordOutcome::Recorded {
            failing_since: None
        }]
    );
    let detail = store
        .get_delivery(claimed[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(detail.attempts.len(), 1);
    // The failed claim leased nothing: the second delivery is there to take.
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivering), (1, 0));
    assert_eq!(store.claim(&claim_at(at(3), 10)).await.unwrap().len(), 1);
}

/// A claim that fails inside `ingest_then_claim` (here: an injected fault) does not lose the
/// events: they are written with their deliveries, and the claim's error is reported on its own.
pub async fn a_failed_claim_keeps_the_events_it_came_with<B: TestBackend>(backend: B) {
    let hook = webhook("instance", &["tag_created"]);
    let options = StoreOptions::default();
    let fault = options.fail_claim_before_commit.clone();
    let store = backend.open(options).await;
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();

    let new = event("tag_created", None, None);
    fault.store(true, Ordering::SeqCst);
    let (receipts, claim) = store
        .ingest_then_claim(std::slice::from_ref(&new), at(1), &claim_at(at(1), 10))
        .await;
    fault.store(false, Ordering::SeqCst);
    assert_injected(claim);
    let receipts = receipts.unwrap();
    assert_eq!(receipts[0].event_id, new.id);
    assert_eq!(receipts[0].deliveries, 1);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.pending, 2, "both deliveries are stored and due");
    assert_eq!(stats.delivering, 0, "the failed claim leased nothing");
    // The event's delivery is there for the next claim.
    let deliveries = deliveries_of(&store, hook.id).await;
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().any(|d| d.event_id == new.id));
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending)
    );
    assert_eq!(store.claim(&claim_at(at(2), 10)).await.unwrap().len(), 2);
}
