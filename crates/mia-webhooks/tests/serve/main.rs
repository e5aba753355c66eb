//! The binary as an operator runs it: `serve` with the defaults, `token create`, `emit`, a
//! graceful stop on SIGTERM, and two processes sharing one PostgreSQL database; configuration
//! from a file and the environment (`config`), `migrate` and `emit` (`commands`), and what the
//! logs never show (`logs`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

mod commands;
#[path = "../common/mod.rs"]
mod common;
mod config;
mod logs;

const BIN: &str = env!("CARGO_BIN_EXE_mia-webhooks");
const SECRET: &str = "binary-test-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Child,
    base: String,
    port: u16,
}

/// How to start a server process beyond its directory and environment.
#[derive(Default)]
struct Options<'a> {
    /// Arguments before the (default) subcommand, such as `--config FILE`.
    args: &'a [&'a str],
    /// Keep the log lines (standard error) instead of dropping them.
    logs: bool,
}

impl Proc {
    /// Starts `mia-webhooks` with no subcommand in `dir`, with `env` on top of a clean
    /// `MIA_WEBHOOKS_*` environment, and waits for `/healthz`.
    fn start(dir: &Path, env: &[(&str, String)]) -> (Proc, std::process::ChildStdout) {
        let (proc, stdout, _) = Proc::start_with(dir, env, Options::default());
        (proc, stdout)
    }

    /// [`Proc::start`] with `options`; the third value is standard error when `options.logs`.
    fn start_with(
        dir: &Path,
        env: &[(&str, String)],
        options: Options<'_>,
    ) -> (
        Proc,
        std::process::ChildStdout,
        Option<std::process::ChildStderr>,
    ) {
        let port = free_port();
        let mut command = Command::new(BIN);
        command
            .current_dir(dir)
            .args(options.args)
            .stdout(Stdio::piped())
            .stderr(if options.logs {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        clean_env(&mut command);
        command.env("MIA_WEBHOOKS_LISTEN", format!("127.0.0.1:{port}"));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take();
        let mut proc = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (proc, stdout, stderr);
            }
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!("the server exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not start listening");
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        common::terminate(&mut self.child, Duration::from_secs(30))
    }
}

/// Removes the caller's `MIA_WEBHOOKS_*` settings and `RUST_LOG`, so a child runs with only
/// what the test gives it (and logs at the default level).
fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("MIA_WEBHOOKS_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
}

/// Runs the binary with `args` and `env` on a clean environment, in `dir`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.current_dir(dir).args(args);
    clean_env(&mut command);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// Reads `pipe` to its end on a thread: the child never blocks on a full pipe.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The instance-admin token the first start on an empty database prints, alone on its line.
fn bootstrap_token(stdout: std::process::ChildStdout) -> String {
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("mwh_"))
        .expect("a bootstrap token is printed")
}

/// Creates a webhook for `events` at instance scope through the API; returns its id.
async fn create_webhook(base: &str, token: &str, target: &str, events: &[&str]) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/webhooks"))
        .bearer_auth(token)
        .json(&json!({"targetUrl": target, "secret": SECRET, "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                seen.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn wait_for(seen: &Seen, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while seen.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_defaults_bootstrap_a_token_deliver_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, stdout) = Proc::start(
        dir.path(),
        &[("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8".into())],
    );
    // The first start on an empty database prints a token, alone on its line.
    let token = bootstrap_token(stdout);
    assert!(
        dir.path().join("mia-webhooks.db").exists(),
        "the default SQLite file is ./mia-webhooks.db"
    );

    let (target, seen) = receiver().await;
    let client = reqwest::Client::new();
    create_webhook(&proc.base, &token, &target, &["project_created"]).await;

    // `emit` posts an event through the API.
    let out = Command::new(BIN)
        .args([
            "emit",
            "--server",
            &proc.base,
            "--token",
            &token,
            "--event",
            "project_created",
        ])
        .args(["--payload", r#"{"tenantId":"acme","projectId":"p1"}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["deliveries"], 1);

    wait_for(&seen, 1, Duration::from_secs(20)).await;
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let signature = headers["x-mia-signature"].to_str().unwrap();
    mia_webhooks_signature::verify(&body, SECRET.as_bytes(), signature).unwrap();
    // The binary's own verify agrees.
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&payload_file, &body).unwrap();
    let out = Command::new(BIN)
        .args(["verify", "--secret-file"])
        .arg(&secret_file)
        .args(["--signature", signature])
        .arg(&payload_file)
        .output()
        .unwrap();
    assert!(out.status.success());

    let status = proc.terminate();
    assert!(
        status.success(),
        "SIGTERM stops the server cleanly: {status}"
    );

    // A second start on the same database keeps the data and prints no new token.
    let (proc, stdout) = Proc::start(dir.path(), &[]);
    let list: Value = client
        .get(format!("{}/api/webhooks", proc.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(proc.terminate().success());
    let printed: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(
        !printed.iter().any(|l| l.starts_with("mwh_")),
        "no second bootstrap token: {printed:?}"
    );
}

#[test]
fn token_create_prints_the_token_alone_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--role",
            "company-admin",
            "--tenant",
            "acme",
        ])
        .env("MIA_WEBHOOKS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("mwh_") && !last.contains(' '), "{stdout}");

    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--role",
            "project-admin",
            "--tenant",
            "acme",
        ])
        .env("MIA_WEBHOOKS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("projectId"));
}

/// Two server processes on one PostgreSQL database share the work: every delivery arrives,
/// none is sent twice (a healthy receiver means no lease ever expires), and each process's
/// `/metrics` shows it made a share of the attempts.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_postgres_database_share_the_work() {
    let Ok(admin_url) = std::env::var("MIA_WEBHOOKS_TEST_POSTGRES_URL") else {
        eprintln!("postgres tests skipped: MIA_WEBHOOKS_TEST_POSTGRES_URL not set");
        return;
    };
    let name = format!("mwh_two_{}", uuid_like());
    psql(&admin_url, &format!("CREATE DATABASE {name}"));
    let url = replace_database(&admin_url, &name);
    let dir = tempfile::tempdir().unwrap();
    let token = "two-process-admin-token-0123456789";
    let env = [
        ("MIA_WEBHOOKS_DATABASE_URL", url.clone()),
        ("MIA_WEBHOOKS_ADMIN_TOKEN", token.to_owned()),
        ("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8".to_owned()),
        (
            "MIA_WEBHOOKS_EXTRA_EVENTS",
            "project_deleted,configuration_created".to_owned(),
        ),
    ];
    let (a, _) = Proc::start(dir.path(), &env);
    let (b, _) = Proc::start(dir.path(), &env);
    let (target, seen) = receiver().await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/api/webhooks", a.base))
        .bearer_auth(token)
        .json(&json!({"targetUrl": target, "secret": SECRET, "events": ["project_deleted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);

    let events = 2_000;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let client = client.clone();
        let bases = [a.base.clone(), b.base.clone()];
        tasks.spawn(async move {
            for i in (worker..events).step_by(8) {
                let base = &bases[i % 2];
                let body = json!({"eventName": "project_deleted", "eventTimestamp": i, "payload": {"i": i}});
                let response = client.post(format!("{base}/api/events")).bearer_auth(token).json(&body).send().await.unwrap();
                assert_eq!(response.status().as_u16(), 202);
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    wait_for(&seen, events, Duration::from_secs(120)).await;
    let seen = seen.lock().unwrap().clone();
    let mut by_delivery: HashMap<String, usize> = HashMap::new();
    let mut by_event: HashMap<u64, usize> = HashMap::new();
    for (headers, body) in &seen {
        mia_webhooks_signature::verify(
            body,
            SECRET.as_bytes(),
            headers["x-mia-signature"].to_str().unwrap(),
        )
        .unwrap();
        *by_delivery
            .entry(headers["x-mia-delivery"].to_str().unwrap().to_owned())
            .or_default() += 1;
        let value: Value = serde_json::from_slice(body).unwrap();
        *by_event
            .entry(value["payload"]["i"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert_eq!(by_event.len(), events, "every event arrives");
    assert!(
        by_delivery.values().all(|&n| n == 1),
        "no delivery is sent twice"
    );

    // Each process counts the attempts it made: both made some, and together exactly one per
    // delivery. A process records its attempt just after the receiver answers, so the counts
    // may trail the arrivals for a moment.
    let attempts = "mia_webhooks_attempts_total{outcome=\"success\"}";
    let succeeded = "mia_webhooks_deliveries_total{outcome=\"succeeded\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let mut counts = Vec::new();
        for proc in [&a, &b] {
            let text = client
                .get(format!("{}/metrics", proc.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            counts.push((metric(&text, attempts), metric(&text, succeeded)));
        }
        let done = counts.iter().map(|c| c.1).sum::<u64>() >= events as u64;
        if done || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let [(attempts_a, succeeded_a), (attempts_b, succeeded_b)] = counts[..] else {
        unreachable!()
    };
    assert!(
        attempts_a > 0 && attempts_b > 0,
        "both processes deliver: {attempts_a} and {attempts_b} attempts"
    );
    assert_eq!(
        attempts_a + attempts_b,
        events as u64,
        "one attempt per delivery"
    );
    assert_eq!(
        (succeeded_a, succeeded_b),
        (attempts_a, attempts_b),
        "every attempt succeeded"
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    psql(&admin_url, &format!("DROP DATABASE {name} WITH (FORCE)"));
}

/// The value of the sample `name` (with its labels) in a Prometheus text exposition; 0 when
/// absent, as for a counter never incremented.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}
