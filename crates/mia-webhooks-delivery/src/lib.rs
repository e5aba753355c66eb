//! Delivery for mia-webhooks: turns queued deliveries into signed `POST`s, with every failure
//! mode handled and recorded (SPEC §5).
//!
//! The main types:
//! - [`Sender`] makes one attempt: the event's exact bytes with `Content-Type`, `User-Agent`,
//!   `X-Mia-Signature` (signed at attempt time with the webhook's current secret), `X-Mia-Event`
//!   and `X-Mia-Delivery`. TLS is rustls; a webhook's CA is trusted in addition to the
//!   platform's roots, for that webhook only; a webhook's proxy carries all its requests.
//!   HTTP clients are cached per (CA, proxy). Redirects are not followed, at most
//!   `max_response_bytes` of an answer are read, and every outcome is classified
//!   ([`FailureKind`](mia_webhooks_model::FailureKind)) with a sentence its owner understands.
//! - [`AddressGuard`] refuses loopback, private, link-local, CGNAT, multicast, documentation,
//!   reserved and unique-local addresses (and IPv6 forms of IPv4 ones) unless an operator allows
//!   the range; it checks IP literals before a request and every resolved address through
//!   [`GuardedResolver`], so the address checked is the address dialled.
//! - [`RetryPolicy`] decides what follows a failed attempt: the SPEC schedule with ±20% jitter,
//!   `Retry-After` on 429/503 within bounds, failure when the schedule is exhausted, and
//!   disabling on 410 Gone.
//! - [`Dispatcher`] is the worker loop: it claims due deliveries from a
//!   [`Store`](mia_webhooks_store::Store) in batches under a global and a per-webhook cap, runs
//!   attempts concurrently, records results in batches, sleeps when idle, disables webhooks
//!   that keep failing, and stops cleanly on a cancellation token.
//! - [`DeliveryConfig`] holds every setting, with the SPEC defaults.
//!
//! Observability: one `delivery_attempt` tracing span per attempt (webhook id, delivery id,
//! attempt, outcome, ms); `metrics` counters `mia_webhooks_attempts_total{outcome}`,
//! `mia_webhooks_deliveries_total{outcome}`, `mia_webhooks_claimed_total`,
//! `mia_webhooks_leases_lost_total`, `mia_webhooks_webhooks_disabled_total{reason}`, the gauge
//! `mia_webhooks_attempts_in_flight` and the histogram `mia_webhooks_attempt_duration_seconds`.
//! Neither secrets nor payloads are logged.
//!
//! ```
//! use mia_webhooks_delivery::{AddressGuard, BlockedRange, DeliveryConfig};
//!
//! // By default, internal addresses are refused...
//! let guard = AddressGuard::new(DeliveryConfig::default().allowed_cidrs);
//! let blocked = guard.check_ip("10.0.0.1".parse()?).unwrap_err();
//! assert_eq!(blocked.range(), BlockedRange::Private);
//! // ...in every form a URL can spell them.
//! let url = url::Url::parse("http://0x7f000001:8080/hook")?;
//! assert_eq!(guard.check_url(&url).unwrap_err().range(), BlockedRange::Loopback);
//!
//! // An operator opens a range explicitly.
//! let config = DeliveryConfig { allowed_cidrs: vec!["10.0.0.0/8".parse()?], ..DeliveryConfig::default() };
//! config.validate()?;
//! assert!(AddressGuard::new(config.allowed_cidrs).check_ip("10.0.0.1".parse()?).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address_guard;
mod classify;
mod config;
mod error;
mod intake;
mod retry;
mod sender;
mod store_round;
mod worker;

pub use address_guard::{
    AddressGuard, BlockedAddress, BlockedRange, GuardedResolver, ResolveError,
};
pub use config::{DeliveryConfig, LEASE_MARGIN};
pub use error::DeliveryError;
pub use intake::Reservation;
pub use retry::{DEFAULT_SCHEDULE, Decision, RetryPolicy, parse_retry_after};
pub use sender::{
    AttemptReport, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, Sender, USER_AGENT,
};
pub use worker::{Dispatcher, DispatcherHandle};
