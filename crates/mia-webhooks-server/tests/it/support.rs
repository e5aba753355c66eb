//! Test support: a server on 127.0.0.1:0 over a fresh SQLite file, and a recording receiver.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mia_webhooks_server::{Config, Server};
use serde_json::{Value, json};

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

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
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
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
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
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
