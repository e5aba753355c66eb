//! Test support: a server on 127.0.0.1:0 over a fresh SQLite file, and a recording receiver.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mia_webhooks_server::{Config, Server};
use serde_json::{Value, json};

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The server's OpenAPI document, as JSON.
pub(crate) static OPENAPI: LazyLock<Value> = LazyLock::new(|| {
    serde_json::to_value(mia_webhooks_server::openapi_document()).expect("the document is JSON")
});

/// The HTTP methods an OpenAPI path item may hold, lower case as in the document.
pub(crate) const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the document: (method in upper case, path template).
pub(crate) fn documented_operations() -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in OPENAPI["paths"]
        .as_object()
        .expect("the document has paths")
    {
        for method in OPENAPI_METHODS {
            if item.get(method).is_some() {
                operations.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// The operation of the document that serves `method` on the concrete `path` (its query string
/// ignored): the template whose segments match, literal segments preferred to `{parameters}`.
pub(crate) fn operation_for(method: &str, path: &str) -> Option<(String, &'static Value)> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, String, &'static Value)> = None;
    for (template, item) in OPENAPI["paths"].as_object()? {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let matches = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') && part.ends_with('}') {
                !segment.is_empty()
            } else {
                literal += 1;
                part == segment
            }
        });
        let Some(operation) = item.get(method.to_ascii_lowercase()) else {
            continue;
        };
        if matches && best.as_ref().is_none_or(|(most, ..)| literal > *most) {
            best = Some((literal, template.clone(), operation));
        }
    }
    best.map(|(_, template, operation)| (template, operation))
}

/// `template` with its parameters filled in: `{id}` is `webhook` or, under
/// `/api/deliveries`, `delivery`; `{tenantId}` is `t1` and `{projectId}` is `p1`.
pub(crate) fn concrete(template: &str, webhook: &str, delivery: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{id}" if template.starts_with("/api/deliveries/") => delivery,
            "{id}" => webhook,
            "{tenantId}" => "t1",
            "{projectId}" => "p1",
            other if other.starts_with('{') => "x",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The smallest valid request body of an operation, if it takes one: a webhook to create (on
/// `target`), an edit, the documented example event.
pub(crate) fn minimal_body(method: &str, template: &str, target: &str) -> Option<Value> {
    let operation = &OPENAPI["paths"][template][method.to_ascii_lowercase()];
    match (method, template) {
        ("POST", "/api/events") => Some(example_event()),
        ("POST", t) if t.ends_with("/webhooks") => Some(
            json!({"targetUrl": target, "secret": "minimal-secret", "events": ["project_deleted"]}),
        ),
        ("PATCH", _) => Some(json!({"description": "edited"})),
        _ if operation.get("requestBody").is_some() => Some(json!({})),
        _ => None,
    }
}

/// The example of the ingestion envelope's schema in the document.
pub(crate) fn example_event() -> Value {
    OPENAPI["components"]["schemas"]["EventEnvelope"]["examples"][0].clone()
}

/// Asserts that the document lists `status` among the answers of the operation serving
/// `method path`, when the document has one (a wrong method or an unknown path has none).
pub(crate) fn assert_documented(method: &str, path: &str, status: StatusCode) {
    if let Some((template, operation)) = operation_for(method, path) {
        let code = status.as_u16().to_string();
        assert!(
            operation["responses"].get(&code).is_some(),
            "{method} {path} answered {status}, which the OpenAPI document does not list for \
             {method} {template}"
        );
    }
}

pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) database_url: String,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(configure: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}", dir.path().join("test.db").display()),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            retry_schedule_secs: vec![0.2, 0.2, 0.2],
            shutdown_grace_secs: 2.0,
            attempt_timeout_secs: 5.0,
            extra_events: vec!["project_deleted".to_owned()],
            ..Config::default()
        };
        configure(&mut config);
        let database_url = config.database_url.clone();
        let server = Server::start(config).await.unwrap();
        TestServer {
            base: format!("http://{}", server.local_addr()),
            client: reqwest::Client::new(),
            database_url,
            server: Some(server),
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            self.url(path),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        assert_documented(method, path, status);
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Sends raw bytes as a JSON body.
    pub(crate) async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(path),
            )
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        assert_documented(method, path, status);
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_TOKEN), body).await
    }

    /// Creates a webhook on `scope_path` (`/api/webhooks`, `/api/companies/t/webhooks`, ...)
    /// and returns its id.
    pub(crate) async fn create_webhook(
        &self,
        scope_path: &str,
        target: &str,
        secret: &str,
        events: &[&str],
    ) -> String {
        let (status, body) = self
            .admin(
                "POST",
                scope_path,
                Some(json!({"targetUrl": target, "secret": secret, "events": events})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// An instance webhook to `target` with one delivery (of a `project_deleted` event): the
    /// webhook's id and the delivery's.
    pub(crate) async fn webhook_with_a_delivery(&self, target: &str) -> (String, String) {
        let webhook = self
            .create_webhook("/api/webhooks", target, "s3cret", &["project_deleted"])
            .await;
        self.emit("project_deleted", json!({})).await;
        let (_, page) = self
            .admin("GET", &format!("/api/webhooks/{webhook}/deliveries"), None)
            .await;
        let delivery = page["items"][0]["id"]
            .as_str()
            .expect("the event made a delivery")
            .to_owned();
        (webhook, delivery)
    }

    pub(crate) async fn emit(&self, name: &str, payload: Value) -> Value {
        let envelope =
            json!({"eventName": name, "eventTimestamp": 1_764_374_400_000_i64, "payload": payload});
        let (status, body) = self.admin("POST", "/api/events", Some(envelope)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// Creates a token with `role` in the server's database, as `mia-webhooks token create` does.
    pub(crate) async fn token(&self, role: mia_webhooks_model::Role) -> String {
        let config = Config {
            database_url: self.database_url.clone(),
            ..Config::default()
        };
        let store = mia_webhooks_server::open_store(&config).await.unwrap();
        mia_webhooks_server::create_token(&store, role, "test")
            .await
            .unwrap()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A receiver on 127.0.0.1:0 that records every request and answers 200.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(
                |State(got): State<Arc<Mutex<Vec<Received>>>>,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    got.lock().unwrap().push(Received {
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    });
                    StatusCode::OK
                },
            )
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, got }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (bounded), then returns them all.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.received()
    }
}
