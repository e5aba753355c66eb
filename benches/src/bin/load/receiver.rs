//! The receiver: a hyper server on 127.0.0.1 that checks every `X-Mia-Signature` and records
//! when each (event, webhook) pair arrived, answering 204 (at once unless told to wait).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The JSON key of the sequence number inside each event's payload.
pub(crate) const SEQ_KEY: &str = "loadSeq";

/// What the receiver saw. Arrival times are nanoseconds since `base`, plus one (0: not yet).
pub(crate) struct Tally {
    pub(crate) base: Instant,
    pub(crate) events: usize,
    pub(crate) webhooks: usize,
    secrets: Vec<Vec<u8>>,
    raw_secret: Vec<u8>,
    /// Index `seq * webhooks + webhook`.
    arrivals: Vec<AtomicU64>,
    pub(crate) received: AtomicUsize,
    pub(crate) duplicates: AtomicUsize,
    pub(crate) bad_signature: AtomicUsize,
    /// Requests for no known webhook or event (wrong path, no sequence number).
    pub(crate) unexpected: AtomicUsize,
    pub(crate) raw: AtomicUsize,
    /// Requests held by the backlog gate right now.
    pub(crate) held: AtomicUsize,
    /// Fires when `received` reaches `target`.
    target: AtomicUsize,
    pub(crate) reached: Notify,
    /// Closed while a backlog builds up: requests wait until it is cancelled (opened).
    gate: Option<CancellationToken>,
    /// How long each delivery is held before its answer (not the raw loop's requests).
    delay: Duration,
}

impl Tally {
    pub(crate) fn new(
        base: Instant,
        events: usize,
        secrets: Vec<Vec<u8>>,
        raw_secret: Vec<u8>,
        gate: Option<CancellationToken>,
        delay: Duration,
    ) -> Tally {
        let webhooks = secrets.len();
        Tally {
            base,
            events,
            webhooks,
            secrets,
            raw_secret,
            arrivals: (0..events * webhooks).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            bad_signature: AtomicUsize::new(0),
            unexpected: AtomicUsize::new(0),
            raw: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            reached: Notify::new(),
            gate,
            delay,
        }
    }

    /// `reached` fires once `received` gets to `target` (at once if it is there already).
    pub(crate) fn expect(&self, target: usize) {
        self.target.store(target, Ordering::SeqCst);
        if self.received.load(Ordering::SeqCst) >= target {
            self.reached.notify_one();
        }
    }

    /// The secret of the raw HTTP loop's requests.
    pub(crate) fn raw_secret(&self) -> &[u8] {
        &self.raw_secret
    }

    /// When the delivery of event `seq` to webhook `webhook` first arrived, in nanoseconds since
    /// `base`.
    pub(crate) fn arrival(&self, seq: usize, webhook: usize) -> Option<u64> {
        match self.arrivals[seq * self.webhooks + webhook].load(Ordering::Relaxed) {
            0 => None,
            at => Some(at - 1),
        }
    }

    fn handle(&self, path: &str, signature: Option<&str>, body: &[u8]) {
        if path == "/raw" {
            if check_signature(body, &self.raw_secret, signature) {
                self.raw.fetch_add(1, Ordering::Relaxed);
            } else {
                self.bad_signature.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let Some(webhook) = path
            .strip_prefix("/hook/")
            .and_then(|w| w.parse::<usize>().ok())
            .filter(|w| *w < self.webhooks)
        else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !check_signature(body, &self.secrets[webhook], signature) {
            self.bad_signature.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(seq) = sequence_of(body).filter(|s| *s < self.events) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let at = self.base.elapsed().as_nanos() as u64 + 1;
        let slot = &self.arrivals[seq * self.webhooks + webhook];
        if slot
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.target.load(Ordering::SeqCst) {
                self.reached.notify_one();
            }
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn check_signature(body: &[u8], secret: &[u8], header: Option<&str>) -> bool {
    header.is_some_and(|h| mia_webhooks_signature::verify(body, secret, h).is_ok())
}

/// The sequence number in an event body: the digits after `"loadSeq":`.
pub(crate) fn sequence_of(body: &[u8]) -> Option<usize> {
    let key = format!("\"{SEQ_KEY}\":");
    let start = body.windows(key.len()).position(|w| w == key.as_bytes())? + key.len();
    let digits = body[start..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit());
    let mut value: usize = 0;
    let mut any = false;
    for digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(usize::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Starts the receiver on 127.0.0.1 and returns its address.
pub(crate) async fn start(tally: Arc<Tally>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tally = Arc::clone(&tally);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tally = Arc::clone(&tally);
                    async move { Ok::<_, Infallible>(answer(&tally, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(tally: &Tally, req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let path = req.uri().path().to_owned();
    let signature = req
        .headers()
        .get(mia_webhooks_signature::HEADER_NAME)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    if let Some(gate) = &tally.gate {
        if !gate.is_cancelled() && path != "/raw" {
            tally.held.fetch_add(1, Ordering::Relaxed);
            gate.cancelled().await;
            tally.held.fetch_sub(1, Ordering::Relaxed);
        }
    }
    tally.handle(&path, signature.as_deref(), &body);
    if !tally.delay.is_zero() && path != "/raw" {
        tokio::time::sleep(tally.delay).await;
    }
    status(StatusCode::NO_CONTENT)
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_number_is_found_in_an_event() {
        let check = |body: &str, want: Option<usize>| {
            assert_eq!(sequence_of(body.as_bytes()), want, "{body}")
        };
        check(r#"{"payload":{"loadSeq":42,"pad":"x"}}"#, Some(42));
        check(r#"{"payload":{"loadSeq": 7}}"#, Some(7));
        check(r#"{"payload":{"loadSeq":"7"}}"#, None);
        check(r#"{"payload":{}}"#, None);
        check(r#"{"loadSeq":99999999999999999999999999}"#, None);
    }

    #[test]
    fn deliveries_are_counted_once_and_signatures_checked() {
        let secrets = vec![b"first-secret".to_vec(), b"second-secret".to_vec()];
        let tally = Tally::new(
            Instant::now(),
            3,
            secrets,
            b"raw".to_vec(),
            None,
            Duration::ZERO,
        );
        let body = br#"{"payload":{"loadSeq":2}}"#;
        let good = mia_webhooks_signature::sign(body, b"second-secret").to_string();
        let wrong = mia_webhooks_signature::sign(body, b"first-secret").to_string();
        tally.handle("/hook/1", Some(&good), body);
        tally.handle("/hook/1", Some(&good), body);
        tally.handle("/hook/1", Some(&wrong), body);
        tally.handle("/hook/1", None, body);
        tally.handle("/hook/7", Some(&good), body);
        assert_eq!(tally.received.load(Ordering::SeqCst), 1);
        assert_eq!(tally.duplicates.load(Ordering::SeqCst), 1);
        assert_eq!(tally.bad_signature.load(Ordering::SeqCst), 2);
        assert_eq!(tally.unexpected.load(Ordering::SeqCst), 1);
        assert!(tally.arrival(2, 1).is_some());
        assert!(tally.arrival(2, 0).is_none());
    }
}
