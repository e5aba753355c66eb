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
use crate::state::AppState;
use crate::wire::{CatalogBody, CatalogEventBody, IngestBody};

/// The name of the event that "send test event" delivers.
pub const TEST_EVENT_NAME: &str = "webhook_tested";

/// Ingests an event: validates the envelope, stores it with one delivery per matching webhook
/// (one transaction, shared with concurrent requests), and answers 202 with the event id and the number of deliveries queued.
#[utoipa::path(post, path = "/api/events", tag = "events",
    request_body(content = String, content_type = "application/json",
        description = "the envelope {\"eventName\", \"eventTimestamp\" (Unix ms), \"payload\" (object)}"),
    responses((status = 202, body = IngestBody), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 503, description = "the database could not be reached: send the event again", body = crate::error::ErrorBody)),
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
    responses((status = 200, body = CatalogBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)),
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
    responses((status = 202, body = IngestBody), (status = 404, body = crate::error::ErrorBody)),
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
