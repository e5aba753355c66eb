//! The OpenAPI document describes what the router serves: every route under `/api` (and the
//! operations endpoints) is in it, every operation in it is served and answers a status it
//! lists, and the ingestion envelope has a real schema.
//!
//! Every request the other tests send through `TestServer::call` also checks that its status is
//! listed for its operation (`support::assert_documented`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::routing::{get, patch, post};
use mia_webhooks_delivery::AddressGuard;
use mia_webhooks_model::EventCatalog;
use mia_webhooks_server::AppState;
use mia_webhooks_store::{AnyStore, StoreOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    OPENAPI, Receiver, TestServer, concrete, documented_operations, example_event, minimal_body,
    operation_for,
};

const FORMAT: &str =
    "axum's Debug output of a Router is not as this test reads it; update parse_routes";

/// `{tenant}` in the router and `{tenantId}` in the document name the same segment:
/// parameters compare by position.
fn normalized(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// (method, path) of every route of a router, read from the router itself: axum's `Debug` of a
/// `Router` lists each route's path and, per method, its handler or `None`. However a route is
/// added (`route`, `merge`, `nest`), it is listed there.
fn parse_routes(router: &axum::Router) -> BTreeSet<(String, String)> {
    let text = format!("{router:?}");
    // The router's own routes come before those of its fallback router.
    let own = text.split(", fallback_router:").next().expect(FORMAT);
    let (endpoints, node) = own.split_once("node: Node { paths: {").expect(FORMAT);
    let mut paths = BTreeMap::new();
    for entry in node.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once("): \"").expect(FORMAT);
        let path = rest.split('"').next().expect(FORMAT);
        paths.insert(id.to_owned(), path.to_owned());
    }
    let mut routes = BTreeSet::new();
    for entry in endpoints.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once("): ").expect(FORMAT);
        let path = paths.get(id).expect(FORMAT).clone();
        let Some(fields) = rest.strip_prefix("MethodRouter(MethodRouter { ") else {
            // A service routed without a method router answers every method.
            routes.insert(("ANY".to_owned(), path));
            continue;
        };
        let fields = fields.split(", fallback:").next().expect(FORMAT);
        for field in fields.split(", ") {
            let (method, handler) = field.split_once(": ").expect(FORMAT);
            if handler != "None" {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    assert!(!routes.is_empty(), "{FORMAT}");
    routes
}

fn set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

#[test]
fn reading_a_router_finds_each_route_and_method_however_it_was_added() {
    async fn handler() {}
    let nested = axum::Router::new().route("/x/{name}", get(handler));
    let router: axum::Router = axum::Router::new()
        .route("/a", get(handler).post(handler))
        .route("/b/{id}", patch(handler).delete(handler))
        .merge(axum::Router::new().route("/c", post(handler)))
        .nest("/n", nested)
        .fallback(handler);
    assert_eq!(
        parse_routes(&router),
        set(&[
            ("GET", "/a"),
            ("POST", "/a"),
            ("PATCH", "/b/{id}"),
            ("DELETE", "/b/{id}"),
            ("POST", "/c"),
            ("GET", "/n/x/{name}"),
        ])
    );
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let store = AnyStore::open("memory:", StoreOptions::default())
        .await
        .unwrap();
    let state = AppState::new(
        Arc::new(store),
        EventCatalog::default(),
        AddressGuard::new(Vec::new()),
        None,
    );
    let all = parse_routes(&mia_webhooks_server::router(state));
    // The admin page is not part of the API; every other route is, whatever its path.
    const ADMIN_PAGE: [(&str, &str); 2] = [("GET", "/"), ("GET", "/assets/{name}")];
    for (method, path) in ADMIN_PAGE {
        assert!(
            all.iter().any(|(m, p)| m == method && p == path),
            "the admin page serves {method} {path}: {all:?}"
        );
    }
    let served: BTreeSet<(String, String)> = all
        .iter()
        .filter(|(method, path)| !ADMIN_PAGE.contains(&(method.as_str(), path.as_str())))
        .map(|(method, path)| (method.clone(), normalized(path)))
        .collect();
    assert!(
        served.contains(&("POST".to_owned(), "/api/events".to_owned()))
            && served.contains(&("DELETE".to_owned(), "/api/webhooks/{}".to_owned()))
            && served.contains(&("GET".to_owned(), "/healthz".to_owned())),
        "{FORMAT}: {served:?}"
    );
    let documented: BTreeSet<(String, String)> = documented_operations()
        .into_iter()
        .map(|(method, path)| (method, normalized(&path)))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in the OpenAPI document: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "in the OpenAPI document but not served: {unserved:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_answers_a_success_it_documents() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (webhook, delivery) = server
        .webhook_with_a_delivery(&receiver.url("/probe"))
        .await;

    let mut operations = documented_operations();
    // The others need the webhook: delete it last.
    operations.sort_by_key(|(method, _)| method == "DELETE");
    for (method, template) in &operations {
        let path = concrete(template, &webhook, &delivery);
        let body = minimal_body(method, template, &receiver.url("/created"));
        // `call` also checks that the status is one the document lists.
        let (status, answer) = server.admin(method, &path, body).await;
        assert!(
            status.is_success(),
            "{method} {path} ({template}) with an instance-admin token answered {status}: {answer}"
        );
    }
    let (status, _) = server
        .admin("GET", &format!("/api/webhooks/{webhook}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the DELETE probe deleted");

    // A path parameter that is not UTF-8 once decoded is a 400 the document lists.
    for (method, template) in &operations {
        if !template.contains('{') {
            continue;
        }
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "%FF" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let body = minimal_body(method, template, &receiver.url("/created"));
        let (status, answer) = server.admin(method, &path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
    }
    server.stop().await;
}

#[test]
fn requests_are_matched_to_their_documented_operation() {
    for (method, path, template) in [
        ("GET", "/api/webhooks", Some("/api/webhooks")),
        ("POST", "/api/webhooks", Some("/api/webhooks")),
        (
            "GET",
            "/api/webhooks/abc/deliveries?limit=2",
            Some("/api/webhooks/{id}/deliveries"),
        ),
        ("PATCH", "/api/webhooks/%FF", Some("/api/webhooks/{id}")),
        ("GET", "/api/events/catalog", Some("/api/events/catalog")),
        (
            "POST",
            "/api/companies/t/projects/p/webhooks",
            Some("/api/companies/{tenantId}/projects/{projectId}/webhooks"),
        ),
        ("PUT", "/api/events", None),
        ("GET", "/api/nowhere", None),
        ("GET", "/api/webhooks//deliveries", None),
    ] {
        assert_eq!(
            operation_for(method, path).map(|(t, _)| t),
            template.map(str::to_owned),
            "{method} {path}"
        );
    }
}

#[test]
fn each_operation_lists_the_errors_its_checks_can_answer() {
    for (method, template) in documented_operations() {
        let operation = &OPENAPI["paths"][&template][method.to_ascii_lowercase()];
        let responses = &operation["responses"];
        let lists = |code: &str| responses.get(code).is_some();
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        if secured {
            // The token is looked up in the database, which may not answer.
            for code in ["401", "503"] {
                assert!(
                    lists(code),
                    "{method} {template} needs a token but lacks {code}"
                );
            }
        }
        if operation.get("requestBody").is_some() {
            for code in ["400", "413"] {
                assert!(
                    lists(code),
                    "{method} {template} reads a body but lacks {code}"
                );
            }
        }
        if template.contains('{') {
            for code in ["400", "404"] {
                assert!(lists(code), "{method} {template} has ids but lacks {code}");
            }
        }
    }
    // Roles that can never do something get 403, not 404: the document says so.
    for (method, path) in [("post", "/api/events"), ("get", "/api/events/catalog")] {
        assert!(
            OPENAPI["paths"][path][method]["responses"]
                .get("403")
                .is_some(),
            "{method} {path} lacks 403"
        );
    }
}

/// Follows a `$ref` into `components`.
fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &OPENAPI["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[tokio::test]
async fn the_ingestion_envelope_is_documented_field_by_field_and_its_example_is_accepted() {
    let request = &OPENAPI["paths"]["/api/events"]["post"]["requestBody"];
    let envelope = resolve(&request["content"]["application/json"]["schema"]);
    assert_eq!(envelope["type"], "object", "{envelope}");
    assert_eq!(envelope["additionalProperties"], false, "{envelope}");
    let required: BTreeSet<&str> = envelope["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["eventName", "eventTimestamp", "payload"])
    );
    let properties = &envelope["properties"];
    assert_eq!(properties["eventName"]["type"], "string");
    assert_eq!(properties["eventTimestamp"]["type"], "integer");
    assert_eq!(properties["eventTimestamp"]["minimum"], 0);
    let payload = resolve(&properties["payload"]);
    assert_eq!(payload["type"], "object", "{payload}");
    for field in ["tenantId", "companyId", "projectId"] {
        assert_eq!(
            payload["properties"][field]["type"]
                .as_array()
                .map(|t| t.contains(&json!("string"))),
            Some(true),
            "payload.{field}: {payload}"
        );
    }

    // The documented example is an event the server takes.
    let server = TestServer::start().await;
    let (status, answer) = server
        .admin("POST", "/api/events", Some(example_event()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    server.stop().await;
}
