//! Each role against each endpoint and scope: what is out of reach answers 404, exactly like
//! what does not exist; no valid token answers 401.

use mia_webhooks_model::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ADMIN_TOKEN, Receiver, TestServer};

fn role(name: &str, tenant: Option<&str>, project: Option<&str>) -> Role {
    Role::new(name, tenant, project).unwrap()
}

#[tokio::test]
async fn roles_reach_their_scopes_and_nothing_else() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let target = receiver.url("/hook");
    let ids = [
        server
            .create_webhook("/api/webhooks", &target, "s", &["project_deleted"])
            .await,
        server
            .create_webhook(
                "/api/companies/t1/webhooks",
                &target,
                "s",
                &["project_deleted"],
            )
            .await,
        server
            .create_webhook(
                "/api/companies/t1/projects/p1/webhooks",
                &target,
                "s",
                &["project_deleted"],
            )
            .await,
        server
            .create_webhook(
                "/api/companies/t2/webhooks",
                &target,
                "s",
                &["project_deleted"],
            )
            .await,
    ];
    let missing = "0190a0f0-0000-7000-8000-000000000000";
    let company_t1 = server.token(role("company-admin", Some("t1"), None)).await;
    let project_t1p1 = server
        .token(role("project-admin", Some("t1"), Some("p1")))
        .await;
    let emitter = server.token(role("emitter", None, None)).await;
    let company_t2 = server.token(role("company-admin", Some("t2"), None)).await;

    // Which of the four webhooks (instance, t1, t1/p1, t2) each token may see.
    let reach: [(&str, &str, [bool; 4]); 5] = [
        ("instance admin", ADMIN_TOKEN, [true, true, true, true]),
        ("company admin t1", &company_t1, [false, true, true, false]),
        (
            "project admin t1/p1",
            &project_t1p1,
            [false, false, true, false],
        ),
        ("company admin t2", &company_t2, [false, false, false, true]),
        ("emitter", &emitter, [false, false, false, false]),
    ];
    for (who, token, visible) in reach {
        for (id, visible) in ids.iter().zip(visible) {
            let expected = if visible {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            let (status, body) = server
                .call("GET", &format!("/api/webhooks/{id}"), Some(token), None)
                .await;
            assert_eq!(status, expected, "{who} GET webhook {id}: {body}");
            let (status, _) = server
                .call(
                    "GET",
                    &format!("/api/webhooks/{id}/deliveries"),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(status, expected, "{who} GET deliveries of {id}");
            let patch = json!({"description": "edited"});
            let (status, _) = server
                .call(
                    "PATCH",
                    &format!("/api/webhooks/{id}"),
                    Some(token),
                    Some(patch),
                )
                .await;
            assert_eq!(status, expected, "{who} PATCH {id}");
            let (status, _) = server
                .call(
                    "POST",
                    &format!("/api/webhooks/{id}/test"),
                    Some(token),
                    None,
                )
                .await;
            let test_expected = if visible {
                StatusCode::ACCEPTED
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(status, test_expected, "{who} POST test {id}");
        }
        // A missing id answers exactly as an out-of-reach one.
        let (status, body) = server
            .call(
                "GET",
                &format!("/api/webhooks/{missing}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }

    // Listing and creating per scope.
    let scopes = [
        "/api/webhooks",
        "/api/companies/t1/webhooks",
        "/api/companies/t1/projects/p1/webhooks",
        "/api/companies/t2/webhooks",
    ];
    let can: [(&str, &str, [bool; 4]); 4] = [
        ("company admin t1", &company_t1, [false, true, true, false]),
        (
            "project admin t1/p1",
            &project_t1p1,
            [false, false, true, false],
        ),
        ("company admin t2", &company_t2, [false, false, false, true]),
        ("emitter", &emitter, [false, false, false, false]),
    ];
    for (who, token, allowed) in can {
        for (scope, allowed) in scopes.iter().zip(allowed) {
            let (status, _) = server.call("GET", scope, Some(token), None).await;
            assert_eq!(
                status,
                if allowed {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                },
                "{who} list {scope}"
            );
            let body = json!({"targetUrl": target, "secret": "s", "events": ["project_deleted"]});
            let (status, _) = server.call("POST", scope, Some(token), Some(body)).await;
            assert_eq!(
                status,
                if allowed {
                    StatusCode::CREATED
                } else {
                    StatusCode::NOT_FOUND
                },
                "{who} create on {scope}"
            );
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
    }

    // Deliveries of another tenant's webhook are out of reach too.
    let (_, page) = server
        .admin("GET", &format!("/api/webhooks/{}/deliveries", ids[3]), None)
        .await;
    let delivery = page["items"][0]["id"]
        .as_str()
        .expect("the t2 webhook has deliveries")
        .to_owned();
    for (token, expected) in [
        (company_t1.as_str(), StatusCode::NOT_FOUND),
        (company_t2.as_str(), StatusCode::OK),
    ] {
        let (status, _) = server
            .call(
                "GET",
                &format!("/api/deliveries/{delivery}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, expected);
        let (status, _) = server
            .call(
                "POST",
                &format!("/api/deliveries/{delivery}/redeliver"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(
            status,
            if expected == StatusCode::OK {
                StatusCode::ACCEPTED
            } else {
                expected
            }
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn missing_malformed_and_unknown_tokens_are_401() {
    let server = TestServer::start().await;
    let paths = [
        ("GET", "/api/webhooks"),
        ("POST", "/api/events"),
        ("GET", "/api/events/catalog"),
        ("GET", "/api/webhooks/x"),
    ];
    for (method, path) in paths {
        let (status, body) = server.call(method, path, None, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = server
            .call(method, path, Some("mwh_not-a-real-token"), None)
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with an unknown token"
        );
        for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", ADMIN_TOKEN] {
            let response = server
                .client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    server.url(path),
                )
                .header("authorization", header)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status().as_u16(),
                401,
                "{method} {path} with Authorization: {header}"
            );
        }
    }
    server.stop().await;
}
