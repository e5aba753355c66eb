//! Operations: `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use mia_webhooks_store::Store;
use serde_json::json;

use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the database. A probe must answer even when the database does
/// not: while PostgreSQL refuses connections, the pool keeps retrying for its acquire timeout
/// (30 s), which would hang the probe past any orchestrator's deadline.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database answers (within [`READY_TIMEOUT`]).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "the database does not answer")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let error = match tokio::time::timeout(READY_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(err)) => crate::error::ErrorChain(&err).to_string(),
        Err(_) => format!("the database did not answer within {READY_TIMEOUT:?}"),
    };
    tracing::warn!(%error, "readiness check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable", "reason": "database"})),
    )
}

/// Prometheus text: deliveries by outcome, attempt latency, queue depth, disabled webhooks.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.store().stats().await {
        Ok(stats) => {
            for (status, count) in [
                ("pending", stats.pending),
                ("delivering", stats.delivering),
                ("succeeded", stats.succeeded),
                ("failed", stats.failed),
                ("cancelled", stats.cancelled),
            ] {
                metrics::gauge!("mia_webhooks_deliveries", "status" => status).set(count as f64);
            }
            metrics::gauge!("mia_webhooks_queue_depth").set(stats.pending as f64);
            metrics::gauge!("mia_webhooks_webhooks_disabled").set(stats.disabled_webhooks as f64);
        }
        Err(err) => {
            tracing::warn!(error = %crate::error::ErrorChain(&err), "cannot read store statistics")
        }
    }
    let body = state
        .inner
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
pub(crate) async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
