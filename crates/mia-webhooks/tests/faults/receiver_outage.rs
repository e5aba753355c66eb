//! Receiver outage: the receiver's port refuses connections for a while, then it comes back on
//! the same port. Deliveries are retried on the schedule and all arrive; the webhook is disabled
//! only when the outage outlasts its period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Api, Receiver, Server, epoch_ms, exclusive, poll};

const SECRET: &str = "receiver-outage-secret";
const EVENT: &str = "outage_tested";
/// The retry schedule, in seconds: five attempts in all.
const SCHEDULE: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// The server's jitter: each delay moves by up to ±20%.
const JITTER: f64 = 0.2;
/// What a retry may start later than its jittered delay: the loop wakes when the retry is due,
/// claims it and starts the attempt (a few milliseconds idle; more on a loaded machine).
const SLACK_MS: i64 = 500;
const EVENTS: usize = 12;

async fn start_server(dir: &std::path::Path, disable_after_secs: &str) -> Server {
    let schedule = SCHEDULE.map(|s| s.to_string()).join(",");
    Server::start(
        dir,
        &[
            (
                "MIA_WEBHOOKS_DATABASE_URL",
                format!("sqlite://{}", dir.join("outage.db").display()),
            ),
            ("MIA_WEBHOOKS_EXTRA_EVENTS", EVENT.to_owned()),
            ("MIA_WEBHOOKS_RETRY_SCHEDULE_SECS", schedule),
            (
                "MIA_WEBHOOKS_DISABLE_AFTER_SECS",
                disable_after_secs.to_owned(),
            ),
            ("MIA_WEBHOOKS_CONNECT_TIMEOUT_SECS", "1".to_owned()),
            ("MIA_WEBHOOKS_ATTEMPT_TIMEOUT_SECS", "2".to_owned()),
            ("MIA_WEBHOOKS_LEASE_SECS", "7".to_owned()),
        ],
    )
    .await
}

async fn post_events(api: &Api, seqs: std::ops::Range<usize>) {
    for seq in seqs {
        let (status, answer) = api
            .post(
                "/api/events",
                &json!({"eventName": EVENT, "eventTimestamp": seq, "payload": {"seq": seq}}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["deliveries"], 1, "{answer}");
    }
}

/// Checks that the recorded attempts of one delivery follow the schedule: attempt `k + 1`
/// starts `SCHEDULE[k]` ±20% after attempt `k` ended, give or take the loop's slack. Returns
/// the gaps in milliseconds.
fn check_schedule(delivery: &Value) -> Vec<i64> {
    let attempts = delivery["attempts"].as_array().unwrap();
    let mut gaps = Vec::new();
    for (k, pair) in attempts.windows(2).enumerate() {
        let gap = epoch_ms(pair[1]["startedAt"].as_str().unwrap())
            - epoch_ms(pair[0]["startedAt"].as_str().unwrap());
        let duration = pair[0]["durationMs"].as_i64().unwrap();
        let delay = SCHEDULE[k] * 1000.0;
        // Timestamps have millisecond precision: 2 ms of rounding either way.
        let earliest = (delay * (1.0 - JITTER)) as i64 - 2;
        let latest = (delay * (1.0 + JITTER)) as i64 + duration + SLACK_MS;
        assert!(
            (earliest..=latest).contains(&gap),
            "attempt {} started {gap} ms after attempt {}, outside [{earliest}, {latest}] ms: {delivery}",
            k + 2,
            k + 1
        );
        gaps.push(gap);
    }
    gaps
}

/// The receiver takes one delivery, then goes down (its listener and its open connections are
/// closed) and refuses connections until every delivery queued meanwhile has failed four times
/// (0, 0.5, 1.5 and 3.5 s into the outage, give or take jitter); then it comes back on the same
/// port: the fifth attempt, 4 s later, succeeds. The webhook (disabled after 30 s of failures)
/// stays enabled throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_comes_back_gets_every_delivery_on_the_schedule_and_stays_enabled() {
    let _serial = exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::up(&[("r", SECRET)]).await;
    let server = start_server(dir.path(), "30").await;
    let api = Api::new(&server.base);
    let webhook = api.create_webhook(&receiver.url("r"), SECRET, EVENT).await;
    post_events(&api, 0..1).await;
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        let arrived = receiver.count() == 1;
        async move { arrived.then_some(()) }
    })
    .await
    .expect("the first event arrives while the receiver is up");
    let before = receiver.arrivals()[0].delivery.clone();
    receiver.stop().await;
    let outage = Instant::now();
    post_events(&api, 1..EVENTS + 1).await;

    let failed_four_times = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let api = api.clone();
        let webhook = webhook.clone();
        let before = before.clone();
        async move {
            let hook = api.get(&format!("/api/webhooks/{webhook}")).await;
            assert_eq!(hook["enabled"], true, "disabled during the outage: {hook}");
            let mut deliveries = api.deliveries(&webhook, None).await;
            deliveries.retain(|d| d["id"] != before.as_str());
            assert_eq!(deliveries.len(), EVENTS);
            for delivery in &deliveries {
                assert!(
                    delivery["attemptCount"].as_u64().unwrap() <= 4,
                    "a fifth attempt came before the receiver was back: {delivery}"
                );
            }
            deliveries
                .iter()
                .all(|d| d["attemptCount"] == 4)
                .then_some(())
        }
    })
    .await;
    assert!(
        failed_four_times.is_some(),
        "deliveries were not tried four times within 30 s"
    );
    receiver.start().await;
    let outage = outage.elapsed();

    let delivered = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let api = api.clone();
        let webhook = webhook.clone();
        async move {
            let done = api.deliveries(&webhook, Some("succeeded")).await;
            (done.len() == EVENTS + 1).then_some(())
        }
    })
    .await;
    assert!(
        delivered.is_some(),
        "not every delivery succeeded within 30 s of the receiver's return"
    );

    let mut all_gaps: Vec<Vec<i64>> = Vec::new();
    for delivery in api.deliveries(&webhook, None).await {
        let id = delivery["id"].as_str().unwrap();
        if id == before {
            continue;
        }
        let detail = api.get(&format!("/api/deliveries/{id}")).await;
        let attempts = detail["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 5, "{detail}");
        for attempt in &attempts[..4] {
            assert_eq!(attempt["errorKind"], "connect", "{detail}");
        }
        assert_eq!(attempts[4]["statusCode"], 204, "{detail}");
        all_gaps.push(check_schedule(&detail));
    }
    let hook = api.get(&format!("/api/webhooks/{webhook}")).await;
    assert_eq!(hook["enabled"], true, "{hook}");
    assert!(hook.get("disabledReason").is_none(), "{hook}");

    // Each delivery arrived once, signed.
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    for arrival in receiver.arrivals() {
        assert!(arrival.signature_ok, "{arrival:?}");
        *arrivals.entry(arrival.delivery).or_default() += 1;
    }
    assert_eq!(arrivals.len(), EVENTS + 1);
    assert!(arrivals.values().all(|&n| n == 1), "{arrivals:?}");
    eprintln!("receiver outage: down {outage:.1?}; gaps between attempts (ms): {all_gaps:?}");
    assert!(server.terminate().success());
}

/// The same outage with a disable period of 2 s, shorter than the outage: the webhook is
/// disabled with a reason, not before 2 s of failures, and its deliveries stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_longer_than_the_disable_period_gets_its_webhook_disabled() {
    let _serial = exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::down(&[("r", SECRET)]);
    let server = start_server(dir.path(), "2").await;
    let api = Api::new(&server.base);
    let webhook = api.create_webhook(&receiver.url("r"), SECRET, EVENT).await;
    post_events(&api, 0..4).await;

    let hook = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let api = api.clone();
        let webhook = webhook.clone();
        async move {
            let hook = api.get(&format!("/api/webhooks/{webhook}")).await;
            (hook["enabled"] == false).then_some(hook)
        }
    })
    .await
    .expect("the webhook is disabled within 30 s");
    let reason = hook["disabledReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("failed") && reason.contains("edit the webhook"),
        "{hook}"
    );
    assert!(!reason.contains(SECRET));

    // Nothing is left to try: deliveries are cancelled (or failed), none succeeded.
    let deliveries = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let api = api.clone();
        let webhook = webhook.clone();
        async move {
            let deliveries = api.deliveries(&webhook, None).await;
            deliveries
                .iter()
                .all(|d| d["status"] == "cancelled" || d["status"] == "failed")
                .then_some(deliveries)
        }
    })
    .await
    .expect("every delivery of the disabled webhook is cancelled or failed");
    let mut first_failure = i64::MAX;
    for delivery in &deliveries {
        let id = delivery["id"].as_str().unwrap();
        let detail = api.get(&format!("/api/deliveries/{id}")).await;
        check_schedule(&detail);
        for attempt in detail["attempts"].as_array().unwrap() {
            assert_eq!(attempt["errorKind"], "connect", "{detail}");
            first_failure = first_failure.min(epoch_ms(attempt["startedAt"].as_str().unwrap()));
        }
    }
    let disabled_at = epoch_ms(hook["updatedAt"].as_str().unwrap());
    assert!(
        disabled_at - first_failure >= 2000,
        "disabled {} ms after the first failure, before its 2 s period",
        disabled_at - first_failure
    );
    assert_eq!(receiver.arrivals().len(), 0);
    eprintln!(
        "receiver outage, 2 s period: disabled {} ms after the first failure; statuses {:?}",
        disabled_at - first_failure,
        deliveries
            .iter()
            .map(|d| d["status"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    assert!(server.terminate().success());
}
