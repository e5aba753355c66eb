//! End-to-end delivery throughput: the worker loop (claim, sign, POST, record) with the in-memory
//! store and with SQLite, beside one plain reqwest client posting the same 1 KiB bodies to the
//! same local receiver at the same concurrency; then the head-of-line figure: a healthy
//! webhook's latency with and without a hanging webhook beside it.
//!
//! `cargo bench -p mia-webhooks-benches --bench delivery`
//!
//! The done-criterion of issue 4: the worker with SQLite reaches at least 40% of the raw rate.
//! A summary with the ratios is printed at the end; results go into `BENCHMARKS.md`.
//! Everything listens on and talks to 127.0.0.1 only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mia_webhooks_delivery::{DeliveryConfig, Dispatcher, Sender};
use mia_webhooks_model::{
    Event, EventCatalog, EventId, EventSet, Scope, Secret, TargetUrl, Timestamp, Webhook, WebhookId,
};
use mia_webhooks_store::{MemoryStore, NewEvent, SqliteStore, Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Deliveries per measured iteration.
const BATCH: usize = 6_400;
/// Webhooks the deliveries are spread over (each has the default per-webhook cap of 8).
const WEBHOOKS: usize = 64;
/// Attempts in flight: the worker's global cap, and the raw client's concurrency.
const CONCURRENCY: usize = 128;
/// Size of each event.
const EVENT_BYTES: usize = 1024;

/// A receiver that answers 200 at once and counts requests.
struct FastReceiver {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
    target: Arc<AtomicUsize>,
    reached: Arc<Notify>,
    /// Arrival times by the event's sequence number (head-of-line runs only).
    arrivals: Arc<Mutex<Option<HashMap<u64, Instant>>>>,
}

impl FastReceiver {
    async fn start() -> FastReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let target = Arc::new(AtomicUsize::new(usize::MAX));
        let reached = Arc::new(Notify::new());
        let arrivals: Arc<Mutex<Option<HashMap<u64, Instant>>>> = Arc::new(Mutex::new(None));
        let shared = (
            Arc::clone(&count),
            Arc::clone(&target),
            Arc::clone(&reached),
            Arc::clone(&arrivals),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let (count, target, reached, arrivals) = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let (count, target, reached, arrivals) = (
                                Arc::clone(&count),
                                Arc::clone(&target),
                                Arc::clone(&reached),
                                Arc::clone(&arrivals),
                            );
                            async move {
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                if let Some(map) = arrivals.lock().unwrap().as_mut() {
                                    if let Some(seq) = sequence_of(&body) {
                                        map.insert(seq, Instant::now());
                                    }
                                }
                                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                                if n == target.load(Ordering::SeqCst) {
                                    reached.notify_one();
                                }
                                Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FastReceiver {
            addr,
            count,
            target,
            reached,
            arrivals,
        }
    }

    /// Resets the count; `reached` fires when it gets to `target`.
    fn expect(&self, target: usize) {
        self.count.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// The sequence number in an event made by [`event`].
fn sequence_of(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("\"projectId\":\"p")? + "\"projectId\":\"p".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A 1 KiB `project_created` event with sequence number `seq`.
fn event(seq: u64) -> NewEvent {
    let head = format!(
        r#"{{"eventName":"project_created","eventTimestamp":1764374400000,"payload":{{"tenantId":"acme","projectId":"p{seq}","pad":""#
    );
    let tail = r#""}}"#;
    let mut bytes = head.into_bytes();
    bytes.resize(EVENT_BYTES - tail.len(), b'x');
    bytes.extend_from_slice(tail.as_bytes());
    let event = Event::parse(&bytes, &EventCatalog::built_in()).unwrap();
    NewEvent {
        id: EventId::new(),
        event,
    }
}

fn webhook(target: &str) -> Webhook {
    let now = Timestamp::now();
    Webhook {
        id: WebhookId::new(),
        scope: Scope::Instance,
        target_url: TargetUrl::new(target).unwrap(),
        secret: Secret::new("whsec_0123456789abcdef0123456789").unwrap(),
        events: EventSet::new(&["project_created"], &EventCatalog::built_in()).unwrap(),
        ca_certificate: None,
        proxy: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    }
}

fn config() -> DeliveryConfig {
    DeliveryConfig {
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        max_in_flight: CONCURRENCY,
        ..DeliveryConfig::default()
    }
}

/// The raw rate: one reqwest client, `CONCURRENCY` tasks, `BATCH` posts.
async fn raw(receiver: &FastReceiver, body: &Bytes) -> Duration {
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = reqwest::Url::parse(&receiver.url()).unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, url, body, next) =
            (client.clone(), url.clone(), body.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < BATCH {
                let response = client
                    .post(url.clone())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}

/// Queues `BATCH` deliveries over `WEBHOOKS` webhooks (not timed).
async fn fill<S: Store>(store: &S, receiver: &FastReceiver) {
    for _ in 0..WEBHOOKS {
        store
            .create_webhook(&webhook(&receiver.url()))
            .await
            .unwrap();
    }
    let events: Vec<NewEvent> = (0..(BATCH / WEBHOOKS) as u64).map(event).collect();
    let receipts = store.ingest(&events, Timestamp::now()).await.unwrap();
    assert_eq!(receipts.iter().map(|r| r.deliveries).sum::<usize>(), BATCH);
}

/// The worker's time to claim, send and record `BATCH` queued deliveries.
async fn worker<S: Store>(store: Arc<S>, receiver: &FastReceiver) -> Duration {
    fill(&*store, receiver).await;
    receiver.expect(BATCH);
    let config = config();
    let dispatcher =
        Dispatcher::new(Arc::clone(&store), Sender::new(&config).unwrap(), config).unwrap();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn(dispatcher.run(cancel.clone()));
    receiver.reached.notified().await;
    // Stopping writes the last results: the time includes recording every attempt.
    cancel.cancel();
    run.await.unwrap().unwrap();
    let elapsed = started.elapsed();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.succeeded, BATCH as u64,
        "every delivery recorded as succeeded"
    );
    elapsed
}

/// Deliveries per second, accumulated over all measured iterations of one benchmark.
#[derive(Default)]
struct Rate {
    deliveries: AtomicU64,
    nanos: AtomicU64,
}

impl Rate {
    fn add(&self, deliveries: usize, elapsed: Duration) {
        self.deliveries
            .fetch_add(deliveries as u64, Ordering::Relaxed);
        self.nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn per_second(&self) -> f64 {
        let nanos = self.nanos.load(Ordering::Relaxed).max(1) as f64;
        self.deliveries.load(Ordering::Relaxed) as f64 * 1e9 / nanos
    }
}

fn throughput(c: &mut Criterion, rt: &Runtime, receiver: &FastReceiver, rates: &[Rate; 3]) {
    let body = Bytes::from(event(0).event.into_bytes());
    let mut group = c.benchmark_group("delivery");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("raw_reqwest", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                receiver.expect(usize::MAX);
                let elapsed = rt.block_on(raw(receiver, &body));
                rates[0].add(BATCH, elapsed);
                total += elapsed;
            }
            total
        });
    });
    group.bench_function("worker_memory", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store = Arc::new(MemoryStore::new(StoreOptions::default()));
                let elapsed = rt.block_on(worker(store, receiver));
                rates[1].add(BATCH, elapsed);
                total += elapsed;
            }
            total
        });
    });
    group.bench_function("worker_sqlite", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("bench.db");
                let elapsed = rt.block_on(async {
                    let store = Arc::new(
                        SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
                            .await
                            .unwrap(),
                    );
                    let elapsed = worker(Arc::clone(&store), receiver).await;
                    store.close().await;
                    elapsed
                });
                rates[2].add(BATCH, elapsed);
                total += elapsed;
            }
            total
        });
    });
    group.finish();
}

/// Latencies (ingest to arrival) of a healthy webhook's deliveries, with SQLite, while events
/// come in at a steady pace; optionally beside a webhook whose receiver never answers.
async fn healthy_latencies(
    receiver: &FastReceiver,
    events: u64,
    with_hanging: bool,
) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hol.db");
    let store = Arc::new(
        SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap(),
    );
    let healthy = webhook(&receiver.url());
    store.create_webhook(&healthy).await.unwrap();
    // A receiver that accepts and never answers.
    let hanging_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_addr = hanging_listener.local_addr().unwrap();
    let hanging_task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hanging_listener.accept().await {
            held.push(stream);
        }
    });
    if with_hanging {
        let hanging = webhook(&format!("http://{hanging_addr}/hook"));
        store.create_webhook(&hanging).await.unwrap();
        for seq in 0..200 {
            store
                .ingest_for_webhook(&event(1_000_000 + seq), hanging.id, Timestamp::now())
                .await
                .unwrap();
        }
    }
    *receiver.arrivals.lock().unwrap() = Some(HashMap::new());
    receiver.expect(usize::MAX);

    let config = DeliveryConfig {
        max_in_flight: 16,
        attempt_timeout: Duration::from_secs(30),
        lease: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(100),
        ..config()
    };
    let dispatcher =
        Dispatcher::new(Arc::clone(&store), Sender::new(&config).unwrap(), config).unwrap();
    let handle = dispatcher.handle();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(dispatcher.run(cancel.clone()));
    // Let the hanging attempts start and occupy their slots.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut ingested = HashMap::new();
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    for seq in 0..events {
        pace.tick().await;
        ingested.insert(seq, Instant::now());
        store
            .ingest_for_webhook(&event(seq), healthy.id, Timestamp::now())
            .await
            .unwrap();
        handle.notify();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver
        .arrivals
        .lock()
        .unwrap()
        .as_ref()
        .map_or(0, HashMap::len)
        < events as usize
    {
        assert!(
            Instant::now() < deadline,
            "healthy deliveries stopped flowing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    run.await.unwrap().unwrap();
    hanging_task.abort();
    let arrivals = receiver.arrivals.lock().unwrap().take().unwrap();
    let mut latencies: Vec<Duration> = ingested
        .iter()
        .map(|(seq, at)| arrivals[seq].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    store.close().await;
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let full = std::env::args().any(|arg| arg == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver = rt.block_on(FastReceiver::start());
    let rates: [Rate; 3] = Default::default();

    throughput(&mut criterion, &rt, &receiver, &rates);
    criterion.final_summary();

    // Paired runs, raw then worker back to back, so that a noisy neighbour on the machine
    // moves both sides of each ratio alike; the median ratio is reported.
    let pairs = if full { 7 } else { 1 };
    let body = Bytes::from(event(0).event.into_bytes());
    let mut memory_ratios = Vec::new();
    let mut sqlite_ratios = Vec::new();
    for _ in 0..pairs {
        receiver.expect(usize::MAX);
        let raw_time = rt.block_on(raw(&receiver, &body));
        let memory_time = rt.block_on(worker(
            Arc::new(MemoryStore::new(StoreOptions::default())),
            &receiver,
        ));
        memory_ratios.push(raw_time.as_secs_f64() / memory_time.as_secs_f64());
        receiver.expect(usize::MAX);
        let raw_time = rt.block_on(raw(&receiver, &body));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired.db");
        let sqlite_time = rt.block_on(async {
            let store = Arc::new(
                SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
                    .await
                    .unwrap(),
            );
            let elapsed = worker(Arc::clone(&store), &receiver).await;
            store.close().await;
            elapsed
        });
        sqlite_ratios.push(raw_time.as_secs_f64() / sqlite_time.as_secs_f64());
    }

    // Alternating rounds, alone then beside a hanging webhook, for the same reason; each
    // round's p50 and p99 are kept and the medians reported.
    let (rounds, events) = if full { (5, 1_000) } else { (1, 50) };
    let mut alone = (Vec::new(), Vec::new());
    let mut beside = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (hanging, into) in [(false, &mut alone), (true, &mut beside)] {
            let latencies = rt.block_on(healthy_latencies(&receiver, events, hanging));
            into.0.push(percentile(&latencies, 0.5).as_secs_f64());
            into.1.push(percentile(&latencies, 0.99).as_secs_f64());
        }
    }

    let raw = rates[0].per_second();
    println!();
    println!(
        "summary (mean over measured iterations; {BATCH} deliveries of {EVENT_BYTES} B, {CONCURRENCY} in flight):"
    );
    println!("  raw reqwest      {raw:>9.0} /s");
    for (name, rate) in [("worker memory", &rates[1]), ("worker sqlite", &rates[2])] {
        let rate = rate.per_second();
        println!(
            "  {name:<16} {rate:>9.0} /s  ({:.0}% of raw)",
            100.0 * rate / raw
        );
    }
    println!(
        "  paired runs ({pairs}, median of worker/raw): memory {:.0}%, sqlite {:.0}%",
        100.0 * median(&mut memory_ratios),
        100.0 * median(&mut sqlite_ratios)
    );
    println!(
        "head-of-line (healthy webhook, SQLite, {events} events 2 ms apart, ingest to arrival, \
         median of {rounds} rounds):"
    );
    let ms = |seconds: f64| seconds * 1000.0;
    let (alone_p99, beside_p99) = (median(&mut alone.1), median(&mut beside.1));
    println!(
        "  alone                      p50 {:>6.2} ms  p99 {:>6.2} ms",
        ms(median(&mut alone.0)),
        ms(alone_p99)
    );
    println!(
        "  beside a hanging webhook   p50 {:>6.2} ms  p99 {:>6.2} ms",
        ms(median(&mut beside.0)),
        ms(beside_p99)
    );
    println!(
        "  p99 beside a hanging webhook / alone: {:.2}",
        beside_p99 / alone_p99
    );
}
