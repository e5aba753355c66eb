//! Database outage on PostgreSQL: the server reaches the database through a TCP proxy that
//! cuts every connection and refuses new ones for 10 s. The server stays up, `/readyz` follows
//! the database, the log stays quiet, and every acknowledged event is delivered afterwards.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::support::{Api, Loader, Receiver, Server, TempDatabase, exclusive, poll, postgres_url};

const SECRET: &str = "database-outage-secret";
const EVENT: &str = "outage_tested";
const OUTAGE: Duration = Duration::from_secs(10);

/// A TCP proxy on 127.0.0.1 to the database that can be cut: every connection through it is
/// closed and its port refuses connections until it is restored.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, watch) = watch::channel(true);
        tokio::spawn(serve(Some(listener), addr, upstream, watch));
        Proxy { addr, up }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

async fn serve(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut up: watch::Receiver<bool>,
) {
    loop {
        let bound = match listener.take() {
            Some(bound) => bound,
            None => rebind(addr).await,
        };
        let mut pipes = JoinSet::new();
        loop {
            tokio::select! {
                accepted = bound.accept() => {
                    if let Ok((client, _)) = accepted {
                        pipes.spawn(pipe(client, upstream));
                    }
                }
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*up.borrow_and_update() {
                        break;
                    }
                }
                Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
            }
        }
        // Cut: nothing listens any more (connections are refused) and both sides of every
        // open connection are closed.
        drop(bound);
        pipes.shutdown().await;
        while !*up.borrow_and_update() {
            if up.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy cannot listen on {addr} again");
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// The status of `/readyz`, or `None` when it does not answer within 3 s.
async fn readyz(client: &reqwest::Client, base: &str) -> Option<u16> {
    let response = client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Whether a log line was written because of a request (an API call that failed on the
/// database, a readiness probe), rather than by a background loop on its own.
fn caused_by_a_request(line: &Value) -> bool {
    let target = line["target"].as_str().unwrap_or_default();
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    target.starts_with("tower_http")
        || message == "internal error"
        || message == "database unavailable"
        || message == "readiness check failed"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_cut_for_10_s_leaves_the_server_up_and_loses_no_acknowledged_event() {
    let _serial = exclusive().await;
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let database = TempDatabase::create(&admin_url, "mwh_db_outage");
    let host = database.url.host_str().unwrap().to_owned();
    let ip = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    let upstream: SocketAddr = format!("{ip}:{}", database.url.port().unwrap_or(5432))
        .parse()
        .expect("MIA_WEBHOOKS_TEST_POSTGRES_URL names a loopback IP or localhost");
    assert!(upstream.ip().is_loopback(), "tests talk to 127.0.0.1 only");
    let proxy = Proxy::start(upstream).await;
    let mut url = database.url.clone();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::up(&[("r", SECRET)]).await;
    let mut server = Server::start(
        dir.path(),
        &[
            ("MIA_WEBHOOKS_DATABASE_URL", url.to_string()),
            ("MIA_WEBHOOKS_EXTRA_EVENTS", EVENT.to_owned()),
            (
                "MIA_WEBHOOKS_RETRY_SCHEDULE_SECS",
                "0.2,0.5,1,2,4".to_owned(),
            ),
        ],
    )
    .await;
    let api = Api::new(&server.base);
    api.create_webhook(&receiver.url("r"), SECRET, EVENT).await;
    let base = Arc::new(RwLock::new(server.base.clone()));
    let loader = Loader::start(base, EVENT, 2, Duration::from_millis(20));

    // Healthy first.
    poll(Duration::from_secs(30), Duration::from_millis(20), || {
        let ready = loader.acked_count() >= 20 && receiver.count() >= 20;
        async move { ready.then_some(()) }
    })
    .await
    .expect("events are acknowledged and delivered before the outage");
    let client = reqwest::Client::new();
    assert_eq!(readyz(&client, &server.base).await, Some(200));

    proxy.cut();
    let cut_at = Instant::now();
    let sent_before = loader.sent.load(Ordering::Relaxed);
    let acked_before = loader.acked_count();
    let mut during = Vec::new();
    while cut_at.elapsed() < OUTAGE {
        let status = readyz(&client, &server.base).await;
        during.push((cut_at.elapsed(), status));
        assert!(server.alive(), "the server died during the outage");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.restore();
    let restored_at = Instant::now();
    let requests_during = loader.sent.load(Ordering::Relaxed) - sent_before + during.len() as u64;
    let acked_during = loader.acked_count() - acked_before;
    assert!(
        during.iter().any(|(_, status)| *status == Some(503)),
        "/readyz never answered 503 during the outage: {during:?}"
    );

    let ready_again = poll(Duration::from_secs(60), Duration::from_millis(100), || {
        let client = client.clone();
        let base = server.base.clone();
        async move { (readyz(&client, &base).await == Some(200)).then_some(()) }
    })
    .await;
    assert!(
        ready_again.is_some(),
        "/readyz is not 200 within 60 s of the restore"
    );
    let ready_after = restored_at.elapsed();
    assert!(server.alive());

    // Load after the outage, then every acknowledged event must arrive.
    let acked = loader.acked_count();
    poll(Duration::from_secs(60), Duration::from_millis(20), || {
        let ready = loader.acked_count() >= acked + 20;
        async move { ready.then_some(()) }
    })
    .await
    .expect("events are acknowledged again after the outage");
    let refused = loader.refused.load(Ordering::Relaxed);
    // Refused during the outage: 503 (nothing stored, send again), never a 500 and never a
    // request left hanging until the client gives up (0).
    let refusals = loader.refusals.lock().unwrap().clone();
    assert!(
        !refusals.is_empty(),
        "no ingest request was refused during the outage"
    );
    assert!(
        refusals.iter().all(|status| *status == 503),
        "ingest answers during the outage other than 503: {refusals:?}"
    );
    let acked: HashSet<u64> = loader.stop().await.into_iter().collect();
    let delivered = poll(Duration::from_secs(60), Duration::from_millis(100), || {
        let seen: HashSet<u64> = receiver.arrivals().iter().filter_map(|a| a.seq).collect();
        let done = acked.iter().all(|seq| seen.contains(seq));
        async move { done.then_some(()) }
    })
    .await;
    let delivered_after = restored_at.elapsed();
    let arrivals = receiver.arrivals();
    let seen: HashSet<u64> = arrivals.iter().filter_map(|a| a.seq).collect();
    let missing: Vec<_> = acked.iter().filter(|s| !seen.contains(s)).collect();
    assert!(
        delivered.is_some(),
        "acknowledged events not delivered: {missing:?}"
    );
    assert!(arrivals.iter().all(|a| a.signature_ok));

    // The log during the outage: bounded, and what the loops write on their own is small.
    let lines: Vec<Value> = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= cut_at && *at <= restored_at)
        .map(|(_, line)| serde_json::from_str(line).unwrap_or(Value::Null))
        .collect();
    let background: Vec<&Value> = lines.iter().filter(|l| !caused_by_a_request(l)).collect();
    let by_requests = lines.len() - background.len();
    let secs = OUTAGE.as_secs_f64();
    eprintln!(
        "database outage: {} log lines in {secs} s ({} from {requests_during} failed requests, {} \
         from background loops: {:?}); /readyz during: {:?}; ready {ready_after:.1?} and all \
         delivered {delivered_after:.1?} after the restore; {} events acknowledged ({} during \
         the outage), {refused} not",
        lines.len(),
        by_requests,
        background.len(),
        background
            .iter()
            .map(|l| l["fields"]["message"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        during.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        acked.len(),
        acked_during,
    );
    assert!(
        background.len() < 50,
        "the background loops logged {} lines in {secs} s: {background:#?}",
        background.len()
    );
    assert!(
        by_requests as u64 <= 3 * requests_during + 10,
        "{by_requests} lines for {requests_during} requests"
    );
    assert!(server.terminate().success());
}
