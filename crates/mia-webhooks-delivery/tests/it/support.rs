//! Test receivers, traps, proxies and fixtures. Everything listens on 127.0.0.1 or ::1 only.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mia_webhooks_delivery::{DeliveryConfig, RetryPolicy};
use mia_webhooks_model::{
    CaCertificate, DeliveryId, Event, EventCatalog, EventId, EventName, EventSet, ProxyUrl, Scope,
    Secret, TargetUrl, Timestamp, Webhook, WebhookId,
};
use mia_webhooks_store::{ClaimedDelivery, LeaseToken, NewEvent};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The secret every test webhook signs with.
pub(crate) const SECRET: &str = "test-secret-do-not-log";

/// A configuration that lets deliveries reach loopback, with short timeouts and retries.
pub(crate) fn local_config() -> DeliveryConfig {
    DeliveryConfig {
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        connect_timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(5),
        lease: Duration::from_secs(30),
        retry: RetryPolicy::fixed(vec![Duration::from_millis(50); 3]),
        idle_poll: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(5),
        ..DeliveryConfig::default()
    }
}

/// A webhook on the instance scope subscribed to `project_created`.
pub(crate) fn webhook(target: &str) -> Webhook {
    let catalog = EventCatalog::built_in();
    let now = Timestamp::now();
    Webhook {
        id: WebhookId::new(),
        scope: Scope::Instance,
        target_url: TargetUrl::new(target).unwrap(),
        secret: Secret::new(SECRET).unwrap(),
        events: EventSet::new(&["project_created"], &catalog).unwrap(),
        ca_certificate: None,
        proxy: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    }
}

/// The same webhook with a CA.
pub(crate) fn with_ca(mut webhook: Webhook, ca_pem: &str) -> Webhook {
    webhook.ca_certificate = Some(CaCertificate::new(ca_pem).unwrap());
    webhook
}

/// The same webhook with a proxy.
pub(crate) fn with_proxy(mut webhook: Webhook, proxy: &str) -> Webhook {
    webhook.proxy = Some(ProxyUrl::new(proxy).unwrap());
    webhook
}

/// The bytes of a `project_created` event, padded to about `size` bytes.
pub(crate) fn event_bytes(n: usize, size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"eventName":"project_created","eventTimestamp":{},"payload":{{"tenantId":"acme","projectId":"p{n}","pad":""#,
        1_764_374_400_000_i64 + n as i64
    );
    let tail = r#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut bytes = head.into_bytes();
    bytes.extend(std::iter::repeat_n(b'x', pad));
    bytes.extend_from_slice(tail.as_bytes());
    bytes
}

/// A new event ready for ingestion.
pub(crate) fn new_event(n: usize) -> NewEvent {
    let event = Event::parse(&event_bytes(n, 256), &EventCatalog::built_in()).unwrap();
    NewEvent {
        id: EventId::new(),
        event,
    }
}

/// A claimed delivery built by hand, for sender tests without a store.
pub(crate) fn claimed(webhook: &Webhook, attempt: u32) -> ClaimedDelivery {
    let now = Timestamp::now();
    ClaimedDelivery {
        delivery_id: DeliveryId::new(),
        lease: LeaseToken::new(),
        leased_until: now.saturating_add(Duration::from_secs(60)),
        event_id: EventId::new(),
        event_name: EventName::new("project_created").unwrap(),
        attempt,
        created_at: now,
        webhook: Arc::new(webhook.clone()),
        payload: event_bytes(1, 300).into(),
    }
}

/// Waits until `condition` holds, polling; panics with `what` after 20 s.
pub(crate) async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until an async `condition` holds, polling; panics with `what` after 20 s.
pub(crate) async fn wait_for_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..2000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

// --- Receivers -----------------------------------------------------------------------------

/// What a receiver answers to its n-th request (0 for the first).
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A status with an empty body.
    Status(u16),
    /// A status with headers and a body.
    Full(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Never answers.
    Hang,
    /// Answers after a delay.
    Delayed(Duration, u16),
}

/// One request a receiver saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) peer: SocketAddr,
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
    open: Arc<AtomicUsize>,
}

/// An HTTP receiver on 127.0.0.1 that records requests and answers from a script.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    open: Arc<AtomicUsize>,
}

impl Receiver {
    /// Starts a plain-HTTP receiver.
    pub(crate) async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, receiver) = Self::parts(addr, script);
        let app = router(state);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        receiver
    }

    /// Starts an HTTPS receiver with `cert` and `key` (PEM).
    pub(crate) async fn start_tls(
        cert_pem: &str,
        key_pem: &str,
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        use rustls_pki_types::pem::PemObject as _;
        use tokio_rustls::rustls;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, receiver) = Self::parts(addr, script);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let app = router(state).layer(axum::Extension(ConnectInfo(peer)));
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn parts(
        addr: SocketAddr,
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> (ReceiverState, Receiver) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let state = ReceiverState {
            script: Arc::new(script),
            seen: Arc::clone(&seen),
            open: Arc::clone(&open),
        };
        (state, Receiver { addr, seen, open })
    }

    /// `http://127.0.0.1:port/hook`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The requests seen so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were seen.
    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// How many requests are being answered right now (handlers not finished).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

fn router(state: ReceiverState) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    State(state): State<ReceiverState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(Arc::clone(&state.open));
    let index = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            uri,
            headers,
            body,
            peer,
        });
        seen.len() - 1
    };
    match (state.script)(index) {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::Full(code, headers, body) => {
            let mut response = (StatusCode::from_u16(code).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::Hang => std::future::pending().await,
        Reply::Delayed(delay, code) => {
            tokio::time::sleep(delay).await;
            StatusCode::from_u16(code).unwrap().into_response()
        }
    }
}

// --- Traps ---------------------------------------------------------------------------------

/// A listener that counts connections and answers each with `200 OK`.
pub(crate) struct Trap {
    pub(crate) addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Trap {
    /// Binds `ip:0` ("127.0.0.1" or "[::1]").
    pub(crate) async fn start(ip: &str) -> Trap {
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0_u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Trap { addr, connections }
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many connections were accepted.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A receiver that answers 200 with a chunked body of `size` bytes (no Content-Length).
pub(crate) async fn chunked_receiver(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0_u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = vec![b'a'; 8192];
                let mut sent = 0;
                while sent < size {
                    let head = format!("{:x}\r\n", chunk.len());
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(&chunk).await.is_err()
                        || stream.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                    sent += chunk.len();
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

// --- Proxy ---------------------------------------------------------------------------------

/// What a [`Proxy`] carried.
#[derive(Debug, Default)]
pub(crate) struct ProxyCounts {
    /// Plain requests forwarded (absolute-form).
    pub(crate) forwarded: AtomicUsize,
    /// CONNECT tunnels opened.
    pub(crate) tunnels: AtomicUsize,
    /// Local addresses of the proxy's connections to receivers.
    pub(crate) upstream_addrs: Mutex<Vec<SocketAddr>>,
}

/// A small HTTP forward proxy with CONNECT, that only ever connects to 127.0.0.1.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    pub(crate) counts: Arc<ProxyCounts>,
}

impl Proxy {
    /// Starts the proxy on 127.0.0.1.
    pub(crate) async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(ProxyCounts::default());
        let shared = Arc::clone(&counts);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counts = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        proxy_request(req, Arc::clone(&counts))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Proxy { addr, counts }
    }

    /// `http://127.0.0.1:port`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests forwarded.
    pub(crate) fn forwarded(&self) -> usize {
        self.counts.forwarded.load(Ordering::SeqCst)
    }

    /// Tunnels opened.
    pub(crate) fn tunnels(&self) -> usize {
        self.counts.tunnels.load(Ordering::SeqCst)
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn empty(status: StatusCode) -> hyper::Response<ProxyBody> {
    let body = http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response
}

/// Where the proxy may connect: loopback only, whatever the request names.
fn loopback_target(host: &str, port: u16) -> Option<SocketAddr> {
    match host {
        "127.0.0.1" | "localhost" | "receiver.test" => {
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        }
        _ => None,
    }
}

async fn proxy_request(
    req: hyper::Request<Incoming>,
    counts: Arc<ProxyCounts>,
) -> Result<hyper::Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        let Some(authority) = req.uri().authority().cloned() else {
            return Ok(empty(StatusCode::BAD_REQUEST));
        };
        let Some(target) = loopback_target(authority.host(), authority.port_u16().unwrap_or(443))
        else {
            return Ok(empty(StatusCode::FORBIDDEN));
        };
        counts.tunnels.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                return;
            };
            if let Ok(local) = upstream.local_addr() {
                counts.upstream_addrs.lock().unwrap().push(local);
            }
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
        });
        return Ok(empty(StatusCode::OK));
    }
    let Some(host) = req.uri().host() else {
        return Ok(empty(StatusCode::BAD_REQUEST));
    };
    let Some(target) = loopback_target(host, req.uri().port_u16().unwrap_or(80)) else {
        return Ok(empty(StatusCode::FORBIDDEN));
    };
    counts.forwarded.fetch_add(1, Ordering::SeqCst);
    let Ok(upstream) = TcpStream::connect(target).await else {
        return Ok(empty(StatusCode::BAD_GATEWAY));
    };
    if let Ok(local) = upstream.local_addr() {
        counts.upstream_addrs.lock().unwrap().push(local);
    }
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return Ok(empty(StatusCode::BAD_GATEWAY));
    };
    tokio::spawn(connection);
    match sender.send_request(req).await {
        Ok(response) => Ok(response.map(http_body_util::BodyExt::boxed)),
        Err(_) => Ok(empty(StatusCode::BAD_GATEWAY)),
    }
}

// --- TLS fixtures --------------------------------------------------------------------------

/// A CA made by rcgen, and a server certificate it signed for `127.0.0.1`, `localhost` and
/// `receiver.test`.
pub(crate) struct TestPki {
    pub(crate) ca_pem: String,
    pub(crate) server_cert_pem: String,
    pub(crate) server_key_pem: String,
}

impl TestPki {
    /// A PKI whose server certificate names `127.0.0.1`, `localhost` and `receiver.test`.
    pub(crate) fn new() -> TestPki {
        Self::for_names(&["localhost", "receiver.test"], &["127.0.0.1"])
    }

    /// A PKI whose server certificate names `dns_names` and `ips`.
    pub(crate) fn for_names(dns_names: &[&str], ips: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mia-webhooks test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = dns_names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        for ip in ips {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(ip.parse().unwrap()));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "receiver");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }
}
