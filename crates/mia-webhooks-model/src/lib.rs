//! The domain model of mia-webhooks: where webhooks are installed, which events reach them, and
//! the validated types every other crate passes around. No I/O, no async, no HTTP, no SQL.
//!
//! Preconditions live in types: a [`TargetUrl`], [`Secret`], [`EventName`] or [`CaCertificate`]
//! is validated when it is made, so the rest of the system cannot hold an invalid one. Every
//! [`ValidationError`] names the field it concerns.
//!
//! ```
//! use mia_webhooks_model::{Event, EventCatalog, Scope, WebhookInput};
//!
//! let catalog = EventCatalog::built_in();
//! let webhook = WebhookInput {
//!     target_url: Some("https://example.com/hooks".into()),
//!     secret: Some("s3cr3t".into()),
//!     events: Some(vec!["project_created".into()]),
//!     ..WebhookInput::default()
//! }
//! .validate("company/acme".parse::<Scope>()?, &catalog)?;
//!
//! let event = Event::parse(
//!     br#"{"eventName":"project_created","eventTimestamp":1764374400000,
//!          "payload":{"tenantId":"acme","projectId":"p1"}}"#,
//!     &catalog,
//! )?;
//! assert!(webhook.scope.receives(event.routing()));
//! assert!(webhook.events.contains(event.name().as_str()));
//! # Ok::<(), mia_webhooks_model::ValidationError>(())
//! ```

mod ca;
mod catalog;
mod delivery;
mod error;
mod event;
mod event_name;
mod ids;
mod role;
mod scope;
mod secret;
mod timestamp;
mod url;
mod webhook;

pub use ca::{CaCertificate, MAX_CA_LEN};
pub use catalog::{EventCatalog, EventDefinition, FieldType, PayloadField};
pub use delivery::{Attempt, Delivery, DeliveryStatus, FailureKind};
pub use error::{ErrorKind, ValidationError};
pub use event::{Event, routing_of};
pub use event_name::{EventName, MAX_EVENT_NAME_LEN};
pub use ids::{DeliveryId, EventId, TokenId, WebhookId};
pub use role::Role;
pub use scope::{EventRouting, MAX_ID_LEN, ProjectId, Scope, TenantId};
pub use secret::{MAX_SECRET_LEN, Secret};
pub use timestamp::Timestamp;
pub use url::{MAX_URL_LEN, ProxyUrl, TargetUrl};
pub use webhook::{
    EventSet, MAX_DESCRIPTION_LEN, MAX_EVENTS, NewWebhook, Webhook, WebhookInput, WebhookPatch,
    WebhookPatchInput,
};
