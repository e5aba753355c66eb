//! The mia-webhooks server as a library: the axum router (REST API, admin page), bearer-token
//! auth, configuration, and the wiring of the store and the delivery workers.
//!
//! This is the only crate that knows the REST JSON: its request and response types (`wire.rs`)
//! are its own, converted by hand from the model.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mia_webhooks_server::{Config, Server};
//!
//! let config = Config { database_url: "sqlite://mia-webhooks.db".into(), ..Config::default() };
//! let server = Server::start(config).await?;
//! println!("listening on {}", server.local_addr());
//! tokio::signal::ctrl_c().await?;
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

mod admin;
mod auth;
mod config;
mod error;
mod ingest_batcher;
mod metrics;
mod openapi;
mod routes;
mod run;
mod state;
mod wire;

pub use auth::{Caller, TOKEN_PREFIX, create_token, generate_token, install_token};
pub use config::{Config, ConfigError, LogFormat};
pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use routes::events::TEST_EVENT_NAME;
pub use routes::router;
pub use run::{Server, ServerError, open_store};
pub use state::AppState;
