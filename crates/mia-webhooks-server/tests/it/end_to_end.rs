//! Webhooks created through the API receive exactly the events their scope and subscription
//! select, signed over the exact bytes, with the documented headers.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Receiver, TestServer};

const SECRET: &str = "e2e-secret-value";

/// (path on the receiver, scope path of the API)
const WEBHOOKS: [(&str, &str); 5] = [
    ("/instance", "/api/webhooks"),
    ("/company-t1", "/api/companies/t1/webhooks"),
    ("/company-t2", "/api/companies/t2/webhooks"),
    ("/project-t1-p1", "/api/companies/t1/projects/p1/webhooks"),
    ("/project-t1-p2", "/api/companies/t1/projects/p2/webhooks"),
];

fn payload(tenant: Option<&str>, project: Option<&str>, key: &str) -> Value {
    let mut payload = json!({"case": key});
    if let Some(t) = tenant {
        payload["tenantId"] = json!(t);
    }
    if let Some(p) = project {
        payload["projectId"] = json!(p);
    }
    payload
}

#[tokio::test]
async fn events_reach_exactly_the_webhooks_whose_scope_receives_them() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    for (path, scope) in WEBHOOKS {
        server
            .create_webhook(scope, &receiver.url(path), SECRET, &["project_deleted"])
            .await;
    }
    // A webhook subscribed to another event gets nothing of these.
    server
        .create_webhook(
            "/api/webhooks",
            &receiver.url("/other-event"),
            SECRET,
            &["tag_created"],
        )
        .await;

    // (tenant, project) of the event -> receiver paths that must get it.
    let cases: [(Option<&str>, Option<&str>, &[&str]); 8] = [
        (None, None, &["/instance"]),
        (Some("t1"), None, &["/instance", "/company-t1"]),
        (Some("t2"), None, &["/instance", "/company-t2"]),
        (Some("t3"), None, &["/instance"]),
        (
            Some("t1"),
            Some("p1"),
            &["/instance", "/company-t1", "/project-t1-p1"],
        ),
        (
            Some("t1"),
            Some("p2"),
            &["/instance", "/company-t1", "/project-t1-p2"],
        ),
        (Some("t2"), Some("p1"), &["/instance", "/company-t2"]),
        (None, Some("p1"), &["/instance"]),
    ];
    let mut expected: HashMap<(String, String), usize> = HashMap::new();
    let mut total = 0;
    for (i, (tenant, project, paths)) in cases.iter().enumerate() {
        let key = format!("case-{i}");
        let answer = server
            .emit("project_deleted", payload(*tenant, *project, &key))
            .await;
        assert_eq!(answer["deliveries"], json!(paths.len()), "{key}: {answer}");
        for path in *paths {
            *expected
                .entry(((*path).to_owned(), key.clone()))
                .or_default() += 1;
        }
        total += paths.len();
    }
    // 5 webhooks x 8 events: 40 (scope, event) routing decisions, 15 deliveries.
    assert_eq!(total, 15);

    let got = receiver.wait_for(total).await;
    // Give a wrongly routed extra delivery the time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = receiver.received();
    assert_eq!(
        got_all.len(),
        total,
        "exactly the expected deliveries arrive"
    );
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for request in &got {
        mia_webhooks_signature::verify(
            &request.body,
            SECRET.as_bytes(),
            request.header("x-mia-signature"),
        )
        .expect("every delivery is signed over its exact bytes");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("x-mia-event"), "project_deleted");
        assert!(request.header("user-agent").starts_with("mia-webhooks/"));
        assert!(uuid::Uuid::parse_str(request.header("x-mia-delivery")).is_ok());
        let body = request.json();
        assert_eq!(body["eventName"], "project_deleted");
        assert_eq!(body["eventTimestamp"], 1_764_374_400_000_i64);
        let key = body["payload"]["case"].as_str().unwrap().to_owned();
        *seen.entry((request.path.clone(), key)).or_default() += 1;
    }
    assert_eq!(seen, expected);
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
    for _ in 0..200 {
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
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);
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
    let (status, doc) = server.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/webhooks",
        "/api/companies/{tenantId}/webhooks",
        "/api/companies/{tenantId}/projects/{projectId}/webhooks",
        "/api/webhooks/{id}",
        "/api/webhooks/{id}/test",
        "/api/webhooks/{id}/deliveries",
        "/api/deliveries/{id}",
        "/api/deliveries/{id}/redeliver",
        "/api/events",
        "/api/events/catalog",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
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
