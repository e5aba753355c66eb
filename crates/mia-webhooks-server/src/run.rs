//! Wiring: open the store, install tokens, start the workers and the HTTP listener, stop cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mia_webhooks_delivery::{AddressGuard, DeliveryConfig, Dispatcher, RetryPolicy, Sender};
use mia_webhooks_model::{EventCatalog, Role, Timestamp};
use mia_webhooks_store::{AnyStore, SecretKeys, Store, StoreOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::{Config, redact_url};
use crate::state::AppState;

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened or answered with an error.
    #[error("store: {0}")]
    Store(#[from] mia_webhooks_store::StoreError),
    /// The delivery workers could not start.
    #[error("delivery: {0}")]
    Delivery(#[from] mia_webhooks_delivery::DeliveryError),
    /// The listener could not be bound or failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A background task panicked.
    #[error("a server task failed: {0}")]
    Task(String),
}

/// Opens the store a configuration names, with its secret keys, and runs migrations.
pub async fn open_store(config: &Config) -> Result<AnyStore, ServerError> {
    let secret_keys = match &config.secret_key {
        Some(key) => Some(
            SecretKeys::parse(key, &config.old_secret_keys)
                .map_err(|e| ServerError::Config(format!("setting secret_key: {e}")))?,
        ),
        None => None,
    };
    let options = StoreOptions {
        secret_keys,
        sqlite_cache_mib: Some(config.sqlite_cache_mib),
        ..StoreOptions::default()
    };
    Ok(AnyStore::open(&config.database_url, options).await?)
}

/// A running server: the HTTP listener, the delivery workers and the retention task.
pub struct Server {
    addr: SocketAddr,
    bootstrap_token: Option<String>,
    cancel: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    workers: Option<JoinHandle<()>>,
    retention: JoinHandle<()>,
    metrics_upkeep: JoinHandle<()>,
    grace: Duration,
}

impl Server {
    /// Starts everything a configuration describes and returns once the listener is bound.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        config
            .validate()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let catalog = EventCatalog::with_extra(config.extra_events.iter().cloned())
            .map_err(|e| ServerError::Config(format!("setting extra_events: {e}")))?;
        if config.secret_key.is_none() {
            tracing::warn!(
                "no secret_key configured: webhook secrets are stored unencrypted; set MIA_WEBHOOKS_SECRET_KEY \
                 (32 bytes, base64) to encrypt them at rest"
            );
        }
        let store = Arc::new(open_store(&config).await?);
        let bootstrap_token = bootstrap(&*store, config.admin_token.as_deref()).await?;

        let guard = AddressGuard::new(config.allowed_cidrs.clone());
        let cancel = CancellationToken::new();
        let delivery_config = DeliveryConfig {
            connect_timeout: config.connect_timeout(),
            attempt_timeout: config.attempt_timeout(),
            allowed_cidrs: config.allowed_cidrs.clone(),
            retry: RetryPolicy {
                schedule: config.retry_schedule(),
                ..RetryPolicy::default()
            },
            disable_after: config.disable_after(),
            max_in_flight: config.max_in_flight,
            per_webhook_cap: config.per_webhook_cap,
            claim_batch: config.claim_batch,
            shutdown_grace: config.shutdown_grace(),
            lease: config.lease(),
            ..DeliveryConfig::default()
        };
        delivery_config.validate()?;

        let (workers, handle) = if config.workers {
            let sender = Sender::new(&delivery_config)?;
            let dispatcher = Dispatcher::new(store.clone(), sender, delivery_config.clone())?;
            let handle = dispatcher.handle();
            let token = cancel.clone();
            let task = tokio::spawn(async move {
                if let Err(err) = dispatcher.run(token).await {
                    tracing::error!(error = %err, "delivery workers stopped with an error");
                }
            });
            (Some(task), Some(handle))
        } else {
            (None, None)
        };

        let state = AppState::new(store.clone(), catalog, guard, handle)
            .with_body_limit(config.body_limit)
            .with_ingest_batch(config.ingest_batch);
        let router = crate::router(state);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let token = cancel.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
        let retention = tokio::spawn(retention_loop(store, config.retention_days, cancel.clone()));
        let metrics_upkeep = tokio::spawn(metrics_upkeep(cancel.clone()));
        tracing::info!(%addr, database = %redact_url(&config.database_url), workers = config.workers, "mia-webhooks listening");
        Ok(Server {
            addr,
            bootstrap_token,
            cancel,
            http,
            workers,
            retention,
            metrics_upkeep,
            grace: config.shutdown_grace(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance-admin token made at this start, when the database had none: shown once.
    pub fn bootstrap_token(&self) -> Option<&str> {
        self.bootstrap_token.as_deref()
    }

    /// Stops: no new connections, no new claims; attempts in flight finish within the grace
    /// period; then returns.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.cancel.cancel();
        let mut result = Ok(());
        if let Some(workers) = self.workers {
            // The dispatcher bounds its own wait; the extra second covers recording.
            match tokio::time::timeout(self.grace + Duration::from_secs(5), workers).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => result = Err(ServerError::Task(err.to_string())),
                Err(_) => tracing::warn!("delivery workers did not stop within the grace period"),
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.http).await {
            Ok(Ok(Ok(()))) | Err(_) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "HTTP server stopped with an error"),
            Ok(Err(err)) => result = Err(ServerError::Task(err.to_string())),
        }
        self.retention.abort();
        self.metrics_upkeep.abort();
        tracing::info!("mia-webhooks stopped");
        result
    }
}

/// Installs the operator's admin token, or makes one when the database has no token at all.
async fn bootstrap<S: Store>(
    store: &S,
    admin_token: Option<&str>,
) -> Result<Option<String>, ServerError> {
    if let Some(token) = admin_token {
        auth::install_token(
            store,
            token,
            Role::InstanceAdmin,
            "MIA_WEBHOOKS_ADMIN_TOKEN",
        )
        .await?;
        return Ok(None);
    }
    if store.count_tokens().await? == 0 {
        let token = auth::create_token(store, Role::InstanceAdmin, "bootstrap").await?;
        return Ok(Some(token));
    }
    Ok(None)
}

async fn retention_loop(store: Arc<AnyStore>, days: u32, cancel: CancellationToken) {
    if days == 0 {
        return;
    }
    let keep = Duration::from_secs(u64::from(days) * 86_400);
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let cutoff = Timestamp::now().saturating_sub(keep);
        match store.purge(cutoff).await {
            Ok(report) if report.deliveries + report.events > 0 => tracing::info!(
                deliveries = report.deliveries,
                attempts = report.attempts,
                events = report.events,
                "retention: purged finished deliveries"
            ),
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %crate::error::ErrorChain(&err), "retention purge failed")
            }
        }
    }
}

/// Drains the Prometheus recorder's histogram samples into their buckets every few seconds.
/// The recorder keeps every sample until then (a scrape also drains them), so without this a
/// server nobody scrapes would grow by every attempt's duration.
async fn metrics_upkeep(cancel: CancellationToken) {
    let Some(handle) = crate::metrics::handle() else {
        return;
    };
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => handle.run_upkeep(),
        }
    }
}
