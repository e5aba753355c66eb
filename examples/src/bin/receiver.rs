//! An axum receiver for mia-webhooks deliveries: it verifies `X-Mia-Signature` and rejects
//! replayed events.
//!
//! Run it with the webhook's secret (several, comma-separated, during a rotation) and, optionally,
//! the address to listen on (default `127.0.0.1:3000`):
//!
//! ```sh
//! MIA_WEBHOOKS_SECRET=old-secret,new-secret \
//!     cargo run -p mia-webhooks-examples --bin receiver -- 127.0.0.1:3000
//! ```
//!
//! Then point a webhook at `http://127.0.0.1:3000/webhooks`. The address can also be given as
//! `MIA_WEBHOOKS_RECEIVER_ADDR`, and the replay window in seconds as
//! `MIA_WEBHOOKS_REPLAY_TOLERANCE_SECS` (default 900).
//!
//! It prints one line per delivery: `204 accepted project_created, delivery <X-Mia-Delivery>`
//! for a verified event, or the status and the reason for a rejected one, such as
//! `401 rejected: invalid signature, delivery <X-Mia-Delivery>`. Never the secret or the
//! payload.

use std::error::Error;
use std::time::Duration;

use mia_webhooks_examples::{WEBHOOK_PATH, receiver_router, system_clock_ms};
use mia_webhooks_signature::{ReplayPolicy, Verifier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let secrets = std::env::var("MIA_WEBHOOKS_SECRET").map_err(
        |_| "set MIA_WEBHOOKS_SECRET to the webhook's secret (comma-separated for several)",
    )?;
    let secrets: Vec<&str> = secrets.split(',').filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err("MIA_WEBHOOKS_SECRET holds no secret".into());
    }
    let address = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("MIA_WEBHOOKS_RECEIVER_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let tolerance_secs = match std::env::var("MIA_WEBHOOKS_REPLAY_TOLERANCE_SECS") {
        Ok(secs) => secs.parse()?,
        Err(_) => 900,
    };

    let count = secrets.len();
    let router = receiver_router(
        Verifier::new(secrets),
        ReplayPolicy::Window {
            tolerance: Duration::from_secs(tolerance_secs),
        },
        system_clock_ms,
    );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!(
        "receiving webhooks on http://{}{WEBHOOK_PATH} with {count} secret(s)",
        listener.local_addr()?
    );
    axum::serve(listener, router).await?;
    Ok(())
}
