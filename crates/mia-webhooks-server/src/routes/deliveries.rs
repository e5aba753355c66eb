//! The delivery log: `GET /api/webhooks/{id}/deliveries`, `GET /api/deliveries/{id}`,
//! `POST /api/deliveries/{id}/redeliver`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use mia_webhooks_model::{DeliveryId, DeliveryStatus, Timestamp};
use mia_webhooks_store::{DeliveryDetail, DeliveryQuery, Store};

use super::{body, webhooks};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::TokenErrors;
use crate::state::AppState;
use crate::wire::{AttemptBody, DeliveryBody, DeliveryDetailBody, DeliveryPage};

/// The deliveries of a webhook, newest first.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "webhook id"),
        ("status" = Option<String>, Query, description = "pending, delivering, succeeded, failed or cancelled"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = DeliveryPage),
        (status = 400, description = "a bad query parameter (`status`, `limit`, `cursor`) or a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "no such webhook, or one this token does not manage", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let webhook = webhooks::load(&state, &caller, &id).await?;
    let status = match params.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<DeliveryStatus>()
                .map_err(|e| ApiError::from(e).with_field("status"))?,
        ),
    };
    let limit = body::limit(params.get("limit").map(String::as_str))?;
    let before = body::cursor::<DeliveryId>(params.get("cursor").map(String::as_str))?;
    let page = state
        .store()
        .list_deliveries(&DeliveryQuery {
            webhook: webhook.id,
            status,
            limit,
            before,
        })
        .await?;
    let next_cursor = if page.has_more {
        page.items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        items: page.items.iter().map(DeliveryBody::from).collect(),
        next_cursor,
    }))
}

/// One delivery with all its attempts.
#[utoipa::path(get, path = "/api/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "delivery id")),
    responses((status = 200, body = DeliveryDetailBody),
        (status = 400, description = "a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "no such delivery, or one of a webhook this token does not manage", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetailBody>, ApiError> {
    let detail = load(&state, &caller, &id).await?;
    Ok(Json(DeliveryDetailBody {
        delivery: DeliveryBody::from(&detail.delivery),
        attempts: detail.attempts.iter().map(AttemptBody::from).collect(),
        payload: String::from_utf8_lossy(&detail.payload).into_owned(),
    }))
}

/// Queues the same event to the same webhook again, as a new delivery.
#[utoipa::path(post, path = "/api/deliveries/{id}/redeliver", tag = "deliveries",
    params(("id" = String, Path, description = "delivery id")),
    responses((status = 202, description = "the new delivery, queued", body = DeliveryBody),
        (status = 400, description = "a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "no such delivery, or one of a webhook this token does not manage", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryBody>), ApiError> {
    let detail = load(&state, &caller, &id).await?;
    let delivery = state
        .store()
        .redeliver(detail.delivery.id, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    state.wake_workers();
    Ok((StatusCode::ACCEPTED, Json(DeliveryBody::from(&delivery))))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<DeliveryDetail, ApiError> {
    let id: DeliveryId = body::path_id(id, "delivery")?;
    let detail = state
        .store()
        .get_delivery(id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let webhook = state
        .store()
        .get_webhook(detail.delivery.webhook_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    caller.require_scope(&webhook.scope, "delivery")?;
    Ok(detail)
}
