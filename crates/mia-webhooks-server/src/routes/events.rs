//! `POST /api/events` (ingestion), `GET /api/events/catalog` and "send test event".

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mia_webhooks_model::{Event, EventId, EventName, Timestamp};
use mia_webhooks_store::{NewEvent, Store};
use serde_json::{Map, Value};

use super::{body, webhooks};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ingest_batcher::BatchError;
use crate::openapi::{BodyTooLarge, TokenErrors};
use crate::state::AppState;
use crate::wire::{CatalogBody, CatalogEventBody, IngestBody};

/// The name of the event that "send test event" delivers.
pub const TEST_EVENT_NAME: &str = "webhook_tested";

/// The envelope of `POST /api/events`, for the OpenAPI document only: the handler reads the
/// raw bytes with [`Event::parse`], which keeps them exactly as sent.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(examples(json!({"eventName": "project_created", "eventTimestamp": 1_764_374_400_000_i64,
    "payload": {"tenantId": "acme", "projectId": "p1"}})))]
#[allow(
    dead_code,
    reason = "documents the envelope for OpenAPI; Event::parse reads the body"
)]
pub(crate) struct EventEnvelope {
    /// A name from the catalogue (`GET /api/events/catalog`): snake_case `subject_action`.
    #[schema(pattern = "^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)+$", max_length = 128)]
    event_name: String,
    /// When the event happened: Unix epoch milliseconds, not negative.
    #[schema(minimum = 0)]
    event_timestamp: i64,
    /// The event's data: a JSON object, checked against the catalogued fields of its event.
    payload: EventPayload,
}

/// The payload of an event: a JSON object with any fields; these three route it to webhooks.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "documents the payload for OpenAPI; Event::parse reads the body"
)]
pub(crate) struct EventPayload {
    /// The company the event belongs to: its company's webhooks receive it.
    tenant_id: Option<String>,
    /// Another name for `tenantId`; when both are given they must be equal.
    company_id: Option<String>,
    /// The project the event belongs to (with `tenantId` or `companyId`): that project's
    /// webhooks receive it.
    project_id: Option<String>,
}

/// Ingests an event: validates the envelope, stores it with one delivery per matching webhook
/// (one transaction, shared with concurrent requests), and answers 202 with the event id and the number of deliveries queued.
#[utoipa::path(post, path = "/api/events", tag = "events",
    request_body(content = EventEnvelope, content_type = "application/json",
        description = "The event envelope. Its bytes are stored as sent: every delivery sends and signs exactly them."),
    responses((status = 202, description = "stored, with one delivery queued per matching webhook", body = IngestBody),
        (status = 400, description = "an invalid envelope; `field` names it (`eventName`, `eventTimestamp`, `payload.tenantId`, `body`, ...)", body = crate::error::ErrorBody),
        (status = 403, description = "this token may not post events: company and project admins manage webhooks only", body = crate::error::ErrorBody),
        BodyTooLarge, TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    payload: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IngestBody>), ApiError> {
    if !caller.role.can_emit() {
        return Err(ApiError::forbidden(
            "this token may not post events (it needs the emitter or instance-admin role)",
        ));
    }
    let bytes = payload.map_err(body::body_rejection)?;
    let event = Event::parse(&bytes, &state.inner.catalog)?;
    let new = NewEvent {
        id: EventId::new(),
        event,
    };
    let (id, name) = (new.id, new.event.name().clone());
    // Written in a transaction shared with concurrent requests (group commit); answered after
    // that transaction commits.
    let receipt = state.ingest().ingest(new).await.map_err(|err| match err {
        BatchError::Store(err) => ApiError::from(err),
        // The server is stopping: another instance (or this one, restarted) takes it.
        BatchError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the server is stopping; send the event again",
        ),
    })?;
    // The batcher handed the deliveries to the in-process workers (or woke them).
    let deliveries = receipt.deliveries;
    tracing::debug!(event_id = %id, event = %name, deliveries, "event ingested");
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestBody {
            event_id: id.to_string(),
            deliveries,
        }),
    ))
}

/// The event catalogue: built-in events and those the operator added. For the tokens that
/// manage webhooks (an emitter token may only post events).
#[utoipa::path(get, path = "/api/events/catalog", tag = "events",
    responses((status = 200, body = CatalogBody),
        (status = 403, description = "an emitter token: it may only post events", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CatalogBody>, ApiError> {
    if matches!(caller.role, mia_webhooks_model::Role::Emitter) {
        return Err(ApiError::forbidden(
            "this token may only post events; the catalogue and the webhooks need an admin token",
        ));
    }
    Ok(Json(CatalogBody {
        events: state
            .inner
            .catalog
            .events()
            .map(CatalogEventBody::from)
            .collect(),
    }))
}

/// Sends a test event to one webhook, whatever it subscribes to.
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 202, description = "a `webhook_tested` event queued to this webhook only", body = IngestBody),
        (status = 400, description = "a path segment that is not UTF-8", body = crate::error::ErrorBody),
        (status = 404, description = "no such webhook, or one this token does not manage", body = crate::error::ErrorBody),
        TokenErrors),
    security(("bearer" = [])))]
pub(crate) async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IngestBody>), ApiError> {
    let webhook = webhooks::load(&state, &caller, &id).await?;
    let mut payload = Map::new();
    payload.insert("webhookId".into(), Value::from(webhook.id.to_string()));
    if let Some(tenant) = webhook.scope.tenant_id() {
        payload.insert("tenantId".into(), Value::from(tenant.as_str()));
    }
    if let Some(project) = webhook.scope.project_id() {
        payload.insert("projectId".into(), Value::from(project.as_str()));
    }
    payload.insert(
        "message".into(),
        Value::from("This is a test event sent by mia-webhooks."),
    );
    let name = EventName::new(TEST_EVENT_NAME).map_err(ApiError::from)?;
    let now = Timestamp::now();
    let event = Event::from_parts(name, now, &payload)?;
    let new = NewEvent {
        id: EventId::new(),
        event,
    };
    let receipt = state
        .store()
        .ingest_for_webhook(&new, webhook.id, now)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    state.wake_workers();
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestBody {
            event_id: receipt.event_id.to_string(),
            deliveries: receipt.deliveries,
        }),
    ))
}
