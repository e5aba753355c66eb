//! The worker loop against real receivers, with the in-memory store and SQLite.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mia_webhooks_delivery::{
    DeliveryConfig, DeliveryError, Dispatcher, DispatcherHandle, RetryPolicy, Sender,
};
use mia_webhooks_model::{DeliveryStatus, FailureKind, Timestamp, Webhook};
use mia_webhooks_store::{
    ClaimRequest, DeliveryQuery, MemoryStore, SqliteStore, Store, StoreOptions, StoreStats,
};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{Receiver, Reply, local_config, new_event, wait_for, wait_for_async, webhook};

/// A store under test, with the directory that holds its file.
pub(crate) struct TestStore<S> {
    store: Arc<S>,
    _dir: Option<TempDir>,
}

async fn memory_store() -> TestStore<MemoryStore> {
    TestStore {
        store: Arc::new(MemoryStore::new(StoreOptions::default())),
        _dir: None,
    }
}

async fn sqlite_store() -> TestStore<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("delivery.db");
    let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    TestStore {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// Runs every listed test body against each backend.
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory_store().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_store().await).await;
                }
            )*
        }
    };
}

for_each_store!(
    deliveries_to_a_2xx_receiver_succeed,
    a_receiver_failing_twice_then_answering_gets_three_attempts,
    a_delivery_past_its_last_attempt_fails,
    retry_after_on_429_is_honoured_within_its_cap,
    a_410_disables_the_webhook_at_once,
    a_webhook_failing_for_the_disable_period_is_disabled,
    a_hanging_webhook_does_not_hold_up_a_healthy_one,
    a_stop_during_50_attempts_lets_them_finish_and_sends_none_again,
    a_stop_aborts_attempts_past_the_grace_and_releases_them,
    an_ingested_event_wakes_an_idle_dispatcher,
    deliveries_handed_over_are_sent_without_a_claim_of_its_own,
    a_dispatcher_that_stopped_gives_handed_deliveries_back,
);

/// A running dispatcher.
struct Running {
    cancel: CancellationToken,
    handle: DispatcherHandle,
    task: JoinHandle<Result<(), DeliveryError>>,
}

impl Running {
    fn start<S: Store>(store: &Arc<S>, config: DeliveryConfig) -> Running {
        let sender = Sender::new(&config).unwrap();
        let dispatcher = Dispatcher::new(Arc::clone(store), sender, config).unwrap();
        let handle = dispatcher.handle();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(dispatcher.run(cancel.clone()));
        Running {
            cancel,
            handle,
            task,
        }
    }

    /// Stops the dispatcher and waits for it, at most `bound`.
    async fn stop_within(self, bound: Duration) {
        self.cancel.cancel();
        let result = tokio::time::timeout(bound, self.task)
            .await
            .expect("the dispatcher must stop within its bound");
        result.unwrap().unwrap();
    }
}

async fn add_webhook<S: Store>(store: &S, hook: &Webhook) {
    store.create_webhook(hook).await.unwrap();
}

/// Queues `n` deliveries to `hook` alone.
async fn queue<S: Store>(store: &S, hook: &Webhook, n: usize) {
    for i in 0..n {
        let receipt = store
            .ingest_for_webhook(&new_event(i), hook.id, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(receipt.unwrap().deliveries, 1);
    }
}

async fn stats<S: Store>(store: &S) -> StoreStats {
    store.stats().await.unwrap()
}

async fn deliveries<S: Store>(store: &S, hook: &Webhook) -> Vec<mia_webhooks_model::Delivery> {
    let query = DeliveryQuery {
        webhook: hook.id,
        status: None,
        limit: 1000,
        before: None,
    };
    store.list_deliveries(&query).await.unwrap().items
}

async fn wait_stats<S: Store>(store: &S, what: &str, condition: impl Fn(&StoreStats) -> bool) {
    wait_for_async(what, || async { condition(&stats(store).await) }).await;
}

fn delivery_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .seen()
        .iter()
        .map(|s| {
            s.headers
                .get("x-mia-delivery")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn deliveries_to_a_2xx_receiver_succeed<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let (a, b) = (webhook(&receiver.url()), webhook(&receiver.url()));
    add_webhook(&*t.store, &a).await;
    add_webhook(&*t.store, &b).await;
    // Ingested through the fan-out: both webhooks subscribe to project_created.
    let events: Vec<_> = (0..10).map(new_event).collect();
    let receipts = t.store.ingest(&events, Timestamp::now()).await.unwrap();
    assert!(receipts.iter().all(|r| r.deliveries == 2));

    let running = Running::start(&t.store, local_config());
    wait_stats(&*t.store, "20 succeeded deliveries", |s| s.succeeded == 20).await;
    running.stop_within(Duration::from_secs(10)).await;

    let ids = delivery_ids(&receiver);
    assert_eq!(ids.len(), 20);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        20,
        "each delivery was sent once"
    );
    let s = stats(&*t.store).await;
    assert_eq!((s.pending, s.delivering, s.failed), (0, 0, 0));
    for delivery in deliveries(&*t.store, &a).await {
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.attempt_count, 1);
        let detail = t.store.get_delivery(delivery.id).await.unwrap().unwrap();
        assert_eq!(detail.attempts.len(), 1);
        assert_eq!(detail.attempts[0].status_code, Some(200));
    }
}

async fn a_receiver_failing_twice_then_answering_gets_three_attempts<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|n| {
        if n < 2 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    queue(&*t.store, &hook, 1).await;

    let running = Running::start(&t.store, local_config());
    wait_stats(&*t.store, "the delivery succeeded", |s| s.succeeded == 1).await;
    running.stop_within(Duration::from_secs(10)).await;

    let delivery = deliveries(&*t.store, &hook).await.remove(0);
    let detail = t.store.get_delivery(delivery.id).await.unwrap().unwrap();
    let statuses: Vec<_> = detail
        .attempts
        .iter()
        .map(|a| (a.number, a.status_code, a.failure))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, Some(500), Some(FailureKind::HttpStatus)),
            (2, Some(500), Some(FailureKind::HttpStatus)),
            (3, Some(200), None)
        ]
    );
    let ids = delivery_ids(&receiver);
    assert_eq!(
        ids,
        vec![delivery.id.to_string(); 3],
        "the same X-Mia-Delivery on every attempt"
    );
    for seen in receiver.seen() {
        let signature = seen
            .headers
            .get("x-mia-signature")
            .unwrap()
            .to_str()
            .unwrap();
        mia_webhooks_signature::verify(&seen.body, crate::support::SECRET.as_bytes(), signature)
            .unwrap();
        assert_eq!(&seen.body[..], &detail.payload[..]);
    }
}

async fn a_delivery_past_its_last_attempt_fails<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(503)).await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    queue(&*t.store, &hook, 1).await;
    let config = DeliveryConfig {
        retry: RetryPolicy::fixed(vec![Duration::from_millis(30); 2]),
        ..local_config()
    };

    let running = Running::start(&t.store, config);
    wait_stats(&*t.store, "the delivery failed", |s| s.failed == 1).await;
    running.stop_within(Duration::from_secs(10)).await;

    let delivery = deliveries(&*t.store, &hook).await.remove(0);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(
        delivery.attempt_count, 3,
        "the first attempt and two retries"
    );
    assert_eq!(receiver.count(), 3);
    let webhook = t.store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(
        webhook.enabled,
        "a failed delivery alone does not disable its webhook"
    );
}

async fn retry_after_on_429_is_honoured_within_its_cap<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|n| {
        if n == 0 {
            Reply::Full(429, vec![("retry-after", "3600".into())], Vec::new())
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    queue(&*t.store, &hook, 1).await;
    let config = DeliveryConfig {
        retry: RetryPolicy::fixed(vec![Duration::from_millis(500)]),
        ..local_config()
    };

    let running = Running::start(&t.store, config);
    wait_for_async("the 429 is recorded", || async {
        deliveries(&*t.store, &hook).await[0].attempt_count == 1
    })
    .await;
    let delivery = deliveries(&*t.store, &hook).await.remove(0);
    let first = delivery.last_attempt.clone().unwrap();
    if delivery.status == DeliveryStatus::Pending {
        let next = delivery.next_attempt_at.unwrap();
        let wait = next.duration_since(first.started_at);
        // Retry-After asked for an hour; the cap is twice the scheduled 500 ms.
        assert!(wait >= Duration::from_secs(1), "{wait:?}");
        assert!(wait < Duration::from_secs(60), "{wait:?}");
    }
    wait_stats(&*t.store, "the retry succeeded", |s| s.succeeded == 1).await;
    running.stop_within(Duration::from_secs(10)).await;

    let detail = t.store.get_delivery(delivery.id).await.unwrap().unwrap();
    assert_eq!(detail.attempts.len(), 2);
    let gap = detail.attempts[1]
        .started_at
        .duration_since(detail.attempts[0].started_at);
    assert!(
        gap >= Duration::from_secs(1),
        "the retry waited for the clamped Retry-After: {gap:?}"
    );
}

async fn a_410_disables_the_webhook_at_once<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(410)).await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    queue(&*t.store, &hook, 3).await;
    let config = DeliveryConfig {
        per_webhook_cap: 1,
        ..local_config()
    };

    let running = Running::start(&t.store, config);
    wait_stats(&*t.store, "one failed, two cancelled", |s| {
        s.failed == 1 && s.cancelled == 2
    })
    .await;
    running.stop_within(Duration::from_secs(10)).await;

    let webhook = t.store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(!webhook.enabled);
    let reason = webhook.disabled_reason.unwrap();
    assert!(reason.contains("410 Gone"), "{reason}");
    assert_eq!(
        receiver.count(),
        1,
        "nothing more is sent to a webhook that answered 410"
    );
}

async fn a_webhook_failing_for_the_disable_period_is_disabled<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(500)).await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    queue(&*t.store, &hook, 1).await;
    let config = DeliveryConfig {
        retry: RetryPolicy::fixed(vec![Duration::from_millis(100); 20]),
        disable_after: Duration::from_millis(250),
        ..local_config()
    };

    let running = Running::start(&t.store, config);
    wait_for_async("the webhook is disabled", || async {
        !t.store.get_webhook(hook.id).await.unwrap().unwrap().enabled
    })
    .await;
    running.stop_within(Duration::from_secs(10)).await;

    let webhook = t.store.get_webhook(hook.id).await.unwrap().unwrap();
    let reason = webhook.disabled_reason.unwrap();
    assert!(
        reason.starts_with("every delivery attempt has failed since"),
        "{reason}"
    );
    assert!(
        reason.contains("edit the webhook to enable it again"),
        "{reason}"
    );
    let delivery = deliveries(&*t.store, &hook).await.remove(0);
    assert_eq!(delivery.status, DeliveryStatus::Cancelled);
    assert!(
        delivery.attempt_count >= 3,
        "it failed for longer than the period: {}",
        delivery.attempt_count
    );
    let s = stats(&*t.store).await;
    assert_eq!((s.pending, s.delivering, s.disabled_webhooks), (0, 0, 1));
}

async fn a_hanging_webhook_does_not_hold_up_a_healthy_one<S: Store>(t: TestStore<S>) {
    let hanging = Receiver::start(|_| Reply::Hang).await;
    let healthy = Receiver::start(|_| Reply::Status(200)).await;
    let (slow, fast) = (webhook(&hanging.url()), webhook(&healthy.url()));
    add_webhook(&*t.store, &slow).await;
    add_webhook(&*t.store, &fast).await;
    // The hanging webhook's deliveries are older, so they are due first.
    queue(&*t.store, &slow, 30).await;
    queue(&*t.store, &fast, 60).await;
    let config = DeliveryConfig {
        max_in_flight: 16,
        per_webhook_cap: 8,
        attempt_timeout: Duration::from_secs(60),
        lease: Duration::from_secs(120),
        shutdown_grace: Duration::from_millis(100),
        ..local_config()
    };

    let running = Running::start(&t.store, config);
    wait_stats(&*t.store, "all healthy deliveries succeeded", |s| {
        s.succeeded == 60
    })
    .await;

    // While all 60 went through, the hanging receiver still holds exactly its cap.
    assert_eq!(healthy.count(), 60);
    assert_eq!(
        hanging.count(),
        8,
        "no more than the per-webhook cap went to the hanging receiver"
    );
    assert_eq!(hanging.open(), 8, "and those 8 are still in flight");
    for delivery in deliveries(&*t.store, &slow).await {
        assert_eq!(delivery.attempt_count, 0, "no hanging attempt has finished");
    }
    running.stop_within(Duration::from_secs(10)).await;
    let s = stats(&*t.store).await;
    assert_eq!(s.delivering, 0, "aborted attempts were released");
    assert_eq!(s.pending, 30);
}

async fn a_stop_during_50_attempts_lets_them_finish_and_sends_none_again<S: Store>(
    t: TestStore<S>,
) {
    let receiver = Receiver::start(|_| Reply::Delayed(Duration::from_millis(500), 200)).await;
    let mut hooks = Vec::new();
    for _ in 0..10 {
        let hook = webhook(&receiver.url());
        add_webhook(&*t.store, &hook).await;
        queue(&*t.store, &hook, 5).await;
        hooks.push(hook);
    }
    let config = DeliveryConfig {
        max_in_flight: 64,
        shutdown_grace: Duration::from_secs(5),
        ..local_config()
    };

    let running = Running::start(&t.store, config.clone());
    wait_for("50 attempts in flight", || receiver.open() == 50).await;
    running
        .stop_within(config.shutdown_grace + Duration::from_secs(5))
        .await;

    let s = stats(&*t.store).await;
    assert_eq!(s.delivering, 0, "no live lease is left");
    assert_eq!(
        s.succeeded, 50,
        "every attempt in flight finished and was recorded"
    );
    let claim = ClaimRequest {
        limit: 100,
        lease: config.lease,
        per_webhook_cap: 8,
        now: Timestamp::now(),
    };
    assert!(
        t.store.claim(&claim).await.unwrap().is_empty(),
        "nothing is left to send"
    );

    // A new dispatcher on the same store sends nothing again.
    let running = Running::start(&t.store, config);
    running.handle.notify();
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop_within(Duration::from_secs(10)).await;
    let ids = delivery_ids(&receiver);
    assert_eq!(ids.len(), 50);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 50);
}

async fn a_stop_aborts_attempts_past_the_grace_and_releases_them<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Hang).await;
    for _ in 0..3 {
        let hook = webhook(&receiver.url());
        add_webhook(&*t.store, &hook).await;
        queue(&*t.store, &hook, 8).await;
    }
    let config = DeliveryConfig {
        attempt_timeout: Duration::from_secs(60),
        lease: Duration::from_secs(120),
        shutdown_grace: Duration::from_millis(200),
        ..local_config()
    };

    let running = Running::start(&t.store, config.clone());
    wait_for("24 attempts in flight", || receiver.open() == 24).await;
    running
        .stop_within(config.shutdown_grace + Duration::from_secs(5))
        .await;

    let s = stats(&*t.store).await;
    assert_eq!(s.delivering, 0, "aborted attempts leave no live lease");
    assert_eq!(s.pending, 24);
    let claim = ClaimRequest {
        limit: 100,
        lease: config.lease,
        per_webhook_cap: 8,
        now: Timestamp::now(),
    };
    let claimed = t.store.claim(&claim).await.unwrap();
    assert_eq!(
        claimed.len(),
        24,
        "released deliveries are claimable at once"
    );
    assert!(
        claimed.iter().all(|d| d.attempt == 1),
        "no attempt was recorded for them"
    );
}

async fn an_ingested_event_wakes_an_idle_dispatcher<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    // Without a notification this dispatcher would not look again for an hour.
    let config = notified_only();
    let running = Running::start(&t.store, config);
    tokio::time::sleep(Duration::from_millis(100)).await;

    queue(&*t.store, &hook, 1).await;
    running.handle.notify();
    wait_for("the event is delivered", || receiver.count() == 1).await;
    wait_stats(&*t.store, "the delivery succeeded", |s| s.succeeded == 1).await;
    running.stop_within(Duration::from_secs(10)).await;
}

/// A configuration under which an idle dispatcher does not look for work for an hour: only a
/// notification or a hand-over gets it going.
fn notified_only() -> DeliveryConfig {
    DeliveryConfig {
        idle_poll: Duration::from_secs(3600),
        ..local_config()
    }
}

/// Waits until the dispatcher, idle, offers its slots, and reserves them.
async fn reserve(handle: &DispatcherHandle) -> mia_webhooks_delivery::Reservation {
    let mut reservation = None;
    wait_for("the dispatcher offers its slots", || {
        reservation = handle.reserve();
        reservation.is_some()
    })
    .await;
    reservation.unwrap()
}

async fn deliveries_handed_over_are_sent_without_a_claim_of_its_own<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let hooks = [webhook(&receiver.url()), webhook(&receiver.url())];
    for hook in &hooks {
        add_webhook(&*t.store, hook).await;
    }
    // Neither polled nor notified: only what is handed over can reach the receiver.
    let config = notified_only();
    let running = Running::start(&t.store, config.clone());
    let reservation = reserve(&running.handle).await;
    assert_eq!(
        reservation.slots(),
        config.claim_batch,
        "an idle dispatcher offers a claim batch"
    );
    let now = Timestamp::now();
    let events = [new_event(1), new_event(2)];
    let (receipts, claimed) = t
        .store
        .ingest_then_claim(&events, now, &reservation.request(now))
        .await;
    assert!(receipts.unwrap().iter().all(|r| r.deliveries == 2));
    let claimed = claimed.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|d| d.leased_until > now));
    reservation.hand_over(claimed).unwrap();

    wait_for("the four are delivered", || receiver.count() == 4).await;
    wait_stats(&*t.store, "the four succeeded", |s| s.succeeded == 4).await;
    let mut ids = delivery_ids(&receiver);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each delivery once");
    for hook in &hooks {
        assert!(
            deliveries(&*t.store, hook)
                .await
                .iter()
                .all(|d| d.attempt_count == 1 && d.status == DeliveryStatus::Succeeded)
        );
    }
    running.stop_within(Duration::from_secs(10)).await;
}

async fn a_dispatcher_that_stopped_gives_handed_deliveries_back<S: Store>(t: TestStore<S>) {
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let hook = webhook(&receiver.url());
    add_webhook(&*t.store, &hook).await;
    let config = notified_only();
    let running = Running::start(&t.store, config);
    let reservation = reserve(&running.handle).await;
    let handle = running.handle.clone();
    running.stop_within(Duration::from_secs(10)).await;
    assert!(
        handle.reserve().is_none(),
        "a stopped dispatcher reserves nothing"
    );

    let now = Timestamp::now();
    let (receipts, claimed) = t
        .store
        .ingest_then_claim(&[new_event(1)], now, &reservation.request(now))
        .await;
    assert_eq!(receipts.unwrap()[0].deliveries, 1);
    let back = reservation
        .hand_over(claimed.unwrap())
        .expect_err("a stopped dispatcher takes nothing");
    assert_eq!(back.len(), 1);
    assert_eq!(receiver.count(), 0);
    assert_eq!(stats(&*t.store).await.delivering, 1);
    // What the caller does with them (the server's ingestion does this): pending again at once.
    let leases: Vec<_> = back.iter().map(|d| (d.delivery_id, d.lease)).collect();
    t.store.release(&leases).await.unwrap();
    let after = stats(&*t.store).await;
    assert_eq!((after.pending, after.delivering), (1, 0));
}

/// While its claims fail (here: an injected fault), an idle dispatcher offers no slots, so that
/// ingestions do not run the same failing claim each time; once a claim succeeds again, it
/// offers them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_whose_claims_fail_offers_no_slots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faults.db");
    let options = StoreOptions::default();
    let fault = options.fail_claim_before_commit.clone();
    let store = Arc::new(
        SqliteStore::open(path.to_str().unwrap(), options)
            .await
            .unwrap(),
    );
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let hook = webhook(&receiver.url());
    store.create_webhook(&hook).await.unwrap();

    let config = DeliveryConfig {
        idle_poll: Duration::from_millis(50),
        ..local_config()
    };
    let running = Running::start(&store, config);
    drop(reserve(&running.handle).await);
    fault.store(true, Ordering::SeqCst);
    queue(&*store, &hook, 1).await;
    running.handle.notify();
    // The claim fails, then keeps failing at each poll: no slot is offered meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        assert!(
            running.handle.reserve().is_none(),
            "slots offered while claims fail"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.count(), 0);

    // Claims succeed again: the delivery goes out and slots come back.
    fault.store(false, Ordering::SeqCst);
    drop(reserve(&running.handle).await);
    wait_for("the delivery goes out", || receiver.count() == 1).await;
    running.stop_within(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_lease_too_short_for_the_attempt_timeout_is_refused() {
    let config = DeliveryConfig {
        lease: Duration::from_secs(15),
        ..DeliveryConfig::default()
    };
    let sender = Sender::new(&DeliveryConfig::default()).unwrap();
    let store = Arc::new(MemoryStore::new(StoreOptions::default()));
    let err = Dispatcher::new(store, sender, config).unwrap_err();
    match err {
        DeliveryError::Config { setting, message } => {
            assert_eq!(setting, "lease");
            assert!(message.contains("attempt_timeout"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}
