//! Bad input: every request answers a 4xx with a code and the field, and nothing is stored.

use std::time::Duration;

use mia_webhooks_model::Timestamp;
use mia_webhooks_store::{AnyStore, Store, StoreOptions, StoreStats};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Receiver, TestServer};

fn valid() -> Value {
    json!({"targetUrl": "https://example.com/hook", "secret": "s3cr3t-value", "events": ["project_created"]})
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = valid();
    body.as_object_mut().unwrap().remove(field);
    body
}

const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBqmQ4ZkzQ1Nf7KPaWmHsXuJ3i1Fq7WxnKZ3kZ2Xo4bW\n-----END PRIVATE KEY-----\n";

#[tokio::test]
async fn bad_webhook_input_is_a_4xx_naming_the_field_and_stores_nothing() {
    let server = TestServer::start().await;
    let json_cases: Vec<(&str, Value, &str)> = vec![
        ("/api/webhooks", without("targetUrl"), "targetUrl"),
        ("/api/webhooks", without("secret"), "secret"),
        ("/api/webhooks", without("events"), "events"),
        ("/api/webhooks", with("targetUrl", json!(5)), "targetUrl"),
        (
            "/api/webhooks",
            with("targetUrl", json!("not-a-url")),
            "targetUrl",
        ),
        (
            "/api/webhooks",
            with("targetUrl", json!("ftp://example.com/")),
            "targetUrl",
        ),
        (
            "/api/webhooks",
            with("targetUrl", json!("https://example.com/#frag")),
            "targetUrl",
        ),
        (
            "/api/webhooks",
            with(
                "targetUrl",
                json!(format!("https://example.com/{}", "a".repeat(2100))),
            ),
            "targetUrl",
        ),
        (
            "/api/webhooks",
            with("targetUrl", json!("http://10.0.0.1/hook")),
            "targetUrl",
        ),
        (
            "/api/webhooks",
            with(
                "targetUrl",
                json!("http://169.254.169.254/latest/meta-data"),
            ),
            "targetUrl",
        ),
        (
            "/api/webhooks",
            with("targetUrl", json!("http://[fd00::1]/")),
            "targetUrl",
        ),
        ("/api/webhooks", with("secret", json!("")), "secret"),
        (
            "/api/webhooks",
            with("secret", json!("x".repeat(1025))),
            "secret",
        ),
        ("/api/webhooks", with("secret", json!(42)), "secret"),
        ("/api/webhooks", with("events", json!([])), "events"),
        (
            "/api/webhooks",
            with("events", json!(["nope_nope"])),
            "events[0]",
        ),
        (
            "/api/webhooks",
            with("events", json!(["project_created", "NotSnake"])),
            "events[1]",
        ),
        (
            "/api/webhooks",
            with("events", json!("project_created")),
            "events",
        ),
        ("/api/webhooks", with("events", json!([1])), "events[0]"),
        (
            "/api/webhooks",
            with("caCertificate", json!("garbage")),
            "caCertificate",
        ),
        (
            "/api/webhooks",
            with("caCertificate", json!(KEY_PEM)),
            "caCertificate",
        ),
        (
            "/api/webhooks",
            with("proxy", json!({"url": "ftp://proxy:21"})),
            "proxy.url",
        ),
        (
            "/api/webhooks",
            with("proxy", json!({"url": 7})),
            "proxy.url",
        ),
        (
            "/api/webhooks",
            with("proxy", json!("http://proxy:3128")),
            "proxy",
        ),
        (
            "/api/webhooks",
            with("proxy", json!({"url": "http://10.0.0.1:3128"})),
            "proxy.url",
        ),
        (
            "/api/webhooks",
            with("proxy", json!({"url": "http://p:1", "user": "x"})),
            "proxy.user",
        ),
        ("/api/webhooks", with("unexpected", json!(1)), "unexpected"),
        (
            "/api/webhooks",
            with("description", json!("d".repeat(1100))),
            "description",
        ),
        ("/api/webhooks", with("enabled", json!("yes")), "enabled"),
        (
            "/api/companies/acme/webhooks",
            with("targetUrl", json!("javascript:alert(1)")),
            "targetUrl",
        ),
        (
            "/api/companies/acme/projects/p1/webhooks",
            without("events"),
            "events",
        ),
    ];
    for (path, body, field) in &json_cases {
        let (status, answer) = server.admin("POST", path, Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "POST {path} {field}: {answer}"
        );
        assert_names(&answer, field, &format!("POST {path}"));
        assert!(
            !answer.to_string().contains("s3cr3t-value"),
            "an error echoed the secret: {answer}"
        );
    }

    let raw_cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/api/webhooks",
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        ("/api/webhooks", Vec::new(), StatusCode::BAD_REQUEST, "body"),
        (
            "/api/webhooks",
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        // Serde would read the fields of a struct from an array, in order.
        (
            "/api/webhooks",
            br#" ["https://example.com/h","s3cr3t-value",["project_created"],null,null,null,null]"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "/api/webhooks",
            b"{\"targetUrl\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "/api/webhooks",
            vec![b' '; 2 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
        ),
    ];
    for (path, body, expected, field) in raw_cases {
        let (status, answer) = server.call_raw("POST", path, ADMIN_TOKEN, body).await;
        assert_eq!(status, expected, "POST {path} {field}: {answer}");
        assert_names(&answer, field, &format!("POST {path}"));
    }

    let query_cases = [
        ("/api/webhooks?limit=0", "limit"),
        ("/api/webhooks?limit=abc", "limit"),
        ("/api/webhooks?limit=1000", "limit"),
        ("/api/webhooks?cursor=garbage", "cursor"),
        ("/api/webhooks?events=Bad-Name", "events"),
    ];
    for (path, field) in query_cases {
        let (status, answer) = server.admin("GET", path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {answer}");
        assert_names(&answer, field, &format!("GET {path}"));
    }
    // More distinct names than a webhook may subscribe to: refused, naming the filter.
    let distinct: Vec<String> = (0..=256).map(|i| format!("event_n{i}")).collect();
    let path = format!("/api/webhooks?events={}", distinct.join(","));
    let (status, answer) = server.admin("GET", &path, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_names(&answer, "events", "GET /api/webhooks?events=(257 names)");
    // One name many times over is one name, not 15,000 bound SQL variables (a URI stays
    // under 64 KiB, so this is about as many as a request can carry).
    let path = format!("/api/webhooks?events={}", vec!["a_b"; 15_000].join(","));
    let (status, answer) = server.admin("GET", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["items"], json!([]));

    // Nothing was stored by any of them.
    for scope in [
        "/api/webhooks",
        "/api/companies/acme/webhooks",
        "/api/companies/acme/projects/p1/webhooks",
    ] {
        let (_, page) = server.admin("GET", scope, None).await;
        assert_eq!(page["items"], json!([]), "{scope}");
    }
    server.stop().await;
}

/// Asserts an error answer has a code and names `field`.
fn assert_names(answer: &Value, field: &str, request: &str) {
    assert_eq!(
        answer["error"]["field"],
        json!(field),
        "{request}: {answer}"
    );
    assert!(
        answer["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{request}: no error code in {answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{request}: no error message in {answer}"
    );
}

#[tokio::test]
async fn bad_events_are_refused_naming_the_field_and_store_nothing() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    // A webhook every one of these events would reach, were it accepted.
    let webhook = server
        .create_webhook(
            "/api/webhooks",
            &receiver.url("/all"),
            "s3cr3t-value",
            &["project_deleted", "project_created"],
        )
        .await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"not json".to_vec(), StatusCode::BAD_REQUEST, "body"),
        (Vec::new(), StatusCode::BAD_REQUEST, "body"),
        (
            br#"[{"eventName":"project_deleted","eventTimestamp":1,"payload":{}}]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":-1,"payload":{}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "eventTimestamp",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":1,"payload":[]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "payload",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{"tenantId":"a","companyId":"b"}}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "payload.companyId",
        ),
        (
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "eventName",
        ),
        (
            br#"{"eventName":"nope_nope","eventTimestamp":1,"payload":{}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "eventName",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "payload",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":"x","payload":{}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "eventTimestamp",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{"tenantId":3}}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "payload.tenantId",
        ),
        (
            br#"{"eventName":"project_created","eventTimestamp":1,"payload":{"tenantId":"t"}}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "payload.projectId",
        ),
        (
            br#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{},"x":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "x",
        ),
        (
            vec![b' '; 2 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
        ),
    ];
    for (body, expected, field) in cases {
        let (status, answer) = server
            .call_raw("POST", "/api/events", ADMIN_TOKEN, body)
            .await;
        assert_eq!(status, expected, "POST /api/events {field}: {answer}");
        assert_names(&answer, field, "POST /api/events");
    }

    // Nothing was stored: no delivery in the webhook's log, none and no event in the store the
    // server uses, and nothing sent.
    let log = format!("/api/webhooks/{webhook}/deliveries");
    let (_, page) = server.admin("GET", &log, None).await;
    assert_eq!(page["items"], json!([]), "{page}");
    let store = AnyStore::open(&server.database_url, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap(), StoreStats::default());
    // Removing every event older than tomorrow that has no delivery counts them: none.
    let tomorrow = Timestamp::now().saturating_add(Duration::from_secs(86_400));
    assert_eq!(store.purge(tomorrow).await.unwrap().events, 0);
    assert!(receiver.received().is_empty());

    // The same checks see an accepted event: one no webhook takes is stored and counted by
    // the purge; one the webhook takes is in its log and in the store's counts.
    let user =
        json!({"companyId": "acme", "userId": "u1", "email": "u1@example.com", "roleId": "r"});
    let answer = server.emit("company_user_added", user).await;
    assert_eq!(answer["deliveries"], 0);
    assert_eq!(store.purge(tomorrow).await.unwrap().events, 1);
    server
        .emit("project_deleted", json!({"tenantId": "acme"}))
        .await;
    let (_, page) = server.admin("GET", &log, None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.pending + stats.delivering + stats.succeeded + stats.failed + stats.cancelled,
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_rejected_edit_changes_nothing() {
    let server = TestServer::start().await;
    let id = server
        .create_webhook(
            "/api/webhooks",
            "https://example.com/a",
            "s3cr3t-value",
            &["project_created"],
        )
        .await;
    let (_, before) = server
        .admin("GET", &format!("/api/webhooks/{id}"), None)
        .await;
    for (body, field) in [
        (
            json!({"targetUrl": "https://example.com/b", "secret": "x".repeat(2000)}),
            "secret",
        ),
        (
            json!({"targetUrl": "https://example.com/b", "events": []}),
            "events",
        ),
        (
            json!({"targetUrl": "https://example.com/b", "proxy": {"url": "gopher://x"}}),
            "proxy.url",
        ),
        (
            json!({"targetUrl": "https://example.com/b", "caCertificate": "nope"}),
            "caCertificate",
        ),
        (
            json!({"targetUrl": "http://127.0.0.1:1/", "nope": true}),
            "nope",
        ),
        // An array: its nulls would each read as "clear this field".
        (json!([null, null, null, null, null, null, null]), "body"),
        // Fields that cannot be cleared: a null is refused, not read as "leave it".
        (json!({"targetUrl": null}), "targetUrl"),
        (json!({"secret": null}), "secret"),
        (json!({"events": null}), "events"),
        (json!({"enabled": null}), "enabled"),
        (json!({"secret": "   "}), "secret"),
    ] {
        let (status, answer) = server
            .admin("PATCH", &format!("/api/webhooks/{id}"), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], field);
    }
    let (_, after) = server
        .admin("GET", &format!("/api/webhooks/{id}"), None)
        .await;
    assert_eq!(after, before);
    let (status, answer) = server
        .admin(
            "GET",
            &format!("/api/webhooks/{id}/deliveries?status=bogus"),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    server.stop().await;
}

#[tokio::test]
async fn proxy_credentials_are_masked_and_kept_when_the_shown_url_comes_back() {
    let server = TestServer::start().await;
    let mut body = valid();
    body["proxy"] = json!({"url": "http://tok3n:hunter2@proxy.example:3128"});
    let (status, created) = server.admin("POST", "/api/webhooks", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let shown = "http://***@proxy.example:3128/";
    assert_eq!(created["proxy"]["url"], shown);
    for secret in ["tok3n", "hunter2"] {
        assert!(!created.to_string().contains(secret), "{created}");
    }
    let path = format!("/api/webhooks/{}", created["id"].as_str().unwrap());

    // A form that edits something else sends the proxy back as shown: the credentials stay.
    let edit = json!({"description": "renamed", "proxy": {"url": shown}});
    let (status, edited) = server.admin("PATCH", &path, Some(edit)).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["description"], "renamed");
    assert_eq!(edited["proxy"]["url"], shown);

    // The mask anywhere else cannot be stored in place of credentials.
    for url in [
        "http://***@other.example:3128",
        "http://user:***@proxy.example:3128",
    ] {
        let edit = json!({"proxy": {"url": url}});
        let (status, answer) = server.admin("PATCH", &path, Some(edit)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {answer}");
        assert_eq!(answer["error"]["field"], "proxy.url");
        let mut body = valid();
        body["proxy"] = json!({"url": url});
        let (status, answer) = server.admin("POST", "/api/webhooks", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {answer}");
        assert_eq!(answer["error"]["field"], "proxy.url");
    }

    let store = mia_webhooks_store::AnyStore::open(
        &server.database_url,
        mia_webhooks_store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let (_, page) = server.admin("GET", "/api/webhooks", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let id = created["id"].as_str().unwrap().parse().unwrap();
    let stored = mia_webhooks_store::Store::get_webhook(&store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.proxy.unwrap().expose(),
        "http://tok3n:hunter2@proxy.example:3128/"
    );
    server.stop().await;
}

#[tokio::test]
async fn errors_axum_answers_itself_have_the_api_shape() {
    let server = TestServer::start().await;
    let cases = [
        // A path segment that is not UTF-8 once decoded.
        (
            "GET",
            "/api/webhooks/%FF",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "PUT",
            "/api/events",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "DELETE",
            "/api/webhooks",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        ("GET", "/api/nowhere", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (method, path, status, code) in cases {
        let (got, answer) = server.admin(method, path, None).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path}: {answer}"
        );
    }
    // A wrong method keeps the `Allow` header axum gives it.
    let response = server
        .client
        .put(server.url("/api/events"))
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("POST"), "{allow}");
    server.stop().await;
}
