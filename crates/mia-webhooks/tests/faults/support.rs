//! What the fault tests share: the server as a child process, a receiver that verifies every
//! signature, a load generator, a temporary PostgreSQL database, an RSS sampler and small API
//! helpers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mia-webhooks");
/// The instance-admin token every test server is started with.
pub(crate) const TOKEN: &str = "fault-tests-admin-token-0123456789";

/// The tests of this binary run one at a time: they measure timing (retry gaps, log rates,
/// memory) on a 2-core machine, and each one loads it on purpose.
pub(crate) async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A port that was free a moment ago (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every `every` until it returns `Some` or `within` has passed.
pub(crate) async fn poll<T, F, Fut>(within: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Lines the server wrote on stderr, each with the moment it was read.
pub(crate) type Logs = Arc<Mutex<Vec<(Instant, String)>>>;

/// `mia-webhooks` (no subcommand: `serve`) as a child process.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) logs: Logs,
}

impl Server {
    /// Starts the server in `dir` on a fresh port with `env` on top of a clean `MIA_WEBHOOKS_*`
    /// environment (plus the admin token, 127.0.0.0/8 allowed and warnings-only JSON logs), and
    /// waits until `/healthz` answers.
    pub(crate) async fn start(dir: &Path, env: &[(&str, String)]) -> Server {
        let port = free_port();
        let mut command = Command::new(BIN);
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("MIA_WEBHOOKS_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .env("RUST_LOG", "warn")
            .env("MIA_WEBHOOKS_LOG_FORMAT", "json")
            .env("MIA_WEBHOOKS_LISTEN", format!("127.0.0.1:{port}"))
            .env("MIA_WEBHOOKS_ADMIN_TOKEN", TOKEN)
            .env("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let logs: Logs = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            logs,
        };
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", server.base);
        let started = poll(Duration::from_secs(60), Duration::from_millis(25), || {
            let request = client.get(&url).timeout(Duration::from_secs(2)).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        if started.is_none() {
            let exited = server.child.try_wait().unwrap();
            panic!(
                "the server did not answer /healthz within 60 s (exit: {exited:?})\n{}",
                server.log_tail(40)
            );
        }
        server
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits (bounded) for the exit status.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        crate::common::terminate(&mut self.child, Duration::from_secs(40))
    }

    /// The last `n` lines of stderr, for failure messages.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let logs = self.logs.lock().unwrap();
        let start = logs.len().saturating_sub(n);
        logs[start..]
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server stderr (last lines) ---\n{}", self.log_tail(30));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small client of the REST API with the admin token.
#[derive(Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    pub(crate) base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_owned(),
        }
    }

    /// GET, expecting 200 and JSON.
    pub(crate) async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status.as_u16(), 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// POST JSON; the status and the JSON answer.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    /// Creates an instance webhook; its id.
    pub(crate) async fn create_webhook(&self, target: &str, secret: &str, event: &str) -> String {
        let (status, created) = self
            .post(
                "/api/webhooks",
                &json!({"targetUrl": target, "secret": secret, "events": [event]}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// Every delivery of a webhook (all pages), optionally of one status.
    pub(crate) async fn deliveries(&self, webhook: &str, status: Option<&str>) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/webhooks/{webhook}/deliveries?limit=100");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get(&path).await;
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    /// The value of one Prometheus sample of `/metrics`, such as
    /// `mia_webhooks_deliveries{status="failed"}`.
    pub(crate) async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(sample)?;
            rest.trim().parse().ok()
        })
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time such as
/// `2025-01-02T03:04:05.678Z` (what the API writes).
pub(crate) fn epoch_ms(text: &str) -> i64 {
    let (date, time) = text.split_once('T').unwrap();
    let time = time.strip_suffix('Z').unwrap();
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        ymd.next().unwrap(),
        ymd.next().unwrap(),
        ymd.next().unwrap(),
    );
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().unwrap());
    let (hh, mm, ss) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().unwrap();
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    /// The last path segment: which webhook it was sent to.
    pub(crate) hook: String,
    /// `X-Mia-Delivery`.
    pub(crate) delivery: String,
    /// `payload.seq` of the event, when it has one.
    pub(crate) seq: Option<u64>,
    pub(crate) at: Instant,
    /// Whether `X-Mia-Signature` matched the hook's secret.
    pub(crate) signature_ok: bool,
}

#[derive(Clone)]
struct ReceiverState {
    secrets: Arc<HashMap<String, String>>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

/// A receiver on 127.0.0.1 that answers 204 to `POST /hook/{name}` and records every request,
/// checking its signature against the secret of `name`. It can go down (its listener is
/// closed: connections are refused) and come back on the same port.
pub(crate) struct Receiver {
    addr: SocketAddr,
    state: ReceiverState,
    running: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Receiver {
    /// A receiver that is down: its port was bound and released.
    pub(crate) fn down(secrets: &[(&str, &str)]) -> Receiver {
        let secrets = secrets
            .iter()
            .map(|(name, secret)| ((*name).to_owned(), (*secret).to_owned()))
            .collect();
        Receiver {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            state: ReceiverState {
                secrets: Arc::new(secrets),
                arrivals: Arc::default(),
            },
            running: None,
        }
    }

    /// A receiver that is up.
    pub(crate) async fn up(secrets: &[(&str, &str)]) -> Receiver {
        let mut receiver = Receiver::down(secrets);
        receiver.start().await;
        receiver
    }

    /// The URL of hook `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    /// Starts listening on its port again.
    pub(crate) async fn start(&mut self) {
        assert!(self.running.is_none());
        let mut listener = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = listener.expect("the receiver's port can be bound again");
        let app = axum::Router::new()
            .route("/hook/{name}", axum::routing::post(receive))
            .with_state(self.state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        self.running = Some((stop, task));
    }

    /// Closes the listener and every connection (idle keep-alive ones included): from now on
    /// connections are refused.
    pub(crate) async fn stop(&mut self) {
        let (stop, task) = self.running.take().expect("the receiver is running");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the receiver stops within 10 s")
            .unwrap();
    }

    /// A copy of everything received so far.
    pub(crate) fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub(crate) fn count(&self) -> usize {
        self.state.arrivals.lock().unwrap().len()
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let signature_ok = match (state.secrets.get(&name), header("x-mia-signature")) {
        (Some(secret), Some(signature)) => {
            mia_webhooks_signature::verify(&body, secret.as_bytes(), &signature).is_ok()
        }
        _ => false,
    };
    let seq = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["payload"]["seq"].as_u64());
    state.arrivals.lock().unwrap().push(Arrival {
        hook: name,
        delivery: header("x-mia-delivery").unwrap_or_default(),
        seq,
        at: Instant::now(),
        signature_ok,
    });
    StatusCode::NO_CONTENT
}

/// Posts events continuously to whichever server `base` names at the moment, from a few
/// tasks; records which events were acknowledged (202).
pub(crate) struct Loader {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
    acked: Arc<Mutex<Vec<u64>>>,
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) refused: Arc<AtomicU64>,
    /// The status of every answer other than 202, or 0 when no answer came.
    pub(crate) refusals: Arc<Mutex<Vec<u16>>>,
}

impl Loader {
    /// `tasks` tasks, each posting one event `event` (with a unique `payload.seq`) after the
    /// other, pausing `pause` between posts and a little longer after a failure.
    pub(crate) fn start(
        base: Arc<RwLock<String>>,
        event: &str,
        tasks: usize,
        pause: Duration,
    ) -> Loader {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sent = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let refusals: Arc<Mutex<Vec<u16>>> = Arc::default();
        let next = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut set = JoinSet::new();
        for _ in 0..tasks {
            let (stop, acked, sent, refused, refusals, next, base, client) = (
                stop.clone(),
                acked.clone(),
                sent.clone(),
                refused.clone(),
                refusals.clone(),
                next.clone(),
                base.clone(),
                client.clone(),
            );
            let event = event.to_owned();
            set.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    let url = format!("{}/api/events", base.read().unwrap());
                    let body = json!({
                        "eventName": event,
                        "eventTimestamp": seq,
                        "payload": {"seq": seq, "text": "x".repeat(200)},
                    });
                    sent.fetch_add(1, Ordering::Relaxed);
                    let status = match client.post(url).bearer_auth(TOKEN).json(&body).send().await
                    {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    if status == 202 {
                        acked.lock().unwrap().push(seq);
                        tokio::time::sleep(pause).await;
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                        refusals.lock().unwrap().push(status);
                        tokio::time::sleep(pause.max(Duration::from_millis(100))).await;
                    }
                }
            });
        }
        Loader {
            stop,
            tasks: set,
            acked,
            sent,
            refused,
            refusals,
        }
    }

    /// How many events were acknowledged so far.
    pub(crate) fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops posting and returns the acknowledged events.
    pub(crate) async fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(result) = self.tasks.join_next().await {
            result.unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Samples `VmRSS` of a process every 100 ms until stopped.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        RssSampler { stop, thread }
    }

    /// The samples, in KiB.
    pub(crate) fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The admin URL of the test PostgreSQL server, or `None` (with the skip message CI looks for)
/// when it is not set.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("MIA_WEBHOOKS_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("postgres tests skipped: MIA_WEBHOOKS_TEST_POSTGRES_URL not set");
            None
        }
    }
}

/// A database created for one test and dropped after it.
pub(crate) struct TempDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub(crate) url: url::Url,
}

impl TempDatabase {
    /// Creates a fresh database next to the one `admin_url` names; fails loudly when the
    /// server cannot be reached.
    pub(crate) fn create(admin_url: &str, prefix: &str) -> TempDatabase {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("{prefix}_{nanos:x}{:x}", std::process::id());
        psql(admin_url, &format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        TempDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql} (is MIA_WEBHOOKS_TEST_POSTGRES_URL reachable?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
