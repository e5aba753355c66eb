//! Library side of the examples, so that integration tests can run them on a real listener.
//!
//! [`receiver_router`] is the axum router of the `receiver` example (`src/bin/receiver.rs`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mia_webhooks_signature::{HEADER_NAME, ReplayGuard, ReplayPolicy, Signature, Verifier};
use serde::Deserialize;

/// The Rust blocks of the repository's README (the receiver quickstart), compiled and run as
/// doctests so that what a new user copies builds.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The path the receiver listens on for deliveries.
pub const WEBHOOK_PATH: &str = "/webhooks";

/// The replay guard's source key. Every delivery comes from one sender here. Do not key on
/// `X-Mia-Delivery` or another header: headers other than the signature are not signed, so an
/// attacker replaying a captured body could pick a fresh source and slip past the guard.
const SOURCE: &str = "console";

/// The part of the event envelope the receiver needs before handing the event on.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "eventTimestamp")]
    event_timestamp: u64,
}

struct Receiver {
    verifier: Verifier,
    replays: Mutex<ReplayGuard>,
    clock: fn() -> u64,
}

/// The current time in Unix epoch milliseconds, from the system clock.
#[must_use]
pub fn system_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Builds the receiver: `POST /webhooks` verifies `X-Mia-Signature` against `verifier`, then
/// checks the envelope's `eventTimestamp` with a [`ReplayGuard`] following `replay_policy`, with
/// `clock` (Unix epoch milliseconds) as the time.
///
/// It answers `204 No Content` to an accepted event, `401 Unauthorized` to a missing, malformed or
/// wrong signature, `400 Bad Request` to a signed body that is not an event envelope, and
/// `409 Conflict` to a replay, and prints one line per request on standard output: the status,
/// the event name (accepted events only) or the reason, and the `X-Mia-Delivery` id. It never
/// prints a secret or the payload.
pub fn receiver_router(
    verifier: Verifier,
    replay_policy: ReplayPolicy,
    clock: fn() -> u64,
) -> Router {
    let receiver = Receiver {
        verifier,
        replays: Mutex::new(ReplayGuard::new(replay_policy)),
        clock,
    };
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .with_state(Arc::new(receiver))
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let delivery = delivery_id(&headers);
    let (status, text) = check(&receiver, &headers, &body);
    let code = status.as_u16();
    match &text {
        Ok(event_name) => println!("{code} accepted {event_name}, delivery {delivery}"),
        Err(reason) => println!("{code} rejected: {reason}, delivery {delivery}"),
    }
    (status, text.err().unwrap_or(""))
}

/// Verifies one delivery: the status to answer and the event name or why it was rejected.
fn check(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, Result<String, &'static str>) {
    // Authenticate the exact bytes received before looking inside them.
    let signature = headers
        .get(HEADER_NAME)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Signature>().ok());
    let Some(signature) = signature else {
        return (StatusCode::UNAUTHORIZED, Err("invalid signature"));
    };
    if receiver
        .verifier
        .verify_signature(body, &signature)
        .is_err()
    {
        return (StatusCode::UNAUTHORIZED, Err("invalid signature"));
    }

    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return (StatusCode::BAD_REQUEST, Err("not an event envelope"));
    };

    let now = (receiver.clock)();
    let checked = receiver
        .replays
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .check(SOURCE, envelope.event_timestamp, &signature, now);
    if checked.is_err() {
        return (StatusCode::CONFLICT, Err("replayed event"));
    }

    // A real receiver hands the event on here, idempotently on `X-Mia-Delivery`.
    (StatusCode::NO_CONTENT, Ok(printable(&envelope.event_name)))
}

/// The `X-Mia-Delivery` header for a log line. It is not signed, so it is shown escaped and cut
/// short; `-` when absent.
fn delivery_id(headers: &HeaderMap) -> String {
    headers.get("x-mia-delivery").map_or_else(
        || "-".to_owned(),
        |value| printable(&String::from_utf8_lossy(value.as_bytes())),
    )
}

/// `text` escaped (no control character can end the log line) and cut to 100 characters.
fn printable(text: &str) -> String {
    text.chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect()
}
