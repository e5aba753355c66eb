//! Each role against each endpoint and scope: what is out of reach answers 404, exactly like
//! what does not exist; no valid token answers 401, on every endpoint the document says needs
//! one (and the others answer without).

use mia_webhooks_model::Role;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, OPENAPI, Receiver, TestServer, assert_documented, concrete, documented_operations,
    minimal_body,
};

fn role(name: &str, tenant: Option<&str>, project: Option<&str>) -> Role {
    Role::new(name, tenant, project).unwrap()
}

/// The scopes of the matrix: instance, company t1, project t1/p1, company t2, and project
/// t1/p2 (a sibling of t1/p1 in the same tenant).
const SCOPES: [&str; 5] = [
    "/api/webhooks",
    "/api/companies/t1/webhooks",
    "/api/companies/t1/projects/p1/webhooks",
    "/api/companies/t2/webhooks",
    "/api/companies/t1/projects/p2/webhooks",
];

const MISSING: &str = "0190a0f0-0000-7000-8000-000000000000";

fn expect(visible: bool, ok: StatusCode) -> StatusCode {
    if visible { ok } else { StatusCode::NOT_FOUND }
}

#[tokio::test]
async fn roles_reach_their_scopes_and_nothing_else() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let target = receiver.url("/hook");
    let mut ids = Vec::new();
    let mut deliveries = Vec::new();
    for scope in SCOPES {
        let id = server
            .create_webhook(scope, &target, "s", &["project_deleted"])
            .await;
        // One delivery per webhook, for the delivery endpoints.
        let (status, answer) = server
            .admin("POST", &format!("/api/webhooks/{id}/test"), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let (_, page) = server
            .admin("GET", &format!("/api/webhooks/{id}/deliveries"), None)
            .await;
        deliveries.push(page["items"][0]["id"].as_str().unwrap().to_owned());
        ids.push(id);
    }
    let company_t1 = server.token(role("company-admin", Some("t1"), None)).await;
    let project_t1p1 = server
        .token(role("project-admin", Some("t1"), Some("p1")))
        .await;
    let company_t2 = server.token(role("company-admin", Some("t2"), None)).await;
    let emitter = server.token(role("emitter", None, None)).await;

    // Which of the five scopes (instance, t1, t1/p1, t2, t1/p2) each token manages.
    let reach: [(&str, &str, [bool; 5]); 5] = [
        ("instance admin", ADMIN_TOKEN, [true; 5]),
        (
            "company admin t1",
            &company_t1,
            [false, true, true, false, true],
        ),
        (
            "project admin t1/p1",
            &project_t1p1,
            [false, false, true, false, false],
        ),
        (
            "company admin t2",
            &company_t2,
            [false, false, false, true, false],
        ),
        ("emitter", &emitter, [false; 5]),
    ];

    for (who, token, visible) in reach {
        // What a missing id answers; an id out of reach must answer exactly the same.
        let (status, missing_webhook) = server
            .call(
                "GET",
                &format!("/api/webhooks/{MISSING}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {missing_webhook}");
        assert_eq!(missing_webhook["error"]["code"], "not_found");
        let (status, missing_delivery) = server
            .call(
                "GET",
                &format!("/api/deliveries/{MISSING}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {missing_delivery}");
        for (method, path) in [
            ("PATCH", format!("/api/webhooks/{MISSING}")),
            ("DELETE", format!("/api/webhooks/{MISSING}")),
            ("POST", format!("/api/webhooks/{MISSING}/test")),
            ("GET", format!("/api/webhooks/{MISSING}/deliveries")),
            ("POST", format!("/api/deliveries/{MISSING}/redeliver")),
        ] {
            let body = (method == "PATCH").then(|| json!({"description": "edited"}));
            let (status, answer) = server.call(method, &path, Some(token), body).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{who} {method} {path}: {answer}"
            );
        }

        for ((id, delivery), visible) in ids.iter().zip(&deliveries).zip(visible) {
            let webhook = format!("/api/webhooks/{id}");
            let (status, body) = server.call("GET", &webhook, Some(token), None).await;
            assert_eq!(
                status,
                expect(visible, StatusCode::OK),
                "{who} GET {webhook}"
            );
            if !visible {
                assert_eq!(body, missing_webhook, "{who} GET {webhook} looks missing");
            }
            let cases = [
                ("GET", format!("{webhook}/deliveries"), None, StatusCode::OK),
                (
                    "PATCH",
                    webhook.clone(),
                    Some(json!({"description": "edited"})),
                    StatusCode::OK,
                ),
                (
                    "POST",
                    format!("{webhook}/test"),
                    None,
                    StatusCode::ACCEPTED,
                ),
                (
                    "GET",
                    format!("/api/deliveries/{delivery}"),
                    None,
                    StatusCode::OK,
                ),
                (
                    "POST",
                    format!("/api/deliveries/{delivery}/redeliver"),
                    None,
                    StatusCode::ACCEPTED,
                ),
            ];
            for (method, path, body, ok) in cases {
                let (status, answer) = server.call(method, &path, Some(token), body).await;
                assert_eq!(
                    status,
                    expect(visible, ok),
                    "{who} {method} {path}: {answer}"
                );
            }
            if !visible {
                let (status, body) = server
                    .call(
                        "GET",
                        &format!("/api/deliveries/{delivery}"),
                        Some(token),
                        None,
                    )
                    .await;
                assert_eq!(
                    body, missing_delivery,
                    "{who}: delivery {delivery} looks missing"
                );
                assert_eq!(status, StatusCode::NOT_FOUND);
                // Deleting what is out of reach: 404, and nothing is deleted (checked below).
                let (status, body) = server.call("DELETE", &webhook, Some(token), None).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{who} DELETE {webhook}");
                assert_eq!(
                    body, missing_webhook,
                    "{who} DELETE {webhook} looks missing"
                );
            }
        }
    }
    for id in &ids {
        let (status, _) = server
            .admin("GET", &format!("/api/webhooks/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "a refused DELETE deleted {id}");
    }

    // Listing, creating and deleting per scope; a webhook one token creates is out of reach of
    // the tokens that do not manage its scope.
    for (who, token, allowed) in reach {
        for (scope, allowed) in SCOPES.iter().zip(allowed) {
            let (status, _) = server.call("GET", scope, Some(token), None).await;
            assert_eq!(
                status,
                expect(allowed, StatusCode::OK),
                "{who} list {scope}"
            );
            let body = json!({"targetUrl": target, "secret": "s", "events": ["project_created"]});
            let (status, created) = server.call("POST", scope, Some(token), Some(body)).await;
            assert_eq!(
                status,
                expect(allowed, StatusCode::CREATED),
                "{who} create on {scope}: {created}"
            );
            if !allowed {
                continue;
            }
            let path = format!("/api/webhooks/{}", created["id"].as_str().unwrap());
            for (other, other_token, other_reach) in reach {
                let sees = other_reach[SCOPES.iter().position(|s| s == scope).unwrap()];
                let (status, _) = server.call("GET", &path, Some(other_token), None).await;
                assert_eq!(
                    status,
                    expect(sees, StatusCode::OK),
                    "{other} GET what {who} created on {scope}"
                );
            }
            let (status, _) = server.call("DELETE", &path, Some(token), None).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{who} DELETE on {scope}");
            let (status, _) = server.call("GET", &path, Some(token), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{who}: deleted on {scope}");
        }
    }

    // The catalogue is for the tokens that manage webhooks.
    for (who, token, expected) in [
        ("emitter", emitter.as_str(), StatusCode::FORBIDDEN),
        ("instance admin", ADMIN_TOKEN, StatusCode::OK),
        ("company admin", company_t1.as_str(), StatusCode::OK),
        ("project admin", project_t1p1.as_str(), StatusCode::OK),
    ] {
        let (status, body) = server
            .call("GET", "/api/events/catalog", Some(token), None)
            .await;
        assert_eq!(status, expected, "{who} GET /api/events/catalog: {body}");
    }

    // Posting events: emitters and instance admins only.
    let event = json!({"eventName": "project_deleted", "eventTimestamp": 1, "payload": {}});
    for (who, token, expected) in [
        ("emitter", emitter.as_str(), StatusCode::ACCEPTED),
        ("instance admin", ADMIN_TOKEN, StatusCode::ACCEPTED),
        ("company admin", company_t1.as_str(), StatusCode::FORBIDDEN),
        ("company admin", company_t2.as_str(), StatusCode::FORBIDDEN),
        (
            "project admin",
            project_t1p1.as_str(),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, body) = server
            .call("POST", "/api/events", Some(token), Some(event.clone()))
            .await;
        assert_eq!(status, expected, "{who} POST /api/events: {body}");
        if expected == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    server.stop().await;
}

/// A request with an `Authorization` header as given (`None`: without one).
async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<HeaderValue>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = server.client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        server.url(path),
    );
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    assert_documented(method, path, status);
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token_unless_the_document_says_it_is_open() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    // Real ids and valid bodies: only the token is wrong.
    let (webhook, delivery) = server.webhook_with_a_delivery(&receiver.url("/hook")).await;

    let text = |s: &'static str| Some(HeaderValue::from_static(s));
    let bad: Vec<(&str, Option<HeaderValue>)> = vec![
        ("no Authorization header", None),
        ("another scheme", text("Basic dXNlcjpwYXNz")),
        ("Bearer without a token", text("Bearer")),
        ("Bearer and blanks", text("Bearer   ")),
        (
            "a token without Bearer",
            Some(HeaderValue::from_str(ADMIN_TOKEN).unwrap()),
        ),
        (
            "a header that is not text",
            Some(HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()),
        ),
        ("an unknown token", text("Bearer mwh_not-a-real-token")),
        (
            "the admin token with one character changed",
            Some(
                HeaderValue::from_str(&format!(
                    "Bearer {}X",
                    &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]
                ))
                .unwrap(),
            ),
        ),
    ];
    let mut secured = 0;
    for (method, template) in documented_operations() {
        let operation = &OPENAPI["paths"][&template][method.to_ascii_lowercase()];
        let path = concrete(&template, &webhook, &delivery);
        let body = minimal_body(&method, &template, &receiver.url("/created"));
        if operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
        {
            secured += 1;
            for (what, header) in &bad {
                let (status, answer) =
                    send(&server, &method, &path, header.clone(), body.as_ref()).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {what}: {answer}"
                );
                assert_eq!(answer["error"]["code"], "unauthorized", "{method} {path}");
            }
        } else {
            let (status, answer) = send(&server, &method, &path, None, body.as_ref()).await;
            assert!(
                status.is_success(),
                "{method} {path} is documented as open but answered {status}: {answer}"
            );
        }
    }
    // Everything under /api but the document itself needs a token.
    let open: Vec<(String, String)> = documented_operations()
        .into_iter()
        .filter(|(method, path)| {
            path.starts_with("/api/")
                && OPENAPI["paths"][path][method.to_ascii_lowercase()]["security"]
                    .as_array()
                    .is_none_or(|s| s.is_empty())
        })
        .collect();
    assert_eq!(
        open,
        [("GET".to_owned(), "/api/openapi.json".to_owned())],
        "API operations documented without a token"
    );
    assert!(secured >= 15, "{secured} operations need a token");
    // No request above changed anything.
    let (status, _) = server
        .admin("GET", &format!("/api/webhooks/{webhook}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = server.admin("GET", "/api/webhooks", None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    server.stop().await;
}
