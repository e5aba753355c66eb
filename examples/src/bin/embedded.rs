//! A service that embeds mia-webhooks without its HTTP API, as a Rust Console backend would:
//! it opens the store, installs a webhook, runs the delivery workers in its own runtime, and
//! emits events in-process.
//!
//! Run it (it starts its own receiver on 127.0.0.1 and stops after the delivery arrives):
//!
//! ```sh
//! cargo run -p mia-webhooks-examples --bin embedded
//! ```
//!
//! Set `DATABASE_URL` (`sqlite://embedded.db`, `postgres://...`) to use a real database;
//! the default is an in-memory store.

use std::sync::Arc;
use std::time::Duration;

use mia_webhooks_delivery::{DeliveryConfig, Dispatcher, Sender};
use mia_webhooks_model::{
    Event, EventCatalog, EventId, EventName, Scope, Timestamp, Webhook, WebhookId, WebhookInput,
};
use mia_webhooks_store::{AnyStore, NewEvent, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A receiver for the demo; a real service sends to its users' URLs.
    let (target, mut arrivals) = demo_receiver("demo-secret").await?;

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "memory:".to_owned());
    let store = Arc::new(AnyStore::open(&url, StoreOptions::default()).await?);

    // Install a webhook on company "acme" for project_created.
    let catalog = EventCatalog::built_in();
    let new = WebhookInput {
        target_url: Some(target),
        secret: Some("demo-secret".into()),
        events: Some(vec!["project_created".into()]),
        ..WebhookInput::default()
    }
    .validate("company/acme".parse::<Scope>()?, &catalog)?;
    let now = Timestamp::now();
    let webhook = Webhook {
        id: WebhookId::new(),
        scope: new.scope,
        target_url: new.target_url,
        secret: new.secret,
        events: new.events,
        ca_certificate: new.ca_certificate,
        proxy: new.proxy,
        description: new.description,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    store.create_webhook(&webhook).await?;

    // The delivery workers, in this process. The demo receiver is on loopback, which the
    // address guard blocks unless the operator allows it.
    let config = DeliveryConfig {
        allowed_cidrs: vec!["127.0.0.0/8".parse()?],
        ..DeliveryConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), Sender::new(&config)?, config)?;
    let wake = dispatcher.handle();
    let stop = CancellationToken::new();
    let workers = tokio::spawn(dispatcher.run(stop.clone()));

    // Emit an event in-process: validated, serialized once, stored with its deliveries.
    let mut payload = serde_json::Map::new();
    payload.insert("tenantId".into(), "acme".into());
    payload.insert("projectId".into(), "p1".into());
    let event = Event::from_parts(
        EventName::new("project_created")?,
        Timestamp::now(),
        &payload,
    )?;
    let receipts = store
        .ingest(
            &[NewEvent {
                id: EventId::new(),
                event,
            }],
            Timestamp::now(),
        )
        .await?;
    println!("queued {} delivery(ies)", receipts[0].deliveries);
    wake.notify();

    let verified = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
        .await?
        .ok_or("receiver stopped")?;
    println!("delivered and verified: {verified}");

    stop.cancel();
    workers.await??;
    Ok(())
}

/// A receiver on 127.0.0.1 that verifies each delivery and reports its event name.
async fn demo_receiver(
    secret: &'static str,
) -> std::io::Result<(String, tokio::sync::mpsc::Receiver<String>)> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};

    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let signature = headers
                    .get(mia_webhooks_signature::HEADER_NAME)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if mia_webhooks_signature::verify(&body, secret.as_bytes(), signature).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                let event = headers
                    .get("x-mia-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let _ = tx.send(event.to_owned()).await;
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}
