//! The delivery log, redelivery, webhook health, retention, tokens, counts.

use std::collections::HashSet;
use std::time::Duration;

use mia_webhooks_model::{DeliveryId, DeliveryStatus, Role, Timestamp, TokenId, WebhookPatch};
use mia_webhooks_store::{
    ApiToken, DeliveryQuery, NextState, PurgeReport, RecordOutcome, Store, StoreError, TokenHash,
};

use super::{TestBackend, open};
use crate::support::*;

pub async fn list_deliveries_filters_by_status_newest_first<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    for i in 0..5 {
        store
            .ingest(&[event("tag_created", None, None)], at(i))
            .await
            .unwrap();
    }
    let claimed = store.claim(&claim_at(at(10), 2)).await.unwrap();
    let results: Vec<_> = claimed.iter().map(|c| success(c, at(11))).collect();
    store.record(&results).await.unwrap();

    let all = deliveries_of(&store, hook.id).await;
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    let with = |status| {
        let store = &store;
        async move {
            let page = store
                .list_deliveries(&DeliveryQuery {
                    webhook: hook.id,
                    status: Some(status),
                    limit: 100,
                    before: None,
                })
                .await
                .unwrap();
            assert!(page.items.iter().all(|d| d.status == status));
            page.items.len()
        }
    };
    assert_eq!(with(DeliveryStatus::Succeeded).await, 2);
    assert_eq!(with(DeliveryStatus::Pending).await, 3);
    assert_eq!(with(DeliveryStatus::Failed).await, 0);
    let succeeded: HashSet<DeliveryId> = claimed.iter().map(|c| c.delivery_id).collect();
    for delivery in &all {
        if succeeded.contains(&delivery.id) {
            let last = delivery
                .last_attempt
                .as_ref()
                .expect("the latest attempt is listed");
            assert_eq!(
                (last.number, last.status_code, last.started_at),
                (1, Some(200), at(11))
            );
        }
    }
}

pub async fn list_deliveries_pages_are_stable_under_inserts<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    for i in 0..5 {
        store
            .ingest(&[event("tag_created", None, None)], at(i))
            .await
            .unwrap();
    }
    let before_inserts = deliveries_of(&store, hook.id).await;
    let page = |before| {
        let store = &store;
        async move {
            store
                .list_deliveries(&DeliveryQuery {
                    webhook: hook.id,
                    status: None,
                    limit: 2,
                    before,
                })
                .await
                .unwrap()
        }
    };
    let first = page(None).await;
    assert!(first.has_more);
    let mut seen: Vec<DeliveryId> = first.items.iter().map(|d| d.id).collect();
    // New deliveries are newer than the cursor: later pages neither repeat nor skip anything.
    store
        .ingest(
            &[
                event("tag_created", None, None),
                event("tag_created", None, None),
            ],
            at(20),
        )
        .await
        .unwrap();
    loop {
        let next = page(seen.last().copied()).await;
        seen.extend(next.items.iter().map(|d| d.id));
        if !next.has_more {
            break;
        }
    }
    assert_eq!(
        seen,
        before_inserts.iter().map(|d| d.id).collect::<Vec<_>>()
    );
    assert_eq!(deliveries_of(&store, hook.id).await.len(), 7);
}

pub async fn get_delivery_has_attempts_oldest_first_and_the_payload<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let event = event("tag_created", Some("t1"), None);
    store
        .ingest(std::slice::from_ref(&event), T0)
        .await
        .unwrap();
    let first = store.claim(&claim_at(at(1), 1)).await.unwrap().remove(0);
    store
        .record(&[failure(&first, at(1), NextState::RetryAt(at(5)))])
        .await
        .unwrap();
    let second = store.claim(&claim_at(at(5), 1)).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    store.record(&[success(&second, at(6))]).await.unwrap();

    let detail = store
        .get_delivery(first.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.payload, event.event.bytes());
    assert_eq!(detail.delivery.event_name.as_str(), "tag_created");
    assert_eq!(detail.delivery.webhook_id, hook.id);
    assert_eq!(
        (detail.delivery.status, detail.delivery.attempt_count),
        (DeliveryStatus::Succeeded, 2)
    );
    assert_eq!(
        detail.attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2]
    );
    let failed = &detail.attempts[0];
    assert_eq!(
        (failed.started_at, failed.duration_ms, failed.status_code),
        (at(1), 42, Some(500))
    );
    assert_eq!(
        failed.failure,
        Some(mia_webhooks_model::FailureKind::HttpStatus)
    );
    assert_eq!(failed.error.as_deref(), Some("the receiver answered 500"));
    assert_eq!(failed.response_excerpt.as_deref(), Some("body of a 500"));
    assert!(detail.attempts[1].succeeded());
    assert_eq!(
        detail.delivery.last_attempt.as_ref(),
        Some(&detail.attempts[1])
    );
    assert!(
        store
            .get_delivery(DeliveryId::new())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn redeliver_queues_a_new_pending_delivery<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let event = event("tag_created", None, None);
    store
        .ingest(std::slice::from_ref(&event), T0)
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 1)).await.unwrap().remove(0);
    store.record(&[success(&claimed, at(2))]).await.unwrap();

    let again = store
        .redeliver(claimed.delivery_id, at(5))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(again.id, claimed.delivery_id);
    assert_eq!((again.event_id, again.webhook_id), (event.id, hook.id));
    assert_eq!(again.event_name.as_str(), "tag_created");
    assert_eq!(
        (again.status, again.attempt_count),
        (DeliveryStatus::Pending, 0)
    );
    assert_eq!(
        (again.next_attempt_at, again.created_at, again.updated_at),
        (Some(at(5)), at(5), at(5))
    );
    assert!(again.last_attempt.is_none());
    let listed = deliveries_of(&store, hook.id).await;
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        [again.id, claimed.delivery_id]
    );
    assert_eq!(
        store
            .get_delivery(claimed.delivery_id)
            .await
            .unwrap()
            .unwrap()
            .delivery
            .status,
        DeliveryStatus::Succeeded
    );

    let claimed_again = store.claim(&claim_at(at(5), 10)).await.unwrap();
    assert_eq!(claimed_again.len(), 1);
    assert_eq!(
        (claimed_again[0].delivery_id, claimed_again[0].attempt),
        (again.id, 1)
    );
    assert_eq!(claimed_again[0].payload.as_ref(), event.event.bytes());
    assert!(
        store
            .redeliver(DeliveryId::new(), at(6))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn failing_since_tracks_continuous_failure<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    let other = webhook("company/t9", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store.create_webhook(&other).await.unwrap();
    let events: Vec<_> = (0..5).map(|_| event("tag_created", None, None)).collect();
    store.ingest(&events, T0).await.unwrap();
    assert_eq!(
        store.failing_since(hook.id).await.unwrap(),
        None,
        "no attempt yet"
    );
    let c = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(c.len(), 5);

    // One batch, applied in order: fail, fail, succeed, fail.
    let outcomes = store
        .record(&[
            failure(&c[0], at(1), NextState::RetryAt(at(100))),
            failure(&c[1], at(2), NextState::Failed),
            success(&c[2], at(3)),
            failure(&c[3], at(4), NextState::RetryAt(at(100))),
        ])
        .await
        .unwrap();
    let since = |o: &RecordOutcome| match o {
        RecordOutcome::Recorded { failing_since } => *failing_since,
        other => panic!("not recorded as asked: {other:?}"),
    };
    assert_eq!(
        outcomes.iter().map(since).collect::<Vec<_>>(),
        [Some(at(1)), Some(at(1)), None, Some(at(4))]
    );
    assert_eq!(store.failing_since(hook.id).await.unwrap(), Some(at(4)));
    // A later failure keeps the start of the run; a success ends it.
    let outcome = store
        .record(&[failure(&c[4], at(9), NextState::RetryAt(at(100)))])
        .await
        .unwrap();
    assert_eq!(since(&outcome[0]), Some(at(4)));
    assert_eq!(store.failing_since(hook.id).await.unwrap(), Some(at(4)));
    assert_eq!(
        store.failing_since(other.id).await.unwrap(),
        None,
        "another webhook's health is its own"
    );
    let retry = store.claim(&claim_at(at(100), 1)).await.unwrap().remove(0);
    store.record(&[success(&retry, at(100))]).await.unwrap();
    assert_eq!(store.failing_since(hook.id).await.unwrap(), None);
}

pub async fn record_can_disable_the_webhook<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    let bystander = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store.create_webhook(&bystander).await.unwrap();
    let events: Vec<_> = (0..3).map(|_| event("tag_created", None, None)).collect();
    store.ingest(&events, T0).await.unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    let (of_hook, of_bystander): (Vec<_>, Vec<_>) =
        claimed.iter().partition(|c| c.webhook.id == hook.id);
    assert_eq!((of_hook.len(), of_bystander.len()), (3, 3));
    // Two of the webhook's deliveries and one of the bystander's wait, pending.
    let back = [of_hook[1], of_hook[2], of_bystander[2]].map(|c| (c.delivery_id, c.lease));
    store.release(&back).await.unwrap();

    let mut gone = failure(of_hook[0], at(2), NextState::Failed);
    gone.attempt.status_code = Some(410);
    gone.disable_webhook = Some("the receiver answered 410 Gone".into());
    let outcomes = store
        .record(&[
            success(of_bystander[0], at(2)),
            gone,
            failure(of_bystander[1], at(3), NextState::RetryAt(at(50))),
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
                failing_since: Some(at(3))
            },
        ]
    );

    let stored = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(
        stored.disabled_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    assert_eq!(stored.updated_at, at(2));
    let statuses: Vec<_> = deliveries_of(&store, hook.id)
        .await
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Cancelled)
            .count(),
        2
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Failed)
            .count(),
        1
    );
    assert!(
        store
            .get_webhook(bystander.id)
            .await
            .unwrap()
            .unwrap()
            .enabled,
        "only the named webhook"
    );
    assert_eq!(
        store.failing_since(bystander.id).await.unwrap(),
        Some(at(3))
    );
    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], at(4))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.cancelled,
            stats.failed,
            stats.succeeded,
            stats.pending,
            stats.disabled_webhooks
        ),
        (2, 1, 1, 3, 1)
    );
}

pub async fn disable_webhook_sets_the_reason_and_cancels_pending<B: TestBackend>(backend: B) {
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
    let in_flight = store.claim(&claim_at(at(1), 1)).await.unwrap().remove(0);

    assert!(
        store
            .disable_webhook(hook.id, "failing for 3 days", at(2))
            .await
            .unwrap()
    );
    let stored = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(
        stored.disabled_reason.as_deref(),
        Some("failing for 3 days")
    );
    let deliveries = deliveries_of(&store, hook.id).await;
    let pending_one = deliveries
        .iter()
        .find(|d| d.id != in_flight.delivery_id)
        .unwrap();
    assert_eq!(pending_one.status, DeliveryStatus::Cancelled);
    // The attempt under way still records.
    assert!(matches!(
        store.record(&[success(&in_flight, at(3))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));

    // Re-enabling is an edit; it clears the reason.
    let on = WebhookPatch {
        enabled: Some(true),
        ..WebhookPatch::default()
    };
    let enabled = store
        .update_webhook(hook.id, on, at(4))
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.enabled && enabled.disabled_reason.is_none());
    assert!(
        store
            .get_webhook(hook.id)
            .await
            .unwrap()
            .unwrap()
            .disabled_reason
            .is_none()
    );
    assert_eq!(
        store
            .ingest(&[event("tag_created", None, None)], at(5))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
}

/// An edit that may fix a failing webhook (new target, secret, CA or proxy; re-enabling it)
/// starts its failure clock over, so results of attempts made before the edit cannot disable it
/// at once; an edit of anything else keeps the clock.
pub async fn an_edit_that_may_fix_a_webhook_restarts_its_failure_clock<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    let events: Vec<_> = (0..2).map(|_| event("tag_created", None, None)).collect();
    store.ingest(&events, T0).await.unwrap();
    let c = store.claim(&claim_at(at(1), 10)).await.unwrap();
    store
        .record(&[failure(&c[0], at(2), NextState::RetryAt(at(100)))])
        .await
        .unwrap();
    assert_eq!(store.failing_since(hook.id).await.unwrap(), Some(at(2)));

    let describe = WebhookPatch {
        description: Some(Some("renamed".into())),
        ..WebhookPatch::default()
    };
    store
        .update_webhook(hook.id, describe, at(3))
        .await
        .unwrap();
    assert_eq!(
        store.failing_since(hook.id).await.unwrap(),
        Some(at(2)),
        "a new description fixes nothing"
    );

    let retarget = WebhookPatch {
        target_url: Some("https://fixed.example/hook".parse().unwrap()),
        ..WebhookPatch::default()
    };
    store
        .update_webhook(hook.id, retarget, at(4))
        .await
        .unwrap();
    assert_eq!(store.failing_since(hook.id).await.unwrap(), None);
    // An attempt made before the edit fails late: the clock starts at that attempt, not at the
    // first failure of the old target.
    let outcomes = store
        .record(&[failure(&c[1], at(5), NextState::RetryAt(at(100)))])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [RecordOutcome::Recorded {
            failing_since: Some(at(5))
        }]
    );
}

/// A webhook disabled already keeps its reason: a late automatic disabling does not replace
/// the owner's.
pub async fn disabling_a_disabled_webhook_keeps_its_reason<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    assert!(
        store
            .disable_webhook(hook.id, "by hand", at(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .disable_webhook(hook.id, "failing for 3 days", at(2))
            .await
            .unwrap()
    );
    let stored = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.disabled_reason.as_deref(), Some("by hand"));
    assert_eq!(stored.updated_at, at(1));
}

/// Retention takes every finished delivery last changed before the cutoff (succeeded, failed,
/// cancelled by a disabling, cancelled by a lease given back after one) with its attempts, and
/// the old events left without deliveries; unfinished deliveries (pending, leased, even under
/// an expired lease) stay with their attempts whatever their age.
pub async fn purge_removes_old_finished_deliveries_and_orphan_events<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let hook = webhook("instance", &["tag_created"]);
    // Disabled by hand, cancelling its retry.
    let disabled = webhook("instance", &["tag_deleted"]);
    // Disabled while a delivery of it is leased; the lease given back cancels the delivery.
    let released = webhook("instance", &["project_created"]);
    for webhook in [&hook, &disabled, &released] {
        store.create_webhook(webhook).await.unwrap();
    }
    let old_done = event("tag_created", None, None);
    let old_failed = event("tag_created", None, None);
    let old_retrying = event("tag_created", None, None);
    let old_leased = event("tag_created", None, None);
    let old_cancelled = event("tag_deleted", None, None);
    let old_released = event("project_created", None, None);
    let orphan = event("nobody_listens", None, None);
    store
        .ingest(
            &[
                old_done.clone(),
                old_failed.clone(),
                old_retrying.clone(),
                old_leased.clone(),
                old_cancelled.clone(),
                old_released.clone(),
                orphan,
            ],
            T0,
        )
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(claimed.len(), 6);
    let by_event = |id| claimed.iter().find(|c| c.event_id == id).unwrap();
    let delivery_of = |id| by_event(id).delivery_id;
    store
        .record(&[
            success(by_event(old_done.id), at(10)),
            failure(by_event(old_failed.id), at(10), NextState::Failed),
            failure(
                by_event(old_retrying.id),
                at(10),
                NextState::RetryAt(at(1000)),
            ),
            failure(by_event(old_leased.id), at(10), NextState::RetryAt(at(11))),
            failure(
                by_event(old_cancelled.id),
                at(10),
                NextState::RetryAt(at(1000)),
            ),
        ])
        .await
        .unwrap();
    assert!(
        store
            .disable_webhook(disabled.id, "by hand", at(10))
            .await
            .unwrap()
    );
    assert!(
        store
            .disable_webhook(released.id, "by hand", at(10))
            .await
            .unwrap()
    );
    let leased_back = by_event(old_released.id);
    store
        .release(&[(leased_back.delivery_id, leased_back.lease)])
        .await
        .unwrap();
    // Leased again (its second attempt), and the lease left to expire at 71 s.
    let mut leased = store.claim(&claim_at(at(11), 10)).await.unwrap();
    assert_eq!(leased.len(), 1);
    let leased = leased.remove(0);
    assert_eq!(leased.delivery_id, delivery_of(old_leased.id));
    let recent = event("tag_created", None, None);
    store
        .ingest(std::slice::from_ref(&recent), at(50))
        .await
        .unwrap();
    let recent_claim = store.claim(&claim_at(at(60), 10)).await.unwrap().remove(0);
    store
        .record(&[success(&recent_claim, at(60))])
        .await
        .unwrap();

    let status = |id| {
        let store = &store;
        async move {
            store
                .get_delivery(id)
                .await
                .unwrap()
                .map(|d| d.delivery.status)
        }
    };
    for (event, want) in [
        (&old_done, DeliveryStatus::Succeeded),
        (&old_failed, DeliveryStatus::Failed),
        (&old_retrying, DeliveryStatus::Pending),
        (&old_leased, DeliveryStatus::Delivering),
        (&old_cancelled, DeliveryStatus::Cancelled),
        (&old_released, DeliveryStatus::Cancelled),
    ] {
        assert_eq!(status(delivery_of(event.id)).await, Some(want));
    }

    // At 30 s: the succeeded, failed and cancelled deliveries of 10 s, with an attempt each,
    // and their events and the orphan; not the leased one (last claimed at 11 s) nor the
    // pending one. The lease given back was cancelled at the wall-clock time (release takes no
    // `now`), long after the test's clock: it stays, as does the success of 60 s.
    let report = store.purge(at(30)).await.unwrap();
    assert_eq!(
        report,
        PurgeReport {
            deliveries: 3,
            attempts: 3,
            events: 4
        }
    );
    for event in [&old_done, &old_failed, &old_cancelled] {
        let id = delivery_of(event.id);
        assert_eq!(status(id).await, None, "{id} is purged");
        assert!(store.redeliver(id, at(70)).await.unwrap().is_none());
    }
    assert_eq!(
        status(delivery_of(old_released.id)).await,
        Some(DeliveryStatus::Cancelled)
    );
    assert_eq!(
        status(recent_claim.delivery_id).await,
        Some(DeliveryStatus::Succeeded)
    );
    assert_eq!(store.purge(at(30)).await.unwrap(), PurgeReport::default());

    // A cutoff after everything: the rest of the finished deliveries go, the unfinished stay.
    let later = Timestamp::now().saturating_add(Duration::from_secs(86_400));
    assert_eq!(
        store.purge(later).await.unwrap(),
        PurgeReport {
            deliveries: 2,
            attempts: 1,
            events: 2
        }
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.pending,
            stats.delivering,
            stats.succeeded,
            stats.failed,
            stats.cancelled
        ),
        (1, 1, 0, 0, 0)
    );
    for (event, want) in [
        (&old_retrying, DeliveryStatus::Pending),
        (&old_leased, DeliveryStatus::Delivering),
    ] {
        let detail = store
            .get_delivery(delivery_of(event.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(detail.delivery.status, want);
        assert_eq!(
            detail.attempts.len(),
            1,
            "unfinished deliveries keep their attempts"
        );
        assert_eq!(detail.payload, event.event.bytes());
    }
    // The expired lease is still the delivery's: its holder records, nobody else took it.
    assert!(matches!(
        store.record(&[success(&leased, at(200))]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
    // The purged events' ids are free again: nothing of them is left.
    store.ingest(&[old_done], at(80)).await.unwrap();
}

fn token(role: Role, label: &str) -> (String, ApiToken) {
    let secret = format!("mwh_{}", TokenId::new());
    let token = ApiToken {
        id: TokenId::new(),
        hash: TokenHash::of(&secret),
        role,
        label: label.into(),
        created_at: at(1),
    };
    (secret, token)
}

pub async fn tokens_are_found_by_hash_with_their_role<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    assert_eq!(store.count_tokens().await.unwrap(), 0);
    let roles = [
        Role::InstanceAdmin,
        Role::new("company-admin", Some("acme"), None).unwrap(),
        Role::new("project-admin", Some("acme"), Some("shop")).unwrap(),
        Role::Emitter,
    ];
    let mut tokens = Vec::new();
    for (i, role) in roles.into_iter().enumerate() {
        let (secret, token) = token(role, &format!("token {i}"));
        store.create_token(&token).await.unwrap();
        tokens.push((secret, token));
    }
    assert_eq!(store.count_tokens().await.unwrap(), 4);
    for (secret, token) in &tokens {
        assert_eq!(
            store
                .find_token(&TokenHash::of(secret))
                .await
                .unwrap()
                .as_ref(),
            Some(token)
        );
    }
    assert!(
        store
            .find_token(&TokenHash::of("mwh_unknown"))
            .await
            .unwrap()
            .is_none()
    );
    let (_, mut duplicate) = token(Role::Emitter, "copy");
    duplicate.hash = tokens[0].1.hash;
    match store.create_token(&duplicate).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.count_tokens().await.unwrap(), 4);
}

pub async fn stats_count_deliveries_by_status<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    let main = webhook("instance", &["tag_created"]);
    let later = webhook("company/t1", &["alpha_happened"]);
    store.create_webhook(&main).await.unwrap();
    store.create_webhook(&later).await.unwrap();
    let events: Vec<_> = (0..4).map(|_| event("tag_created", None, None)).collect();
    store.ingest(&events, T0).await.unwrap();
    store
        .ingest(&[event("alpha_happened", Some("t1"), None)], at(5))
        .await
        .unwrap();
    let claimed = store.claim(&claim_at(at(1), 3)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    store
        .record(&[
            success(&claimed[0], at(2)),
            failure(&claimed[1], at(2), NextState::Failed),
        ])
        .await
        .unwrap();
    assert!(
        store
            .disable_webhook(later.id, "by hand", at(6))
            .await
            .unwrap()
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.pending,
            stats.delivering,
            stats.succeeded,
            stats.failed,
            stats.cancelled,
            stats.disabled_webhooks
        ),
        (1, 1, 1, 1, 1, 1)
    );
}

pub async fn ping_answers<B: TestBackend>(backend: B) {
    let store = open(&backend).await;
    store.ping().await.unwrap();
}
