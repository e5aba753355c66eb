//! The one error type of the delivery crate: bad configuration and storage failures.
//!
//! Failed attempts are not errors: they are outcomes, recorded as [`Attempt`]s with a
//! [`FailureKind`](mia_webhooks_model::FailureKind).
//!
//! [`Attempt`]: mia_webhooks_model::Attempt

use mia_webhooks_store::StoreError;

/// The delivery machinery could not start or could not talk to its store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A setting is out of range; `setting` names it as the configuration does.
    #[error("invalid delivery setting `{setting}`: {message}")]
    Config {
        /// The setting, e.g. `lease`.
        setting: &'static str,
        /// What is wrong with it and what would be right.
        message: String,
    },
    /// The HTTP client could not be built (the TLS backend failed to initialize).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The store failed.
    #[error("delivery store operation failed")]
    Store(
        #[from]
        #[source]
        StoreError,
    ),
}
