//! `GET /api/me`: what the caller's token is and reaches, so that a client (the admin page)
//! can open the scope the token manages instead of guessing one.

use axum::Json;
use mia_webhooks_model::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;

/// The caller's token: its role and the scope it manages. Says nothing else about the token
/// (no id, no label, never the token itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MeBody {
    /// `instanceAdmin`, `companyAdmin`, `projectAdmin` or `emitter`.
    role: &'static str,
    /// The company of a company or project admin; null for the other roles.
    tenant_id: Option<String>,
    /// The project of a project admin; null for the other roles.
    project_id: Option<String>,
    /// Whether the token may see and change webhooks (every role but `emitter`).
    can_manage_webhooks: bool,
    /// Whether the token may post events (`instanceAdmin` and `emitter`).
    can_emit_events: bool,
}

impl From<&Role> for MeBody {
    fn from(role: &Role) -> Self {
        let (name, tenant_id, project_id) = match role {
            Role::InstanceAdmin => ("instanceAdmin", None, None),
            Role::CompanyAdmin { tenant_id } => ("companyAdmin", Some(tenant_id), None),
            Role::ProjectAdmin {
                tenant_id,
                project_id,
            } => ("projectAdmin", Some(tenant_id), Some(project_id)),
            Role::Emitter => ("emitter", None, None),
        };
        MeBody {
            role: name,
            tenant_id: tenant_id.map(|t| t.as_str().to_owned()),
            project_id: project_id.map(|p| p.as_str().to_owned()),
            can_manage_webhooks: role.scope().is_some(),
            can_emit_events: role.can_emit(),
        }
    }
}

/// The caller's role and the scope its token manages. Any valid token may ask, an emitter's
/// too; without one the answer is 401.
#[utoipa::path(get, path = "/api/me", tag = "tokens",
    responses((status = 200, body = MeBody), crate::openapi::TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn me(caller: Caller) -> Json<MeBody> {
    Json(MeBody::from(&caller.role))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(role: Role, expected: serde_json::Value) {
        let body = serde_json::to_value(MeBody::from(&role)).expect("serializes");
        assert_eq!(body, expected, "{role}");
    }

    #[test]
    fn each_role_answers_its_name_and_scope() {
        let role = |name, tenant, project| Role::new(name, tenant, project).expect("valid role");
        check(
            role("instance-admin", None, None),
            serde_json::json!({"role": "instanceAdmin", "tenantId": null, "projectId": null,
                "canManageWebhooks": true, "canEmitEvents": true}),
        );
        check(
            role("company-admin", Some("acme"), None),
            serde_json::json!({"role": "companyAdmin", "tenantId": "acme", "projectId": null,
                "canManageWebhooks": true, "canEmitEvents": false}),
        );
        check(
            role("project-admin", Some("acme"), Some("payments")),
            serde_json::json!({"role": "projectAdmin", "tenantId": "acme", "projectId": "payments",
                "canManageWebhooks": true, "canEmitEvents": false}),
        );
        check(
            role("emitter", None, None),
            serde_json::json!({"role": "emitter", "tenantId": null, "projectId": null,
                "canManageWebhooks": false, "canEmitEvents": true}),
        );
    }
}
