//! PostgreSQL test support and the tests only PostgreSQL needs.
//!
//! The tests run against the server named by `MIA_WEBHOOKS_TEST_POSTGRES_URL`. Each test gets a
//! schema of its own (`t_<uuid v7>`, the store connecting with that `search_path`), so tests run
//! in parallel without seeing each other's rows. Schemas of earlier runs are dropped once they
//! are an hour old (their name carries their creation time), which keeps the database tidy
//! without an async drop. Without the variable each test writes `<test>: NOT RUN, ...` to the
//! process's stderr (past the harness's capture) and passes; with it set and the server
//! unreachable they fail.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mia_webhooks_model::WebhookPatch;
use mia_webhooks_store::{
    ClaimRequest, PostgresStore, SecretKeys, Store, StoreError, StoreOptions,
};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::conformance::TestBackend;
use crate::support::{T0, at, claim_at, event, webhook};
use crate::upgrade;

/// The variable that names the test server.
pub const URL_VAR: &str = "MIA_WEBHOOKS_TEST_POSTGRES_URL";

/// How old a test schema of an earlier run must be before a new test drops it.
const STALE_SCHEMA_AGE: Duration = Duration::from_secs(3600);

/// A schema of its own on the test server.
#[derive(Debug, Clone)]
pub struct TestSchema {
    /// The server's URL as configured.
    pub server_url: String,
    /// The schema's name.
    pub name: String,
}

impl TestSchema {
    /// Creates a fresh schema, or `None` when no test server is configured, after writing
    /// `<test>: NOT RUN, MIA_WEBHOOKS_TEST_POSTGRES_URL not set` straight to the process's
    /// stderr (past the test harness's capture, so it shows in `cargo test` output, and
    /// `.ci/run` fails on it). Panics when the server is configured but does not answer: a CI
    /// run that sets the variable must not pass without running the tests.
    pub async fn create() -> Option<TestSchema> {
        let schema = TestSchema::create_if_configured().await;
        if schema.is_none() {
            use std::io::Write as _;
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("a PostgreSQL test");
            let _ = writeln!(std::io::stderr(), "{test}: NOT RUN, {URL_VAR} not set");
        }
        schema
    }

    /// [`TestSchema::create`] without a word when no server is configured (the conformance
    /// suite's macro says which test did not run).
    async fn create_if_configured() -> Option<TestSchema> {
        let Ok(server_url) = std::env::var(URL_VAR) else {
            return None;
        };
        let mut conn = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("{URL_VAR} is set but PostgreSQL does not answer: {e}"));
        drop_stale_schemas(&mut conn).await;
        let name = format!("t_{}", Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test schema {name}: {e}"));
        conn.close().await.ok();
        Some(TestSchema { server_url, name })
    }

    /// The URL of the test server with this schema as the search path.
    pub fn url(&self) -> String {
        let separator = if self.server_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options[search_path]={}",
            self.server_url, self.name
        )
    }

    /// A store on this schema (migrated on connect).
    pub async fn store(&self, options: StoreOptions) -> PostgresStore {
        PostgresStore::connect(&self.url(), options)
            .await
            .unwrap_or_else(|e| panic!("cannot open the PostgreSQL store in {}: {e:?}", self.name))
    }

    /// A plain connection with this schema as the search path, to look at raw rows.
    pub async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }
}

/// The conformance suite's backend: stores on one test schema of their own.
pub struct PgBackend(TestSchema);

impl TestBackend for PgBackend {
    type Store = PostgresStore;

    async fn open(&self, options: StoreOptions) -> PostgresStore {
        self.0.store(options).await
    }
}

/// The conformance suite's factory: a fresh schema, or `None` when no server is configured
/// (the suite's macro then writes that the test did not run).
pub async fn backend() -> Option<PgBackend> {
    TestSchema::create_if_configured().await.map(PgBackend)
}

/// Drops test schemas older than [`STALE_SCHEMA_AGE`]; their names carry a UUID v7, which
/// carries its creation time.
async fn drop_stale_schemas(conn: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("cannot list test schemas: {e}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for name in names {
        let created = name
            .strip_prefix("t_")
            .and_then(|hex| Uuid::try_parse(hex).ok())
            .and_then(|uuid| uuid.get_timestamp())
            .map(|timestamp| timestamp.to_unix().0);
        let Some(created) = created else { continue };
        if now.saturating_sub(created) > STALE_SCHEMA_AGE.as_secs() {
            // Another test may be dropping it at the same moment: that is fine.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// The stored secret of the only webhook in `schema`, as the database holds it.
async fn raw_secret(schema: &TestSchema) -> String {
    let mut raw = schema.raw().await;
    sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(&mut raw)
        .await
        .expect("raw secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_in_the_stored_row() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let keys = SecretKeys::from_bytes([7; 32], &[]);
    let key_id = keys.current_key_id().to_owned();
    let store = schema
        .store(StoreOptions {
            secret_keys: Some(keys),
            ..StoreOptions::default()
        })
        .await;
    let hook = webhook("instance", &["project_created"]);
    let plain = hook.secret.expose_str().to_owned();
    store.create_webhook(&hook).await.unwrap();
    let stored = raw_secret(&schema).await;
    assert!(
        stored.starts_with(&format!("sealed:v1:{key_id}:")),
        "{stored}"
    );
    assert!(
        !stored.contains(&plain),
        "the secret is stored in plain text"
    );
    // An edit that does not touch the secret re-seals it (fresh nonce), still not in plain text.
    let patch = WebhookPatch {
        description: Some(Some("edited".into())),
        ..WebhookPatch::default()
    };
    store
        .update_webhook(hook.id, patch, at(1))
        .await
        .unwrap()
        .unwrap();
    let resealed = raw_secret(&schema).await;
    assert_ne!(resealed, stored);
    assert!(!resealed.contains(&plain));
    assert_eq!(
        store
            .get_webhook(hook.id)
            .await
            .unwrap()
            .unwrap()
            .secret
            .expose_str(),
        plain
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_connecting_at_once_migrate_once() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    // Four pools racing to migrate an empty schema: the advisory lock lets one apply each
    // migration; the others find it applied.
    let stores = futures_join_all((0..4).map(|_| {
        let schema = schema.clone();
        tokio::spawn(async move { schema.store(StoreOptions::default()).await })
    }))
    .await;
    let mut raw = schema.raw().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    let embedded = upgrade::embedded_versions("postgres");
    assert_eq!(applied_versions(&schema).await, embedded);
    assert_eq!(
        usize::try_from(rows).unwrap(),
        embedded.len(),
        "each applied once"
    );
    for store in &stores {
        store.ping().await.unwrap();
    }
}

/// Awaits spawned tasks in order (the crate has no `futures` dependency).
async fn futures_join_all<T: 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_webhook_cap_holds_across_concurrent_claimers() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    const CLAIMERS: usize = 8;
    // A connection per claimer (the default pool is smaller on a small machine), so the eight
    // claim transactions really run at once.
    let store = Arc::new(
        schema
            .store(StoreOptions {
                max_connections: Some(CLAIMERS as u32),
                ..StoreOptions::default()
            })
            .await,
    );
    let hook = webhook("instance", &["project_created"]);
    store.create_webhook(&hook).await.unwrap();
    let events: Vec<_> = (0..50)
        .map(|_| event("project_created", None, None))
        .collect();
    store.ingest(&events, T0).await.unwrap();
    // Eight claimers at once, none recording: between them they may hold three, never more.
    let barrier = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let claimed = futures_join_all((0..CLAIMERS).map(|_| {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            let mut held = 0;
            for _ in 0..5 {
                let request = ClaimRequest {
                    per_webhook_cap: 3,
                    ..claim_at(T0, 10)
                };
                held += store.claim(&request).await.unwrap().len();
            }
            held
        })
    }))
    .await;
    assert_eq!(
        claimed.iter().sum::<usize>(),
        3,
        "claims per task: {claimed:?}"
    );
    assert_eq!(store.stats().await.unwrap().delivering, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_webhook_at_its_cap_does_not_hide_the_others() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let store = schema.store(StoreOptions::default()).await;
    let flooded = webhook("company/big", &["project_created"]);
    let quiet = webhook("company/small", &["project_created"]);
    store.create_webhook(&flooded).await.unwrap();
    store.create_webhook(&quiet).await.unwrap();
    let flood: Vec<_> = (0..300)
        .map(|_| event("project_created", Some("big"), None))
        .collect();
    store.ingest(&flood, T0).await.unwrap();
    store
        .ingest(&[event("project_created", Some("small"), None)], at(1))
        .await
        .unwrap();
    let request = ClaimRequest {
        per_webhook_cap: 2,
        ..claim_at(at(2), 1)
    };
    let mut webhooks = Vec::new();
    for _ in 0..3 {
        webhooks.extend(
            store
                .claim(&request)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.webhook.id),
        );
    }
    // Oldest first: two of the flood (its cap), then the quiet one's, due later.
    assert_eq!(webhooks, [flooded.id, flooded.id, quiet.id]);
    assert!(store.claim(&request).await.unwrap().is_empty());
}

/// The versions of the migrations applied successfully in `schema`, ascending.
async fn applied_versions(schema: &TestSchema) -> Vec<i64> {
    let mut raw = schema.raw().await;
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&mut raw)
        .await
        .expect("applied migrations")
}

/// A database of the first release (migration 0001 only, rows written in its schema) opened
/// by this binary: every later migration is applied and all the data is kept and usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_first_release_is_migrated_and_keeps_all_data() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let (_migrations, first) = upgrade::first_migration_only("postgres").await;
    let mut raw = schema.raw().await;
    first.run(&mut raw).await.expect("the first migration");
    assert_eq!(applied_versions(&schema).await, [1]);

    let old = upgrade::FirstRelease::new();
    let hook = &old.webhook;
    sqlx::query(
        "INSERT INTO webhooks (id, format, scope, target_url, secret, events, ca_certificate,
            proxy_url, description, enabled, disabled_reason, failing_since, created_at,
            updated_at)
         VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, true, NULL, $9, $10, $11)",
    )
    .bind(hook.id.as_uuid())
    .bind(hook.scope.to_string())
    .bind(hook.target_url.as_str())
    .bind(old.stored_secret())
    .bind(old.event_names())
    .bind(hook.ca_certificate.as_ref().map(|ca| ca.as_pem()))
    .bind(hook.proxy.as_ref().map(|proxy| proxy.expose()))
    .bind(hook.description.as_deref())
    .bind(old.attempt.started_at.as_millis())
    .bind(hook.created_at.as_millis())
    .bind(hook.updated_at.as_millis())
    .execute(&mut raw)
    .await
    .expect("webhook");
    sqlx::query(
        "INSERT INTO webhook_events (event_name, scope, webhook_id)
         SELECT unnest($1::text[]), $2, $3",
    )
    .bind(old.event_names())
    .bind(hook.scope.to_string())
    .bind(hook.id.as_uuid())
    .execute(&mut raw)
    .await
    .expect("subscriptions");
    sqlx::query(
        "INSERT INTO events (id, format, name, created_at, bytes) VALUES ($1, 1, $2, $3, $4)",
    )
    .bind(old.event.id.as_uuid())
    .bind(old.event.event.name().as_str())
    .bind(T0.as_millis())
    .bind(old.event.event.bytes())
    .execute(&mut raw)
    .await
    .expect("event");
    sqlx::query(
        "INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count,
            next_attempt_at, claimable_at, lease_token, created_at, updated_at)
         VALUES ($1, $2, $3, 'pending', 1, $4, $4, NULL, $5, $6)",
    )
    .bind(old.delivery.as_uuid())
    .bind(old.event.id.as_uuid())
    .bind(hook.id.as_uuid())
    .bind(old.due().as_millis())
    .bind(T0.as_millis())
    .bind(old.attempt.started_at.as_millis())
    .execute(&mut raw)
    .await
    .expect("delivery");
    let attempt = &old.attempt;
    sqlx::query(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code,
            failure, error, response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(old.delivery.as_uuid())
    .bind(i32::try_from(attempt.number).unwrap())
    .bind(attempt.started_at.as_millis())
    .bind(i64::try_from(attempt.duration_ms).unwrap())
    .bind(attempt.status_code.map(i32::from))
    .bind(attempt.failure.map(|kind| kind.as_str()))
    .bind(attempt.error.as_deref())
    .bind(attempt.response_excerpt.as_deref())
    .execute(&mut raw)
    .await
    .expect("attempt");
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, role, tenant_id, project_id, label, created_at)
         VALUES ($1, $2, $3, NULL, NULL, $4, $5)",
    )
    .bind(old.token.id.as_uuid())
    .bind(&old.token.hash.0[..])
    .bind(old.token.role.name())
    .bind(&old.token.label)
    .bind(old.token.created_at.as_millis())
    .execute(&mut raw)
    .await
    .expect("token");
    raw.close().await.ok();

    let store = schema.store(StoreOptions::default()).await;
    upgrade::assert_kept_and_usable(&store, &old).await;
    store.close().await;
    assert_eq!(
        applied_versions(&schema).await,
        upgrade::embedded_versions("postgres"),
        "every later migration is applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_are_config_errors_before_any_connection() {
    for url in ["mysql://127.0.0.1/test", "postgres://127.0.0.1:port/test"] {
        match PostgresStore::connect(url, StoreOptions::default()).await {
            Err(StoreError::Config(message)) => {
                assert!(message.contains("PostgreSQL URL"), "{url}: {message}")
            }
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }
}
