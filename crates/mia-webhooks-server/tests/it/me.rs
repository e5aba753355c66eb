//! `GET /api/me`: each role's token answers its role and scope; no valid token answers 401;
//! the route is in the OpenAPI document.

use mia_webhooks_model::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ADMIN_TOKEN, TestServer};

fn role(name: &str, tenant: Option<&str>, project: Option<&str>) -> Role {
    Role::new(name, tenant, project).unwrap()
}

#[tokio::test]
async fn every_token_learns_its_role_and_scope() {
    let server = TestServer::start().await;
    let company = server
        .token(role("company-admin", Some("acme"), None))
        .await;
    let project = server
        .token(role("project-admin", Some("acme"), Some("payments")))
        .await;
    let emitter = server.token(role("emitter", None, None)).await;
    let cases = [
        (
            "instance admin",
            ADMIN_TOKEN,
            json!({"role": "instanceAdmin", "tenantId": null, "projectId": null,
                "canManageWebhooks": true, "canEmitEvents": true}),
        ),
        (
            "company admin",
            company.as_str(),
            json!({"role": "companyAdmin", "tenantId": "acme", "projectId": null,
                "canManageWebhooks": true, "canEmitEvents": false}),
        ),
        (
            "project admin",
            project.as_str(),
            json!({"role": "projectAdmin", "tenantId": "acme", "projectId": "payments",
                "canManageWebhooks": true, "canEmitEvents": false}),
        ),
        (
            "emitter",
            emitter.as_str(),
            json!({"role": "emitter", "tenantId": null, "projectId": null,
                "canManageWebhooks": false, "canEmitEvents": true}),
        ),
    ];
    for (who, token, expected) in cases {
        let (status, body) = server.call("GET", "/api/me", Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{who}: {body}");
        assert_eq!(body, expected, "{who}");
        assert!(
            !body.to_string().contains(token),
            "{who}: the answer holds the token"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn no_valid_token_answers_401() {
    let server = TestServer::start().await;
    let (status, body) = server.call("GET", "/api/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, body) = server
        .call("GET", "/api/me", Some("mwh_not-a-token"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    // Only GET: the route changes nothing.
    let (status, body) = server.admin("POST", "/api/me", Some(json!({}))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_it() {
    let server = TestServer::start().await;
    let (status, doc) = server.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let get = &doc["paths"]["/api/me"]["get"];
    assert!(get.is_object(), "OpenAPI lacks GET /api/me");
    assert!(get["responses"].get("200").is_some(), "no 200 answer");
    assert!(get["responses"].get("401").is_some(), "no 401 answer");
    let schema = &doc["components"]["schemas"]["MeBody"]["properties"];
    for field in [
        "role",
        "tenantId",
        "projectId",
        "canManageWebhooks",
        "canEmitEvents",
    ] {
        assert!(schema.get(field).is_some(), "MeBody lacks {field}");
    }
    server.stop().await;
}
