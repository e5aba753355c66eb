//! `/metrics` after a known scenario: deliveries by outcome, attempt latency, queue depth and
//! disabled webhooks, with the values the scenario implies.
//!
//! A test binary of its own: the Prometheus recorder is process-wide, so the counters of the
//! tests in `tests/it` (run in parallel) would add to these. Here one test owns the process and
//! every count is exact.

#[allow(
    dead_code,
    reason = "shared with tests/it; this binary uses a part of it"
)]
#[path = "it/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use support::TestServer;

/// A receiver on 127.0.0.1:0 that answers every request with `status` and counts them.
struct FixedReceiver {
    url: String,
    count: Arc<AtomicUsize>,
}

impl FixedReceiver {
    async fn start(status: StatusCode) -> FixedReceiver {
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                status
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FixedReceiver { url, count }
    }

    fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// The samples of a Prometheus text exposition: `name{labels}` (as rendered) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("a sample line");
            (key.to_owned(), value.parse().expect("a sample value"))
        })
        .collect()
}

async fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let (status, body) = server.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    samples(body.as_str().expect("Prometheus text"))
}

/// The value of `key`, 0 when absent (a counter never incremented is not rendered).
fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_deliveries_by_outcome_attempt_latency_queue_depth_and_disabled_webhooks() {
    // Without workers, ingested deliveries stay queued: the queue depth is theirs.
    let idle = TestServer::start_with(|config| config.workers = false).await;
    let nowhere = FixedReceiver::start(StatusCode::OK).await;
    idle.create_webhook("/api/webhooks", &nowhere.url, "s", &["project_deleted"])
        .await;
    for n in 0..2 {
        idle.emit("project_deleted", json!({"n": n})).await;
    }
    let queued = scrape(&idle).await;
    assert_eq!(value(&queued, "mia_webhooks_queue_depth"), 2.0);
    assert_eq!(
        value(&queued, r#"mia_webhooks_deliveries{status="pending"}"#),
        2.0
    );
    assert_eq!(value(&queued, "mia_webhooks_events_ingested_total"), 2.0);
    idle.stop().await;
    assert_eq!(nowhere.requests(), 0);

    // With workers and two retries: one receiver answers 200, one 500 (three attempts, then
    // the delivery fails), one 410 (the delivery fails and its webhook is disabled); a fourth
    // webhook is disabled by an edit.
    let server = TestServer::start_with(|config| config.retry_schedule_secs = vec![0.1, 0.1]).await;
    let ok = FixedReceiver::start(StatusCode::OK).await;
    let failing = FixedReceiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let gone = FixedReceiver::start(StatusCode::GONE).await;
    for receiver in [&ok, &failing, &gone, &nowhere] {
        server
            .create_webhook("/api/webhooks", &receiver.url, "s", &["project_deleted"])
            .await;
    }
    let (_, page) = server.admin("GET", "/api/webhooks", None).await;
    let off = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["targetUrl"] == nowhere.url.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = server
        .admin(
            "PATCH",
            &format!("/api/webhooks/{off}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer = server.emit("project_deleted", json!({})).await;
    assert_eq!(answer["deliveries"], 3, "{answer}");

    // Wait (bounded) until the workers have counted the three results.
    let mut got = BTreeMap::new();
    for _ in 0..400 {
        got = scrape(&server).await;
        let finished = value(
            &got,
            r#"mia_webhooks_deliveries_total{outcome="succeeded"}"#,
        ) + value(&got, r#"mia_webhooks_deliveries_total{outcome="failed"}"#);
        if finished >= 3.0
            && value(
                &got,
                r#"mia_webhooks_webhooks_disabled_total{reason="gone"}"#,
            ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let expected = [
        // Deliveries by outcome: each result the workers wrote.
        (r#"mia_webhooks_deliveries_total{outcome="succeeded"}"#, 1.0),
        (r#"mia_webhooks_deliveries_total{outcome="retry"}"#, 2.0),
        (r#"mia_webhooks_deliveries_total{outcome="failed"}"#, 2.0),
        // Attempts by outcome, and the latency of each.
        (r#"mia_webhooks_attempts_total{outcome="success"}"#, 1.0),
        (r#"mia_webhooks_attempts_total{outcome="http_status"}"#, 4.0),
        ("mia_webhooks_attempt_duration_seconds_count", 5.0),
        (
            r#"mia_webhooks_attempt_duration_seconds_bucket{le="+Inf"}"#,
            5.0,
        ),
        // Deliveries by status in the store, and the queue: empty now.
        ("mia_webhooks_queue_depth", 0.0),
        (r#"mia_webhooks_deliveries{status="pending"}"#, 0.0),
        (r#"mia_webhooks_deliveries{status="delivering"}"#, 0.0),
        (r#"mia_webhooks_deliveries{status="succeeded"}"#, 1.0),
        (r#"mia_webhooks_deliveries{status="failed"}"#, 2.0),
        (r#"mia_webhooks_deliveries{status="cancelled"}"#, 0.0),
        // Disabled webhooks: the 410 one and the edited one; the workers disabled one.
        ("mia_webhooks_webhooks_disabled", 2.0),
        (
            r#"mia_webhooks_webhooks_disabled_total{reason="gone"}"#,
            1.0,
        ),
        (
            r#"mia_webhooks_webhooks_disabled_total{reason="failing"}"#,
            0.0,
        ),
        // Both servers' events.
        ("mia_webhooks_events_ingested_total", 3.0),
    ];
    for (key, want) in expected {
        assert!(
            got.contains_key(key) || want == 0.0,
            "/metrics has no {key}"
        );
        assert_eq!(value(&got, key), want, "{key}");
    }
    let outcomes: BTreeSet<&str> = got
        .keys()
        .filter_map(|k| k.strip_prefix("mia_webhooks_deliveries_total{outcome=\""))
        .map(|rest| rest.trim_end_matches("\"}"))
        .collect();
    assert_eq!(outcomes, BTreeSet::from(["failed", "retry", "succeeded"]));
    let sum = value(&got, "mia_webhooks_attempt_duration_seconds_sum");
    assert!(
        sum > 0.0 && sum < 5.0 * 5.0,
        "attempt seconds in all: {sum}"
    );
    // Buckets are cumulative, by upper bound: none holds more than the next.
    let mut buckets: Vec<(f64, f64)> = got
        .iter()
        .filter_map(|(k, v)| {
            let bound = k
                .strip_prefix("mia_webhooks_attempt_duration_seconds_bucket{le=\"")?
                .trim_end_matches("\"}");
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(
        (ok.requests(), failing.requests(), gone.requests()),
        (1, 3, 1)
    );
    assert_eq!(nowhere.requests(), 0, "a disabled webhook gets nothing");
    server.stop().await;
}
