//! The HTTP sender: one signed `POST` per attempt, through a cached client per (CA, proxy).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use mia_webhooks_model::{Attempt, CaCertificate, FailureKind, ProxyUrl, Timestamp};
use mia_webhooks_store::ClaimedDelivery;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Request, Response};
use tracing::Instrument as _;

use crate::classify::{self, Context, Failure};
use crate::retry::parse_retry_after;
use crate::{AddressGuard, DeliveryConfig, DeliveryError};

/// `User-Agent` of every attempt.
pub const USER_AGENT: &str = concat!("mia-webhooks/", env!("CARGO_PKG_VERSION"));

/// The event name header.
pub const EVENT_HEADER: &str = "x-mia-event";

/// The delivery id header: the same on every attempt of a delivery, so receivers can
/// deduplicate.
pub const DELIVERY_HEADER: &str = "x-mia-delivery";

/// The signature header (`mia_webhooks_signature::HEADER_NAME`, lower-cased as HTTP/2 wants).
pub const SIGNATURE_HEADER: &str = "x-mia-signature";

/// What one attempt did: the attempt to record, and what the receiver asked about retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// The attempt as it will be recorded.
    pub attempt: Attempt,
    /// The receiver's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

/// Sends attempts. Cheap to clone; clones share the client cache.
///
/// HTTP clients (with their connection pools) are cached per (CA certificate, proxy) pair and
/// reused; a webhook without either uses the shared default client. Each client:
/// - trusts the platform's roots, plus the webhook's CA when it has one (that client only);
/// - sends every request through the webhook's proxy when it has one, and ignores the
///   `HTTP_PROXY`-style environment;
/// - resolves names through the [`AddressGuard`], follows no redirect, and applies the connect
///   and attempt timeouts.
#[derive(Debug, Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    guard: AddressGuard,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    max_response_bytes: usize,
    excerpt_bytes: usize,
    max_clients: usize,
    pool_idle: usize,
    default_client: Client,
    clients: Mutex<HashMap<ClientKey, Client>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    ca: Option<CaCertificate>,
    proxy: Option<ProxyUrl>,
}

impl Sender {
    /// A sender with the timeouts, limits and allowed ranges of `config`.
    pub fn new(config: &DeliveryConfig) -> Result<Self, DeliveryError> {
        config.validate()?;
        let guard = AddressGuard::new(config.allowed_cidrs.clone());
        let pool_idle = config.max_in_flight.max(8);
        let default_client = build_client(
            &guard,
            config.connect_timeout,
            config.attempt_timeout,
            pool_idle,
            None,
            None,
        )
        .map_err(|(_, message)| DeliveryError::Client(message))?;
        Ok(Sender {
            inner: Arc::new(Inner {
                guard,
                connect_timeout: config.connect_timeout,
                attempt_timeout: config.attempt_timeout,
                max_response_bytes: config.max_response_bytes,
                excerpt_bytes: config.excerpt_bytes,
                max_clients: config.max_clients,
                pool_idle,
                default_client,
                clients: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The address guard in use.
    pub fn guard(&self) -> &AddressGuard {
        &self.inner.guard
    }

    /// How many clients for webhooks with a CA or a proxy are cached.
    pub fn cached_clients(&self) -> usize {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Makes one attempt of `delivery`: signs its payload with the webhook's current secret and
    /// posts it. Never fails: every problem is an outcome in the report. `now` is the attempt's
    /// start time as recorded.
    ///
    /// Each attempt runs in a `delivery_attempt` span with the webhook id, delivery id, attempt
    /// number, outcome and milliseconds, and is counted in the `mia_webhooks_attempts_total`
    /// counter (label `outcome`) and the `mia_webhooks_attempt_duration_seconds` histogram.
    pub async fn send(&self, delivery: &ClaimedDelivery, now: Timestamp) -> AttemptReport {
        let span = tracing::info_span!(
            "delivery_attempt",
            webhook_id = %delivery.webhook.id,
            delivery_id = %delivery.delivery_id,
            attempt = delivery.attempt,
            outcome = tracing::field::Empty,
            ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let outcome = self.attempt(delivery).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let label = outcome
            .failure
            .as_ref()
            .map_or("success", |(kind, _)| kind.as_str());
        span.record("outcome", label);
        span.record("ms", duration_ms);
        span.in_scope(|| match &outcome.failure {
            None => tracing::debug!(status = outcome.status, "delivered"),
            Some((_, error)) => {
                tracing::info!(status = outcome.status, error = %error, "attempt failed")
            }
        });
        metrics::counter!("mia_webhooks_attempts_total", "outcome" => label).increment(1);
        metrics::histogram!("mia_webhooks_attempt_duration_seconds").record(elapsed.as_secs_f64());
        let (failure, error) = match outcome.failure {
            Some((kind, error)) => (Some(kind), Some(error)),
            None => (None, None),
        };
        AttemptReport {
            attempt: Attempt {
                number: delivery.attempt,
                started_at: now,
                duration_ms,
                status_code: outcome.status,
                failure,
                error,
                response_excerpt: outcome.excerpt,
            },
            retry_after: outcome.retry_after,
        }
    }

    async fn attempt(&self, delivery: &ClaimedDelivery) -> Outcome {
        let webhook = &delivery.webhook;
        let target = webhook.target_url.as_url();
        let proxy = webhook.proxy.as_ref();
        let ctx = Context {
            target,
            proxy,
            connect_timeout: self.inner.connect_timeout,
            attempt_timeout: self.inner.attempt_timeout,
        };
        // The HTTP client does not resolve IP literals, so they are checked here; names are
        // checked by the guard's resolver as they are resolved.
        if let Some(proxy) = proxy {
            if let Err(blocked) = self.inner.guard.check_url(proxy.as_url()) {
                return Outcome::failed(
                    FailureKind::BlockedAddress,
                    format!("refused before connecting to the proxy: {blocked}"),
                );
            }
        }
        if let Err(blocked) = self.inner.guard.check_url(target) {
            return Outcome::failed(
                FailureKind::BlockedAddress,
                format!("refused before connecting to the target: {blocked}"),
            );
        }
        let client = match self.client(webhook.ca_certificate.as_ref(), proxy) {
            Ok(client) => client,
            Err((kind, message)) => return Outcome::failed(kind, message),
        };
        let request = match self.request(delivery) {
            Ok(request) => request,
            Err(message) => return Outcome::failed(FailureKind::Other, message),
        };
        // The client's own timeout covers connecting and reading; this bound only guards
        // against a client that fails to apply it.
        let bound = self.inner.attempt_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, self.exchange(&client, request, &ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failed(
                FailureKind::Timeout,
                format!(
                    "no complete answer within {:?} (the attempt timeout)",
                    self.inner.attempt_timeout
                ),
            ),
        }
    }

    fn request(&self, delivery: &ClaimedDelivery) -> Result<Request, String> {
        let webhook = &delivery.webhook;
        let signature = mia_webhooks_signature::sign(&delivery.payload, webhook.secret.expose());
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let signature =
            HeaderValue::from_bytes(&signature.encode_hex()).map_err(|e| e.to_string())?;
        headers.insert(HeaderName::from_static(SIGNATURE_HEADER), signature);
        let event =
            HeaderValue::from_str(delivery.event_name.as_str()).map_err(|e| e.to_string())?;
        headers.insert(HeaderName::from_static(EVENT_HEADER), event);
        let id =
            HeaderValue::try_from(delivery.delivery_id.to_string()).map_err(|e| e.to_string())?;
        headers.insert(HeaderName::from_static(DELIVERY_HEADER), id);
        let mut request = Request::new(Method::POST, webhook.target_url.as_url().clone());
        *request.headers_mut() = headers;
        *request.body_mut() = Some(Bytes::from_owner(Arc::clone(&delivery.payload)).into());
        Ok(request)
    }

    async fn exchange(&self, client: &Client, request: Request, ctx: &Context<'_>) -> Outcome {
        let response = match client.execute(request).await {
            Ok(response) => response,
            Err(err) => {
                return Outcome {
                    failure: Some(classify::error_failure(&err, ctx)),
                    ..Outcome::default()
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = self.read_body(response, ctx).await;
        // The status decides (SPEC: success is any 2xx), whatever the body: a receiver that
        // took the event and answered at length must not get it again.
        let failure = if status.is_success() {
            None
        } else {
            let (kind, mut text) = classify::status_failure(status, location.as_deref());
            if let Some((_, error)) = body.error {
                text.push_str(&format!(" (and reading its body failed: {error})"));
            }
            Some((kind, text))
        };
        let excerpt = (!body.bytes.is_empty()).then(|| {
            let end = body.bytes.len().min(self.inner.excerpt_bytes);
            excerpt_text(&body.bytes[..end])
        });
        Outcome {
            status: Some(status.as_u16()),
            failure,
            excerpt,
            retry_after,
        }
    }

    /// Reads at most `max_response_bytes` of the body; the rest is never read (the connection
    /// is dropped with it).
    async fn read_body(&self, mut response: Response, ctx: &Context<'_>) -> Body {
        let max = self.inner.max_response_bytes;
        let mut body = Body::default();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = max - body.bytes.len();
                    if chunk.len() >= room {
                        body.bytes.extend_from_slice(&chunk[..room]);
                        return body;
                    }
                    body.bytes.extend_from_slice(&chunk);
                }
                Ok(None) => return body,
                Err(err) => {
                    body.error = Some(classify::error_failure(&err, ctx));
                    return body;
                }
            }
        }
    }

    fn client(
        &self,
        ca: Option<&CaCertificate>,
        proxy: Option<&ProxyUrl>,
    ) -> Result<Client, Failure> {
        if ca.is_none() && proxy.is_none() {
            return Ok(self.inner.default_client.clone());
        }
        let key = ClientKey {
            ca: ca.cloned(),
            proxy: proxy.cloned(),
        };
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let inner = &self.inner;
        let client = build_client(
            &inner.guard,
            inner.connect_timeout,
            inner.attempt_timeout,
            inner.pool_idle,
            ca,
            proxy,
        )?;
        if clients.len() >= inner.max_clients {
            // Forget an arbitrary client: a cache, not a registry. Its connections close when
            // the attempts using it finish.
            if let Some(evicted) = clients.keys().next().cloned() {
                clients.remove(&evicted);
            }
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn build_client(
    guard: &AddressGuard,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    pool_idle: usize,
    ca: Option<&CaCertificate>,
    proxy: Option<&ProxyUrl>,
) -> Result<Client, Failure> {
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .connect_timeout(connect_timeout)
        .timeout(attempt_timeout)
        .dns_resolver(guard.resolver())
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(pool_idle);
    if let Some(ca) = ca {
        let mut certificates = Vec::new();
        for der in ca.certificates() {
            let certificate = reqwest::Certificate::from_der(der).map_err(|err| {
                (
                    FailureKind::Tls,
                    format!("the webhook's CA certificate cannot be used: {err}"),
                )
            })?;
            certificates.push(certificate);
        }
        builder = builder.tls_certs_merge(certificates);
    }
    if let Some(proxy) = proxy {
        let proxy_setting = reqwest::Proxy::all(proxy.expose()).map_err(|_| {
            (
                FailureKind::Proxy,
                format!("the proxy URL {} cannot be used", proxy.redacted()),
            )
        })?;
        builder = builder.proxy(proxy_setting);
    }
    builder.build().map_err(|err| {
        let what = if ca.is_some() {
            FailureKind::Tls
        } else {
            FailureKind::Other
        };
        (
            what,
            format!("cannot set up the HTTP client for this webhook: {err}"),
        )
    })
}

#[derive(Debug, Default)]
struct Outcome {
    status: Option<u16>,
    failure: Option<Failure>,
    excerpt: Option<String>,
    retry_after: Option<Duration>,
}

impl Outcome {
    fn failed(kind: FailureKind, message: String) -> Self {
        Outcome {
            failure: Some((kind, message)),
            ..Outcome::default()
        }
    }
}

#[derive(Debug, Default)]
struct Body {
    bytes: Vec<u8>,
    error: Option<Failure>,
}

/// The first bytes of a response as text: invalid UTF-8 and NUL (which PostgreSQL's `text`
/// cannot hold) become U+FFFD.
fn excerpt_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}
