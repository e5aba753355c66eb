//! The OpenAPI document, generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
