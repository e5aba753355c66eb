//! Webhooks created through the API receive exactly the events their scope and subscription
//! select, signed over the exact bytes, with the documented headers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Receiver, TestServer};

const SECRET: &str = "e2e-secret-value";

/// (path on the receiver, scope path of the API, events subscribed to)
const WEBHOOKS: [(&str, &str, &[&str]); 8] = [
    ("/instance", "/api/webhooks", &["project_deleted"]),
    (
        "/company-t1",
        "/api/companies/t1/webhooks",
        &["project_deleted"],
    ),
    (
        "/company-t2",
        "/api/companies/t2/webhooks",
        &["project_deleted"],
    ),
    (
        "/project-t1-p1",
        "/api/companies/t1/projects/p1/webhooks",
        &["project_deleted"],
    ),
    (
        "/project-t1-p2",
        "/api/companies/t1/projects/p2/webhooks",
        &["project_deleted"],
    ),
    ("/users-instance", "/api/webhooks", &["company_user_added"]),
    (
        "/users-t1",
        "/api/companies/t1/webhooks",
        &["company_user_added"],
    ),
    (
        "/users-t1-p1",
        "/api/companies/t1/projects/p1/webhooks",
        &["company_user_added"],
    ),
];

/// One event of the matrix: its name, `tenantId`, `companyId` and `projectId` (each left out
/// when `None`), and the receiver paths that must get it, each once.
struct Case {
    event: &'static str,
    tenant: Option<&'static str>,
    company: Option<&'static str>,
    project: Option<&'static str>,
    reaches: &'static [&'static str],
}

const fn case(
    event: &'static str,
    tenant: Option<&'static str>,
    company: Option<&'static str>,
    project: Option<&'static str>,
    reaches: &'static [&'static str],
) -> Case {
    Case {
        event,
        tenant,
        company,
        project,
        reaches,
    }
}

const PD: &str = "project_deleted";
const USER: &str = "company_user_added";

const CASES: [Case; 18] = [
    // No company: instance webhooks only.
    case(PD, None, None, None, &["/instance"]),
    // Company only: its company's webhooks, not its projects'.
    case(PD, Some("t1"), None, None, &["/instance", "/company-t1"]),
    case(PD, Some("t2"), None, None, &["/instance", "/company-t2"]),
    // Another company, with no webhook of its own.
    case(PD, Some("t3"), None, None, &["/instance"]),
    // Company and project.
    case(
        PD,
        Some("t1"),
        None,
        Some("p1"),
        &["/instance", "/company-t1", "/project-t1-p1"],
    ),
    case(
        PD,
        Some("t1"),
        None,
        Some("p2"),
        &["/instance", "/company-t1", "/project-t1-p2"],
    ),
    // Another project of t1, with no webhook of its own.
    case(
        PD,
        Some("t1"),
        None,
        Some("p3"),
        &["/instance", "/company-t1"],
    ),
    // p1 of another company is not t1's p1.
    case(
        PD,
        Some("t2"),
        None,
        Some("p1"),
        &["/instance", "/company-t2"],
    ),
    // A project without a company belongs to no company.
    case(PD, None, None, Some("p1"), &["/instance"]),
    // `companyId` is another name for `tenantId` (SPEC §3).
    case(PD, None, Some("t1"), None, &["/instance", "/company-t1"]),
    case(
        PD,
        None,
        Some("t1"),
        Some("p1"),
        &["/instance", "/company-t1", "/project-t1-p1"],
    ),
    case(
        PD,
        None,
        Some("t2"),
        Some("p2"),
        &["/instance", "/company-t2"],
    ),
    case(
        PD,
        Some("t1"),
        Some("t1"),
        Some("p2"),
        &["/instance", "/company-t1", "/project-t1-p2"],
    ),
    // Another event: only the webhooks subscribed to it, at each scope.
    case(USER, None, Some("t3"), None, &["/users-instance"]),
    case(
        USER,
        None,
        Some("t1"),
        None,
        &["/users-instance", "/users-t1"],
    ),
    case(
        USER,
        None,
        Some("t1"),
        Some("p1"),
        &["/users-instance", "/users-t1", "/users-t1-p1"],
    ),
    case(USER, None, Some("t2"), Some("p1"), &["/users-instance"]),
    // An event no webhook subscribes to reaches none, whatever its company and project.
    case("project_created", Some("t1"), None, Some("p1"), &[]),
];

impl Case {
    fn payload(&self, key: &str) -> Value {
        let mut payload = json!({"case": key});
        for (field, value) in [
            ("tenantId", self.tenant),
            ("companyId", self.company),
            ("projectId", self.project),
        ] {
            if let Some(value) = value {
                payload[field] = json!(value);
            }
        }
        if self.event == USER {
            // The catalogue requires these of company_user_added.
            payload["userId"] = json!("u1");
            payload["email"] = json!("u1@example.com");
            payload["roleId"] = json!("admin");
        }
        payload
    }
}

#[tokio::test]
async fn events_reach_exactly_the_webhooks_whose_scope_and_subscription_select_them() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let mut webhook_ids = Vec::new();
    for (path, scope, events) in WEBHOOKS {
        let id = server
            .create_webhook(scope, &receiver.url(path), SECRET, events)
            .await;
        webhook_ids.push((path, id));
    }

    // (receiver path, case key) -> times it must arrive (once).
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, case) in CASES.iter().enumerate() {
        let key = format!("case-{i}");
        let answer = server.emit(case.event, case.payload(&key)).await;
        assert_eq!(
            answer["deliveries"],
            json!(case.reaches.len()),
            "{key}: {answer}"
        );
        for path in case.reaches {
            *expected
                .entry(((*path).to_owned(), key.clone()))
                .or_default() += 1;
        }
    }
    let total: usize = expected.values().sum();
    // 8 webhooks x 18 events: 144 (webhook, event) routing decisions, 34 deliveries.
    assert_eq!(total, 34);
    assert!(
        WEBHOOKS
            .iter()
            .all(|(path, ..)| expected.keys().any(|(p, _)| p == path)),
        "every webhook receives some event it subscribes to"
    );

    // The deliveries are stored with their event, before the 202: each webhook's log lists
    // exactly its events. Then every one of them succeeds.
    let mut logged: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (path, id) in &webhook_ids {
        let page = wait_for_status(&server, id, "succeeded").await;
        for delivery in page["items"].as_array().unwrap() {
            let (_, detail) = server
                .admin(
                    "GET",
                    &format!("/api/deliveries/{}", delivery["id"].as_str().unwrap()),
                    None,
                )
                .await;
            let body: Value = serde_json::from_str(detail["payload"].as_str().unwrap()).unwrap();
            let key = body["payload"]["case"].as_str().unwrap().to_owned();
            *logged.entry(((*path).to_owned(), key)).or_default() += 1;
        }
    }
    assert_eq!(logged, expected, "the delivery logs");

    // Every delivery has succeeded, so every POST has arrived: exactly these.
    let got = receiver.received();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for request in &got {
        mia_webhooks_signature::verify(
            &request.body,
            SECRET.as_bytes(),
            request.header("x-mia-signature"),
        )
        .expect("every delivery is signed over its exact bytes");
        assert_eq!(request.header("content-type"), "application/json");
        let body = request.json();
        assert_eq!(request.header("x-mia-event"), body["eventName"]);
        assert!(request.header("user-agent").starts_with("mia-webhooks/"));
        assert!(uuid::Uuid::parse_str(request.header("x-mia-delivery")).is_ok());
        assert_eq!(body["eventTimestamp"], 1_764_374_400_000_i64);
        let key = body["payload"]["case"].as_str().unwrap().to_owned();
        let case = &CASES[key["case-".len()..].parse::<usize>().unwrap()];
        assert_eq!(body["eventName"], case.event, "{key}");
        *seen.entry((request.path.clone(), key)).or_default() += 1;
    }
    assert_eq!(seen, expected, "the POSTs each receiver path got");
    server.stop().await;
}

#[tokio::test]
async fn the_delivery_log_shows_attempts_and_redelivery_resends_the_same_bytes() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let id = server
        .create_webhook(
            "/api/webhooks",
            &receiver.url("/hook"),
            SECRET,
            &["project_deleted"],
        )
        .await;
    server.emit("project_deleted", json!({"n": 1})).await;
    let first = receiver.wait_for(1).await;

    let deliveries = wait_for_status(&server, &id, "succeeded").await;
    let delivery = &deliveries["items"][0];
    assert_eq!(delivery["attemptCount"], 1);
    assert_eq!(delivery["lastAttempt"]["statusCode"], 200);
    assert_eq!(
        first[0].header("x-mia-delivery"),
        delivery["id"].as_str().unwrap()
    );

    let (status, detail) = server
        .admin(
            "GET",
            &format!("/api/deliveries/{}", delivery["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(
        detail["payload"].as_str().unwrap().as_bytes(),
        &first[0].body[..]
    );

    let (status, again) = server
        .admin(
            "POST",
            &format!(
                "/api/deliveries/{}/redeliver",
                delivery["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let both = receiver.wait_for(2).await;
    assert_eq!(
        both[1].body, both[0].body,
        "a redelivery sends the same event bytes"
    );
    assert_eq!(
        both[1].header("x-mia-delivery"),
        again["id"].as_str().unwrap()
    );
    assert_ne!(
        both[1].header("x-mia-delivery"),
        both[0].header("x-mia-delivery")
    );
    server.stop().await;
}

async fn wait_for_status(server: &TestServer, webhook: &str, status: &str) -> Value {
    // Up to 30 s: a busy two-core CI machine runs the other test binaries' tests beside these.
    for _ in 0..1200 {
        let (code, page) = server
            .admin("GET", &format!("/api/webhooks/{webhook}/deliveries"), None)
            .await;
        assert_eq!(code, StatusCode::OK, "{page}");
        if page["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(|d| d["status"] == status))
        {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deliveries of {webhook} never all reached {status}");
}

#[tokio::test]
async fn editing_without_a_secret_keeps_it_and_a_new_secret_replaces_it() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let id = server
        .create_webhook(
            "/api/webhooks",
            "https://example.invalid/hook",
            SECRET,
            &["project_deleted"],
        )
        .await;

    let (status, body) = server
        .admin(
            "PATCH",
            &format!("/api/webhooks/{id}"),
            Some(json!({"targetUrl": receiver.url("/edited")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["targetUrl"], receiver.url("/edited"));
    assert_eq!(body["secretSet"], true);
    assert!(
        !body.to_string().contains(SECRET),
        "no response shows the secret"
    );

    let (status, test) = server
        .admin("POST", &format!("/api/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{test}");
    let got = receiver.wait_for(1).await;
    mia_webhooks_signature::verify(
        &got[0].body,
        SECRET.as_bytes(),
        got[0].header("x-mia-signature"),
    )
    .unwrap();
    assert_eq!(
        got[0].header("x-mia-event"),
        mia_webhooks_server::TEST_EVENT_NAME
    );

    let (status, _) = server
        .admin(
            "PATCH",
            &format!("/api/webhooks/{id}"),
            Some(json!({"secret": "a-brand-new-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server
        .admin("POST", &format!("/api/webhooks/{id}/test"), None)
        .await;
    let got = receiver.wait_for(2).await;
    mia_webhooks_signature::verify(
        &got[1].body,
        b"a-brand-new-secret",
        got[1].header("x-mia-signature"),
    )
    .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_webhook_stops_its_deliveries() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let id = server
        .create_webhook(
            "/api/webhooks",
            &receiver.url("/gone"),
            SECRET,
            &["project_deleted"],
        )
        .await;
    let (status, _) = server
        .admin("DELETE", &format!("/api/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .admin("GET", &format!("/api/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let answer = server.emit("project_deleted", json!({})).await;
    assert_eq!(answer["deliveries"], 0);
    server.stop().await;
}

#[tokio::test]
async fn lists_filter_by_event_and_paginate() {
    let server = TestServer::start().await;
    for i in 0..5 {
        let events: &[&str] = if i % 2 == 0 {
            &["project_created"]
        } else {
            &["tag_created"]
        };
        server
            .create_webhook(
                "/api/companies/acme/webhooks",
                &format!("https://example.invalid/{i}"),
                SECRET,
                events,
            )
            .await;
    }
    let (_, filtered) = server
        .admin(
            "GET",
            "/api/companies/acme/webhooks?events=tag_created",
            None,
        )
        .await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 2);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/companies/acme/webhooks?limit=2&cursor={c}"),
            None => "/api/companies/acme/webhooks?limit=2".to_owned(),
        };
        let (status, page) = server.admin("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert!(!item.to_string().contains(SECRET));
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 5, "no webhook is listed twice: {seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let server = TestServer::start().await;
    let (status, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = server.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let (status, metrics) = server.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("mia_webhooks_queue_depth"),
        "{metrics}"
    );
    // The document itself: tests/it/openapi.rs compares it with the routes served.
    let (status, doc) = server.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "mia-webhooks");
    let (status, catalog) = server.admin("GET", "/api/events/catalog", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = catalog["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"project_created") && names.contains(&"project_deleted"),
        "{names:?}"
    );
    server.stop().await;
}
