//! What the load generator sends: the webhooks it creates, the raw HTTP loop it measures the
//! machine with, and the events it posts through `POST /api/events`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::receiver::SEQ_KEY;

/// One HTTP/1 client with keep-alive, no proxy (everything is on 127.0.0.1).
pub(crate) fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")
}

/// Creates one instance webhook per secret, each targeting its own path on the receiver, and
/// returns their ids.
pub(crate) async fn create_webhooks(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    receiver: SocketAddr,
    secrets: &[Vec<u8>],
    event: &str,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(secrets.len());
    for (i, secret) in secrets.iter().enumerate() {
        let secret = String::from_utf8(secret.clone()).context("secrets are ASCII")?;
        let body = json!({
            "targetUrl": format!("http://{receiver}/hook/{i}"),
            "secret": secret,
            "events": [event],
            "description": "load generator",
        });
        let response = client
            .post(format!("{base}/api/webhooks"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .context("creating a webhook")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.as_u16() != 201 {
            bail!("creating a webhook answered {status}: {text}");
        }
        let value: Value = serde_json::from_str(&text).context("webhook response")?;
        let id = value["id"]
            .as_str()
            .context("webhook response without id")?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// Deletes the webhooks a run made on a server it did not start.
pub(crate) async fn delete_webhooks(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
) {
    for id in ids {
        let _ = client
            .delete(format!("{base}/api/webhooks/{id}"))
            .bearer_auth(token)
            .send()
            .await;
    }
}

/// The raw local HTTP rate: `concurrency` tasks posting signed 1 KiB-like bodies to the
/// receiver's `/raw` path for `seconds`, with a client like the load generator's. Returns
/// requests answered per second.
pub(crate) async fn raw_rate(
    receiver: SocketAddr,
    secret: &[u8],
    concurrency: usize,
    payload_bytes: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let client = client(concurrency)?;
    let body = event_body("raw_posted", 0, "raw", payload_bytes);
    let signature = mia_webhooks_signature::sign(&body, secret).to_string();
    let url = format!("http://{receiver}/raw");
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, body, signature, url, done) = (
            client.clone(),
            body.clone(),
            signature.clone(),
            url.clone(),
            Arc::clone(&done),
        );
        tasks.spawn(async move {
            while Instant::now() < until {
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(mia_webhooks_signature::HEADER_NAME, &signature)
                    .body(body.clone())
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// An event envelope of about `size` bytes: the sequence number and the run id inside the
/// payload, padded with `x`.
pub(crate) fn event_body(name: &str, seq: usize, run: &str, size: usize) -> Vec<u8> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let head = format!(
        r#"{{"eventName":"{name}","eventTimestamp":{ms},"payload":{{"{SEQ_KEY}":{seq},"loadRun":"{run}","padding":""#
    );
    let tail = r#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(head.len() + pad + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.resize(head.len() + pad, b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// How the events went in.
#[derive(Debug, Default)]
pub(crate) struct IngestOutcome {
    /// Events answered 202.
    pub(crate) accepted: usize,
    /// Events answered otherwise, or not at all.
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    /// Deliveries the server said it queued, summed.
    pub(crate) queued: usize,
    /// When the first request was sent and the last answer came, in ns since the run's base.
    pub(crate) first_sent_ns: u64,
    pub(crate) last_answer_ns: u64,
}

/// What the posting tasks share.
pub(crate) struct Emitter {
    pub(crate) client: reqwest::Client,
    pub(crate) urls: Vec<String>,
    pub(crate) token: String,
    pub(crate) event: String,
    pub(crate) run: String,
    pub(crate) events: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) base: Instant,
    /// When each event's request was sent, in ns since `base`.
    pub(crate) sent_ns: Vec<AtomicU64>,
    /// Events answered so far (for the progress line).
    pub(crate) answered: AtomicUsize,
    next: AtomicUsize,
}

impl Emitter {
    #[allow(clippy::too_many_arguments)] // reason: plain data, built once in main
    pub(crate) fn new(
        client: reqwest::Client,
        urls: Vec<String>,
        token: String,
        event: String,
        events: usize,
        payload_bytes: usize,
        rate: Option<f64>,
        base: Instant,
    ) -> Emitter {
        Emitter {
            client,
            urls,
            token,
            event,
            run: uuid::Uuid::new_v4().simple().to_string(),
            events,
            payload_bytes,
            rate,
            base,
            sent_ns: (0..events).map(|_| AtomicU64::new(0)).collect(),
            answered: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// Posts every event with `concurrency` tasks; event `i` goes to server `i % servers`.
    pub(crate) async fn run(self: &Arc<Self>, concurrency: usize) -> IngestOutcome {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let this = Arc::clone(self);
            tasks.spawn(async move { this.post_loop(start).await });
        }
        let mut outcome = IngestOutcome {
            first_sent_ns: u64::MAX,
            ..IngestOutcome::default()
        };
        while let Some(joined) = tasks.join_next().await {
            let Ok(part) = joined else { continue };
            outcome.accepted += part.accepted;
            outcome.errors += part.errors;
            outcome.queued += part.queued;
            outcome.first_error = outcome.first_error.or(part.first_error);
            outcome.first_sent_ns = outcome.first_sent_ns.min(part.first_sent_ns);
            outcome.last_answer_ns = outcome.last_answer_ns.max(part.last_answer_ns);
        }
        outcome
    }

    async fn post_loop(&self, start: Instant) -> IngestOutcome {
        let mut outcome = IngestOutcome {
            first_sent_ns: u64::MAX,
            ..IngestOutcome::default()
        };
        loop {
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            if seq >= self.events {
                return outcome;
            }
            if let Some(rate) = self.rate {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let body = event_body(&self.event, seq, &self.run, self.payload_bytes);
            let url = &self.urls[seq % self.urls.len()];
            let sent = self.base.elapsed().as_nanos() as u64;
            self.sent_ns[seq].store(sent, Ordering::Relaxed);
            outcome.first_sent_ns = outcome.first_sent_ns.min(sent);
            let result = self
                .client
                .post(format!("{url}/api/events"))
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let error = match result {
                Ok(response) if response.status().as_u16() == 202 => match response.bytes().await {
                    Ok(text) => {
                        let queued = serde_json::from_slice::<Value>(&text)
                            .ok()
                            .and_then(|v| v["deliveries"].as_u64())
                            .unwrap_or(0);
                        outcome.queued += queued as usize;
                        None
                    }
                    Err(err) => Some(format!("reading the answer: {err}")),
                },
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    Some(format!("{status}: {text}"))
                }
                Err(err) => Some(format!("{err}")),
            };
            match error {
                None => outcome.accepted += 1,
                Some(error) => {
                    outcome.errors += 1;
                    outcome.first_error.get_or_insert(error);
                }
            }
            outcome.last_answer_ns = self.base.elapsed().as_nanos() as u64;
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bodies_have_the_asked_size_and_parse() {
        for size in [200, 1024, 4096] {
            let body = event_body("load_generated", 123, "run", size);
            assert_eq!(body.len(), size);
            let value: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["payload"][SEQ_KEY], 123);
            assert_eq!(crate::receiver::sequence_of(&body), Some(123));
        }
        // Too small to pad: the envelope is as short as it can be.
        let body = event_body("load_generated", 5, "run", 10);
        assert!(serde_json::from_slice::<Value>(&body).is_ok());
    }
}
