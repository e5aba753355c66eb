//! `/api/webhooks`, `/api/companies/{tenantId}/webhooks`,
//! `/api/companies/{tenantId}/projects/{projectId}/webhooks` and `/api/webhooks/{id}`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mia_webhooks_model::{
    EventName, MAX_EVENTS, NewWebhook, ProjectId, Scope, TenantId, Timestamp, Webhook, WebhookId,
    WebhookInput, WebhookPatch, WebhookPatchInput,
};
use mia_webhooks_store::{Store, WebhookQuery};

use super::body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::{BodyTooLarge, TokenErrors};
use crate::state::AppState;
use crate::wire::{CreateWebhookRequest, PatchWebhookRequest, WebhookBody, WebhookPage};

/// The webhooks installed on the instance.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    params(ListParams),
    responses((status = 200, body = WebhookPage),
        (status = 400, description = "a bad query parameter (`events`, `limit`, `cursor`)", body = crate::error::ErrorBody),
        (status = 404, description = "this token does not manage the instance scope", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn list_instance(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<WebhookPage>, ApiError> {
    list(&state, &caller, Scope::Instance, &params).await
}

/// The webhooks installed on a company.
#[utoipa::path(get, path = "/api/companies/{tenantId}/webhooks", tag = "webhooks",
    params(("tenantId" = String, Path, description = "company id"), ListParams),
    responses((status = 200, body = WebhookPage),
        (status = 400, description = "a bad query parameter (`events`, `limit`, `cursor`) or a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "this token does not manage this company, or the company id is invalid", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn list_company(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<WebhookPage>, ApiError> {
    list(&state, &caller, company_scope(&tenant)?, &params).await
}

/// The webhooks installed on a project.
#[utoipa::path(get, path = "/api/companies/{tenantId}/projects/{projectId}/webhooks", tag = "webhooks",
    params(("tenantId" = String, Path, description = "company id"), ("projectId" = String, Path, description = "project id"), ListParams),
    responses((status = 200, body = WebhookPage),
        (status = 400, description = "a bad query parameter (`events`, `limit`, `cursor`) or a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "this token does not manage this project, or an id is invalid", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn list_project(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, project)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<WebhookPage>, ApiError> {
    list(&state, &caller, project_scope(&tenant, &project)?, &params).await
}

/// Query parameters of the webhook lists.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the query string for OpenAPI; parsed by hand"
)]
pub(crate) struct ListParams {
    /// Comma-separated event names: only webhooks subscribed to at least one of them.
    events: Option<String>,
    /// Page size, 1 to 100 (default 50).
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The `events` filter of a list: distinct names, at most as many as a webhook may subscribe to.
fn event_filter(raw: Option<&str>) -> Result<Vec<EventName>, ApiError> {
    let mut names: Vec<EventName> = Vec::new();
    for name in raw.unwrap_or_default().split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let name = EventName::new_for_field(name, "events")
            .map_err(|e| ApiError::from(e).with_field("events"))?;
        if !names.contains(&name) {
            if names.len() == MAX_EVENTS {
                return Err(ApiError::bad_field(
                    "invalid_query",
                    "events",
                    format!("events names more than {MAX_EVENTS} distinct events"),
                ));
            }
            names.push(name);
        }
    }
    Ok(names)
}

async fn list(
    state: &AppState,
    caller: &Caller,
    scope: Scope,
    params: &HashMap<String, String>,
) -> Result<Json<WebhookPage>, ApiError> {
    caller.require_scope(&scope, "scope")?;
    let events = event_filter(params.get("events").map(String::as_str))?;
    let limit = body::limit(params.get("limit").map(String::as_str))?;
    let after = body::cursor::<WebhookId>(params.get("cursor").map(String::as_str))?;
    let page = state
        .store()
        .list_webhooks(&WebhookQuery {
            scope,
            events,
            limit,
            after,
        })
        .await?;
    let next_cursor = if page.has_more {
        page.items.last().map(|w| w.id.to_string())
    } else {
        None
    };
    Ok(Json(WebhookPage {
        items: page.items.iter().map(WebhookBody::from).collect(),
        next_cursor,
    }))
}

/// Installs a webhook on the instance.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookBody),
        (status = 400, description = "bad input; `field` names it (`targetUrl`, `secret`, `events[1]`, `proxy.url`, `body`, ...)", body = crate::error::ErrorBody),
        (status = 404, description = "this token does not manage the instance scope", body = crate::error::ErrorBody),
        BodyTooLarge, TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn create_instance(
    State(state): State<AppState>,
    caller: Caller,
    payload: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    create(&state, &caller, Scope::Instance, payload).await
}

/// Installs a webhook on a company.
#[utoipa::path(post, path = "/api/companies/{tenantId}/webhooks", tag = "webhooks",
    params(("tenantId" = String, Path, description = "company id")),
    request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookBody),
        (status = 400, description = "bad input; `field` names it (`targetUrl`, `secret`, `events[1]`, `proxy.url`, `body`, ...)", body = crate::error::ErrorBody),
        (status = 404, description = "this token does not manage this company, or the company id is invalid", body = crate::error::ErrorBody),
        BodyTooLarge, TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn create_company(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    create(&state, &caller, company_scope(&tenant)?, payload).await
}

/// Installs a webhook on a project.
#[utoipa::path(post, path = "/api/companies/{tenantId}/projects/{projectId}/webhooks", tag = "webhooks",
    params(("tenantId" = String, Path, description = "company id"), ("projectId" = String, Path, description = "project id")),
    request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookBody),
        (status = 400, description = "bad input; `field` names it (`targetUrl`, `secret`, `events[1]`, `proxy.url`, `body`, ...)", body = crate::error::ErrorBody),
        (status = 404, description = "this token does not manage this project, or an id is invalid", body = crate::error::ErrorBody),
        BodyTooLarge, TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, project)): Path<(String, String)>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    create(&state, &caller, project_scope(&tenant, &project)?, payload).await
}

async fn create(
    state: &AppState,
    caller: &Caller,
    scope: Scope,
    payload: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse + use<>, ApiError> {
    caller.require_scope(&scope, "scope")?;
    let request: CreateWebhookRequest = body::json(payload)?;
    let new: NewWebhook = WebhookInput::from(request).validate(scope, &state.inner.catalog)?;
    check_addresses(state, Some(&new.target_url), new.proxy.as_ref())?;
    let now = Timestamp::now();
    let webhook = Webhook {
        id: WebhookId::new(),
        scope: new.scope,
        target_url: new.target_url,
        secret: new.secret,
        events: new.events,
        ca_certificate: new.ca_certificate,
        proxy: new.proxy,
        description: new.description,
        enabled: new.enabled,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    state.store().create_webhook(&webhook).await?;
    tracing::info!(webhook_id = %webhook.id, scope = %webhook.scope, "webhook created");
    Ok((StatusCode::CREATED, Json(WebhookBody::from(&webhook))))
}

/// One webhook.
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 200, body = WebhookBody),
        (status = 400, description = "a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "no such webhook, or one this token does not manage", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookBody>, ApiError> {
    let webhook = load(&state, &caller, &id).await?;
    Ok(Json(WebhookBody::from(&webhook)))
}

/// Edits a webhook: fields left out stay; the secret is replaced only when given.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id")),
    request_body = PatchWebhookRequest,
    responses((status = 200, body = WebhookBody),
        (status = 400, description = "bad input; `field` names it (`targetUrl`, `secret`, `events`, `proxy.url`, `body`, ...)", body = crate::error::ErrorBody),
        (status = 404, description = "no such webhook, or one this token does not manage", body = crate::error::ErrorBody),
        BodyTooLarge, TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookBody>, ApiError> {
    let webhook = load(&state, &caller, &id).await?;
    let mut request: PatchWebhookRequest = body::json(payload)?;
    request.refuse_nulls()?;
    request.keep_shown_proxy(webhook.proxy.as_ref());
    let patch: WebhookPatch = WebhookPatchInput::from(request).validate(&state.inner.catalog)?;
    check_addresses(
        &state,
        patch.target_url.as_ref(),
        patch.proxy.as_ref().and_then(Option::as_ref),
    )?;
    let updated = state
        .store()
        .update_webhook(webhook.id, patch, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    tracing::info!(webhook_id = %updated.id, "webhook updated");
    Ok(Json(WebhookBody::from(&updated)))
}

/// Deletes a webhook with its deliveries.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 204, description = "deleted, with its deliveries"),
        (status = 400, description = "a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "no such webhook, or one this token does not manage", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let webhook = load(&state, &caller, &id).await?;
    if !state.store().delete_webhook(webhook.id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    tracing::info!(webhook_id = %webhook.id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Loads a webhook the caller may manage; anything else is 404.
pub(crate) async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Webhook, ApiError> {
    let id: WebhookId = body::path_id(id, "webhook")?;
    let webhook = state
        .store()
        .get_webhook(id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    caller.require_scope(&webhook.scope, "webhook")?;
    Ok(webhook)
}

fn check_addresses(
    state: &AppState,
    target: Option<&mia_webhooks_model::TargetUrl>,
    proxy: Option<&mia_webhooks_model::ProxyUrl>,
) -> Result<(), ApiError> {
    if let Some(target) = target {
        state.inner.guard.check_url(target.as_url()).map_err(|e| {
            ApiError::bad_field(
                "blocked_address",
                "targetUrl",
                format!("targetUrl points to a blocked address: {e}"),
            )
        })?;
    }
    if let Some(proxy) = proxy {
        state.inner.guard.check_url(proxy.as_url()).map_err(|e| {
            ApiError::bad_field(
                "blocked_address",
                "proxy.url",
                format!("proxy.url points to a blocked address: {e}"),
            )
        })?;
    }
    Ok(())
}

fn company_scope(tenant: &str) -> Result<Scope, ApiError> {
    Ok(Scope::Company {
        tenant_id: TenantId::new(tenant).map_err(|_| ApiError::not_found("scope"))?,
    })
}

fn project_scope(tenant: &str, project: &str) -> Result<Scope, ApiError> {
    Ok(Scope::Project {
        tenant_id: TenantId::new(tenant).map_err(|_| ApiError::not_found("scope"))?,
        project_id: ProjectId::new(project).map_err(|_| ApiError::not_found("scope"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_filter_keeps_each_name_once_and_at_most_a_webhook_s_worth() {
        let names = |raw: &str| {
            event_filter(Some(raw))
                .unwrap()
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("a_b,a_b, c_d ,,a_b"), ["a_b", "c_d"]);
        assert_eq!(names(&vec!["a_b"; 1000].join(",")), ["a_b"]);
        assert!(event_filter(None).unwrap().is_empty());
        let most: Vec<String> = (0..MAX_EVENTS).map(|i| format!("event_n{i}")).collect();
        assert_eq!(
            event_filter(Some(&most.join(","))).unwrap().len(),
            MAX_EVENTS
        );
        let too_many: Vec<String> = (0..=MAX_EVENTS).map(|i| format!("event_n{i}")).collect();
        assert!(event_filter(Some(&too_many.join(","))).is_err());
        assert!(event_filter(Some("Bad-Name")).is_err());
    }
}
