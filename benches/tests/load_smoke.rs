//! The load generator, run small so that it never rots: every delivery arrives, signed, and the
//! last line of stdout is the JSON report. Everything listens on 127.0.0.1.

use std::process::{Command, Output};

use mia_webhooks_server::{Config, Server};
use serde_json::Value;

const KEYS: &[&str] = &[
    "events",
    "deliveries",
    "ingest_per_sec",
    "deliveries_per_sec",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "missing",
    "duplicates",
    "bad_signature",
    "peak_rss_mib",
    "raw_http_per_sec",
];

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_load"))
        .args(args)
        .env_remove("MIA_WEBHOOKS_DATABASE_URL")
        .output()
        .expect("the load binary runs")
}

/// The JSON object on the last line of stdout, with every promised key.
fn report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the last line is not JSON ({e}): {last:?}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    for key in KEYS {
        assert!(report.get(key).is_some(), "{key} missing from {report}");
    }
    report
}

fn assert_complete(output: &Output, expected: u64) -> Value {
    let report = report(output);
    assert!(
        output.status.success(),
        "exit {:?}; report {report}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["deliveries"], expected, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["bad_signature"], 0, "{report}");
    assert_eq!(report["unexpected"], 0, "{report}");
    assert!(report["ingest_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["deliveries_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let p50 = report["p50_ms"].as_f64().unwrap();
    let p99 = report["p99_ms"].as_f64().unwrap();
    let max = report["max_ms"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    report
}

#[test]
fn an_in_process_run_delivers_every_event_to_every_webhook_signed() {
    let output = load(&[
        "--in-process",
        "--events",
        "200",
        "--webhooks",
        "3",
        "--concurrency",
        "8",
        "--raw-secs",
        "0.2",
        "--timeout-secs",
        "120",
    ]);
    let report = assert_complete(&output, 600);
    assert_eq!(report["database"], "sqlite");
    assert_eq!(
        report["queued"], 600,
        "the server queued one delivery per webhook"
    );
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 1.0, "{report}");
    assert!(
        report["raw_http_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["deliveries_vs_raw"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("deliveries:"),
        "a human summary first: {stdout}"
    );
}

#[test]
fn a_backlog_run_holds_the_deliveries_pending_until_every_event_is_in() {
    let output = load(&[
        "--in-process",
        "--backlog",
        "--events",
        "100",
        "--webhooks",
        "2",
        "--concurrency",
        "4",
        "--raw-secs",
        "0",
        "--timeout-secs",
        "120",
    ]);
    let report = assert_complete(&output, 200);
    // While the receiver holds its answers, at most the per-webhook cap (8) of each webhook's
    // deliveries is leased; everything else waits pending.
    let pending = report["pending_at_gate"].as_u64().unwrap();
    assert!((200 - 16..=200).contains(&pending), "{report}");
    assert!(report["raw_http_per_sec"].is_null());
}

#[test]
fn a_receiver_that_takes_its_time_bounds_the_rate_by_the_attempts_in_flight() {
    let output = load(&[
        "--in-process",
        "--receiver-delay-ms",
        "50",
        "--events",
        "40",
        "--webhooks",
        "2",
        "--concurrency",
        "4",
        "--raw-secs",
        "0",
        "--timeout-secs",
        "120",
    ]);
    let report = assert_complete(&output, 80);
    assert_eq!(report["receiver_delay_ms"], 50, "{report}");
    // Each webhook has at most 8 attempts in flight (the per-webhook cap), each held 50 ms: the
    // 80 deliveries arrive in at least five waves, 200 ms from the first to the last, whatever
    // the machine's speed.
    let rate = report["deliveries_per_sec"].as_f64().unwrap();
    assert!(rate <= 80.0 / 0.2, "{report}");
}

fn server_config(dir: &tempfile::TempDir, workers: bool) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("smoke.db").display()),
        admin_token: Some("load-smoke-admin-token-0123456789".to_owned()),
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        workers,
        extra_events: vec!["load_generated".to_owned()],
        shutdown_grace_secs: 1.0,
        ..Config::default()
    }
}

/// Runs the load generator against a server started here, through `--server` and `--token`.
async fn against(server: &Server, extra: &[&str]) -> Output {
    let url = format!("http://{}", server.local_addr());
    let mut args: Vec<String> = [
        "--server",
        &url,
        "--token",
        "load-smoke-admin-token-0123456789",
        "--events",
        "50",
        "--webhooks",
        "2",
        "--concurrency",
        "4",
        "--raw-secs",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        load(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_is_loaded_through_its_url_and_its_memory_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(&dir, true)).await.unwrap();
    let output = against(&server, &["--timeout-secs", "120"]).await;
    let report = assert_complete(&output, 100);
    assert!(report["peak_rss_mib"].is_null(), "{report}");
    assert_eq!(report["mode"], "external");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_deliveries_are_counted_and_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // A server without delivery workers accepts the events and delivers nothing.
    let server = Server::start(server_config(&dir, false)).await.unwrap();
    let output = against(&server, &["--timeout-secs", "1"]).await;
    let report = report(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(report["missing"], 100, "{report}");
    assert_eq!(report["deliveries"], 0, "{report}");
    assert_eq!(report["timed_out"], true, "{report}");
    server.shutdown().await.unwrap();
}

#[test]
fn a_run_on_postgresql_delivers_everything() {
    let Ok(url) = std::env::var("MIA_WEBHOOKS_TEST_POSTGRES_URL") else {
        eprintln!("MIA_WEBHOOKS_TEST_POSTGRES_URL is not set: PostgreSQL run skipped");
        return;
    };
    let output = load(&[
        "--in-process",
        "--database-url",
        &url,
        "--events",
        "100",
        "--webhooks",
        "3",
        "--concurrency",
        "8",
        "--raw-secs",
        "0",
        "--timeout-secs",
        "120",
    ]);
    let report = assert_complete(&output, 300);
    assert_eq!(report["database"], "postgres");
}

#[test]
fn bad_command_lines_exit_with_2() {
    let output = load(&["--events", "10", "--webhooks", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 1"));
    let output = load(&[
        "--events",
        "10",
        "--webhooks",
        "1",
        "--server",
        "http://192.0.2.1:8080",
        "--token",
        "t",
    ]);
    assert_eq!(output.status.code(), Some(2));
}
