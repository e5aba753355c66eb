//! The router: every endpoint of SPEC §7.

pub(crate) mod body;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod me;
pub(crate) mod ops;
pub(crate) mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The full router over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.inner.body_limit;
    Router::new()
        .route(
            "/api/webhooks",
            get(webhooks::list_instance).post(webhooks::create_instance),
        )
        .route(
            "/api/companies/{tenant}/webhooks",
            get(webhooks::list_company).post(webhooks::create_company),
        )
        .route(
            "/api/companies/{tenant}/projects/{project}/webhooks",
            get(webhooks::list_project).post(webhooks::create_project),
        )
        .route(
            "/api/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::patch)
                .delete(webhooks::delete),
        )
        .route("/api/webhooks/{id}/test", post(events::send_test))
        .route("/api/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/api/deliveries/{id}", get(deliveries::get))
        .route(
            "/api/deliveries/{id}/redeliver",
            post(deliveries::redeliver),
        )
        .route("/api/events", post(events::ingest))
        .route("/api/events/catalog", get(events::catalog))
        .route("/api/me", get(me::me))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(crate::admin::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

/// Gives the errors axum answers on its own (a wrong method, a path segment that is not UTF-8)
/// the API's JSON shape, keeping their status and headers (a 405 keeps its `Allow`).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's own texts are short and name what failed; anything long is cut.
    let text = match axum::body::to_bytes(body, 1024).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned(),
    };
    let converted = if status.is_server_error() {
        // A 5xx says nothing of its cause to the client; the log has it.
        tracing::error!(%status, cause = %text, "internal error");
        ApiError::new(status, "internal", "the server failed; try again later")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        ApiError::new(
            status,
            "method_not_allowed",
            "this route does not take this method",
        )
    } else {
        ApiError::new(status, "invalid_request", text)
    }
    .into_response();
    let (converted_parts, body) = converted.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &converted_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, body)
}
