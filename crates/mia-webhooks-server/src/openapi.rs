//! The OpenAPI document, generated from the handlers and wire types.
//!
//! Each operation lists every status it can answer: the router's own tests compare the
//! document with the routes served and with the statuses observed.

use std::collections::BTreeMap;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::routes::{deliveries, events, me, ops, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "mia-webhooks", description = "Webhooks of the Console: install webhooks on the instance, a company or a project; events are POSTed to them signed with X-Mia-Signature = hex(sha256(payload ++ secret))."),
    paths(
        webhooks::list_instance, webhooks::create_instance,
        webhooks::list_company, webhooks::create_company,
        webhooks::list_project, webhooks::create_project,
        webhooks::get, webhooks::patch, webhooks::delete,
        events::send_test, events::ingest, events::catalog,
        deliveries::list, deliveries::get, deliveries::redeliver,
        me::me,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "webhooks", description = "Install, edit and delete webhooks"),
        (name = "events", description = "Emit events and read the catalogue"),
        (name = "deliveries", description = "The delivery log and redelivery"),
        (name = "tokens", description = "What the caller's token is and reaches"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An error response in the API's JSON shape (`{"error": {"code", "message", "field"}}`).
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// The answers every operation behind a bearer token can give: the token is checked against
/// the database, which may fail like any other read.
pub(crate) struct TokenErrors;

impl IntoResponses for TokenErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            (
                "401".to_owned(),
                error_response(
                    "no valid token: the Authorization header is missing, is not \
                     `Bearer <token>`, or names no token of this server",
                ),
            ),
            (
                "500".to_owned(),
                error_response("the server failed; the cause is in its log"),
            ),
            (
                "503".to_owned(),
                error_response(
                    "the database could not be reached, or the server is stopping: send the \
                     request again",
                ),
            ),
        ])
    }
}

/// The answer of an operation that reads a request body: over the body limit (1 MiB by default).
pub(crate) struct BodyTooLarge;

impl IntoResponses for BodyTooLarge {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "413".to_owned(),
            error_response("the request body is larger than the server accepts (field `body`)"),
        )])
    }
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
