//! The router: every endpoint of SPEC §7.

pub(crate) mod body;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod ops;
pub(crate) mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
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
        .route("/api/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(crate::admin::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}
