//! Storage: ingestion fan-out among 10,000 stored webhooks, and claim + record throughput beside
//! the raw rate of the same number of plain statements on the same SQLite database.
//!
//! `cargo bench -p mia-webhooks-benches --bench store -- --warm-up-time 1 --measurement-time 5`
//!
//! The done-criteria of issue 3: ingesting one event with 10,000 webhooks stored and 100 of them
//! matching stays under 5 ms median on SQLite, and claim + record moves deliveries at least half
//! as fast as plain `UPDATE`/`INSERT` statements doing the same row changes in one transaction
//! (`claim_record/sqlite_raw_statements`), in the same run. Results go into `BENCHMARKS.md`.
//!
//! The functions that drive a store are generic over [`Store`], so another backend (PostgreSQL)
//! is benchmarked by calling them with its store.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mia_webhooks_model::{
    Attempt, Event, EventCatalog, EventId, EventSet, FailureKind, Scope, Secret, TargetUrl,
    Timestamp, Webhook, WebhookId,
};
use mia_webhooks_store::{
    AttemptResult, ClaimRequest, NewEvent, NextState, PostgresStore, SecretKeys, SqliteStore,
    Store, StoreOptions,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Uuid;
use tokio::runtime::Runtime;

/// Webhooks stored for the fan-out benchmark.
const STORED_WEBHOOKS: usize = 10_000;
/// Of which this many receive the benchmark's event.
const MATCHING: usize = 100;
/// Deliveries per claim and per record call.
const BATCH: usize = 256;

const NOW: Timestamp = Timestamp::from_millis(1_764_374_400_000);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn options() -> StoreOptions {
    // Production-like: secrets sealed at rest, so claims pay for opening them.
    StoreOptions {
        secret_keys: Some(SecretKeys::from_bytes([7; 32], &[])),
        ..StoreOptions::default()
    }
}

fn catalog() -> EventCatalog {
    EventCatalog::with_extra(["order_placed", "order_shipped"]).expect("catalog")
}

/// An `order_placed` event of company t1, project p1, with a payload of about 1 KiB.
fn order_event(catalog: &EventCatalog) -> NewEvent {
    let note = "x".repeat(900);
    let body = format!(
        r#"{{"eventName":"order_placed","eventTimestamp":{},"payload":{{"tenantId":"t1","projectId":"p1","orderId":"{}","note":"{note}"}}}}"#,
        NOW.as_millis(),
        EventId::new()
    );
    NewEvent {
        id: EventId::new(),
        event: Event::parse(body.as_bytes(), catalog).expect("event"),
    }
}

fn webhook(scope: &str, event: &str) -> Webhook {
    Webhook {
        id: WebhookId::new(),
        scope: scope.parse::<Scope>().expect("scope"),
        target_url: TargetUrl::new("https://receiver.example/hooks").expect("url"),
        secret: Secret::new("whsec_0123456789abcdef0123456789").expect("secret"),
        events: EventSet::from_stored([event.to_owned()]).expect("events"),
        ca_certificate: None,
        proxy: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

/// 10,000 webhooks of which 100 receive `order_placed` of t1/p1: a third each on the instance,
/// on company t1 and on project t1/p1. The others subscribe to the same name elsewhere (other
/// companies and projects) or to another name on the same scopes, so the index has to tell them
/// apart.
async fn store_fanout_webhooks<S: Store>(store: &S) {
    let matching = ["instance", "company/t1", "company/t1/project/p1"];
    for i in 0..MATCHING {
        store
            .create_webhook(&webhook(matching[i % 3], "order_placed"))
            .await
            .expect("create");
    }
    for i in 0..STORED_WEBHOOKS - MATCHING {
        let hook = match i % 4 {
            0 => webhook(&format!("company/t{}", i % 500 + 2), "order_placed"),
            1 => webhook(
                &format!("company/t1/project/p{}", i % 300 + 2),
                "order_placed",
            ),
            2 => webhook(matching[i % 3], "order_shipped"),
            _ => webhook(
                &format!("company/t{}/project/p1", i % 500 + 2),
                "order_placed",
            ),
        };
        store.create_webhook(&hook).await.expect("create");
    }
}

/// Times `iters` ingestions of one event each.
async fn time_ingest<S: Store>(store: &S, catalog: &EventCatalog, iters: u64) -> Duration {
    let events: Vec<NewEvent> = (0..iters).map(|_| order_event(catalog)).collect();
    let start = Instant::now();
    for event in &events {
        let receipts = store
            .ingest(std::slice::from_ref(event), NOW)
            .await
            .expect("ingest");
        assert_eq!(receipts[0].deliveries, MATCHING);
    }
    start.elapsed()
}

fn ingest(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ingest.db");
    let store = rt.block_on(async {
        let store = SqliteStore::open(path.to_str().expect("path"), options())
            .await
            .expect("open");
        store_fanout_webhooks(&store).await;
        store
    });
    let catalog = catalog();
    let mut group = c.benchmark_group("ingest_10k_webhooks_100_matching");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sqlite", |b| {
        b.iter_custom(|iters| rt.block_on(time_ingest(&store, &catalog, iters)))
    });
    group.finish();
    rt.block_on(store.close());
}

/// Fills a store with pending deliveries for claim + record: 100 webhooks, 30 events each.
async fn fill_queue<S: Store>(store: &S) {
    let catalog = catalog();
    for _ in 0..100 {
        store
            .create_webhook(&webhook("instance", "order_placed"))
            .await
            .expect("create");
    }
    let events: Vec<NewEvent> = (0..30).map(|_| order_event(&catalog)).collect();
    store.ingest(&events, NOW).await.expect("ingest");
}

fn attempt(number: u32) -> Attempt {
    Attempt {
        number,
        started_at: NOW,
        duration_ms: 120,
        status_code: Some(503),
        failure: Some(FailureKind::HttpStatus),
        error: Some("the receiver answered 503 Service Unavailable".into()),
        response_excerpt: Some("upstream connect error".into()),
    }
}

/// Times `iters` rounds of: claim a batch, record a failed attempt for each delivery with a
/// retry due at once (so the queue never drains and every round does the same work).
async fn time_claim_record<S: Store>(store: &S, iters: u64) -> Duration {
    let request = ClaimRequest {
        limit: BATCH,
        lease: Duration::from_secs(60),
        per_webhook_cap: 1000,
        now: NOW,
    };
    let start = Instant::now();
    for _ in 0..iters {
        let claimed = store.claim(&request).await.expect("claim");
        assert_eq!(claimed.len(), BATCH);
        let results: Vec<AttemptResult> = claimed
            .iter()
            .map(|c| AttemptResult {
                delivery_id: c.delivery_id,
                lease: c.lease,
                webhook_id: c.webhook.id,
                attempt: attempt(c.attempt),
                next: NextState::RetryAt(NOW),
                disable_webhook: None,
                now: NOW,
            })
            .collect();
        store.record(&results).await.expect("record");
    }
    start.elapsed()
}

/// A plain sqlx pool on the same file, with the settings of the store's write connection
/// (`src/sqlite/mod.rs` and `checkpoint.rs`): the same journal, sync, cache and checkpoint
/// threshold, so the two differ only in the statements they run. The store's background
/// checkpoints run during both measurements.
async fn raw_pool(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-65536")
        .pragma("wal_autocheckpoint", "20000");
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("raw pool")
}

/// Times `iters` transactions that make the same row changes as one claim + record round with
/// one plain statement each, and nothing else: per delivery, `UPDATE` it to delivering under a
/// lease, `INSERT` the attempt, `UPDATE` it back to pending. No reads, no checks.
async fn time_raw(pool: &SqlitePool, ids: &[Vec<u8>], round: &mut i64, iters: u64) -> Duration {
    let lease = uuid_bytes();
    let start = Instant::now();
    for _ in 0..iters {
        *round += 1;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
        for id in ids {
            sqlx::query(
                "UPDATE deliveries SET status = 'delivering', claimable_at = ?, lease_token = ?, updated_at = ? \
                 WHERE id = ?",
            )
            .bind(NOW.as_millis() + 60_000)
            .bind(&lease[..])
            .bind(NOW.as_millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("lease");
            sqlx::query(
                "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, failure, error, \
                 response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(*round)
            .bind(NOW.as_millis())
            .bind(120_i64)
            .bind(503_i64)
            .bind("http_status")
            .bind("the receiver answered 503 Service Unavailable")
            .bind("upstream connect error")
            .execute(&mut *tx)
            .await
            .expect("attempt");
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, claimable_at = ?, lease_token = NULL, \
                 attempt_count = attempt_count + 1, updated_at = ? WHERE id = ?",
            )
            .bind(NOW.as_millis())
            .bind(NOW.as_millis())
            .bind(NOW.as_millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("next state");
        }
        tx.commit().await.expect("commit");
    }
    start.elapsed()
}

fn uuid_bytes() -> [u8; 16] {
    WebhookId::new().as_uuid().into_bytes()
}

fn claim_record(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.db");
    let (store, pool, ids) = rt.block_on(async {
        let store = SqliteStore::open(path.to_str().expect("path"), options())
            .await
            .expect("open");
        fill_queue(&store).await;
        let pool = raw_pool(&path).await;
        // The raw transactions touch the rows a claim takes: the first due, in id order.
        let ids: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT id FROM deliveries ORDER BY claimable_at, id LIMIT ?")
                .bind(BATCH as i64)
                .fetch_all(&pool)
                .await
                .expect("ids");
        (store, pool, ids)
    });
    // Attempt numbers of the raw rounds stay clear of the store's.
    let mut round = 1_000_000_000_i64;
    let mut group = c.benchmark_group("claim_record");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("sqlite_store", |b| {
        b.iter_custom(|iters| rt.block_on(time_claim_record(&store, iters)))
    });
    group.bench_function("sqlite_raw_statements", |b| {
        b.iter_custom(|iters| rt.block_on(time_raw(&pool, &ids, &mut round, iters)))
    });
    group.finish();
    rt.block_on(async {
        pool.close().await;
        store.close().await;
    });
}

// --- PostgreSQL -------------------------------------------------------------------------------
//
// The same measurements on the PostgreSQL server named by `MIA_WEBHOOKS_TEST_POSTGRES_URL` (the
// variable the tests use), each in a schema of its own that is dropped afterwards. Without the
// variable these benchmarks say so and do nothing.

/// The variable naming the PostgreSQL server.
const PG_URL_VAR: &str = "MIA_WEBHOOKS_TEST_POSTGRES_URL";

/// A schema of its own on the benchmark server.
struct PgSchema {
    server: PgPool,
    name: String,
    /// The server's URL with this schema as the search path.
    url: String,
}

impl PgSchema {
    /// A fresh schema, or `None` when no server is configured.
    async fn create() -> Option<PgSchema> {
        let Ok(server_url) = std::env::var(PG_URL_VAR) else {
            eprintln!("postgres benchmarks skipped: {PG_URL_VAR} not set");
            return None;
        };
        let server = PgPoolOptions::new()
            .max_connections(1)
            .connect(&server_url)
            .await
            .expect("postgres server");
        let name = format!("bench_{}", WebhookId::new().as_uuid().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&server)
            .await
            .expect("create schema");
        let separator = if server_url.contains('?') { '&' } else { '?' };
        let url = format!("{server_url}{separator}options[search_path]={name}");
        Some(PgSchema { server, name, url })
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, options())
            .await
            .expect("open postgres store")
    }

    async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.server)
            .await
            .expect("drop schema");
        self.server.close().await;
    }
}

fn ingest_postgres(c: &mut Criterion) {
    let rt = runtime();
    let Some(schema) = rt.block_on(PgSchema::create()) else {
        return;
    };
    let store = rt.block_on(async {
        let store = schema.store().await;
        store_fanout_webhooks(&store).await;
        store
    });
    let probe = rt.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&schema.url)
            .await
            .expect("raw pool");
        sqlx::query("CREATE TABLE commit_probe (n BIGINT)")
            .execute(&pool)
            .await
            .expect("probe table");
        pool
    });
    let catalog = catalog();
    let mut group = c.benchmark_group("ingest_10k_webhooks_100_matching");
    group.throughput(Throughput::Elements(1));
    group.bench_function("postgres", |b| {
        b.iter_custom(|iters| rt.block_on(time_ingest(&store, &catalog, iters)))
    });
    // The floor under any durable write on this server: one row inserted and committed (the
    // commit waits for the WAL to reach the disk).
    group.bench_function("postgres_one_row_commit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut tx = probe.begin().await.expect("begin");
                    sqlx::query("INSERT INTO commit_probe (n) VALUES (1)")
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    tx.commit().await.expect("commit");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    rt.block_on(async {
        probe.close().await;
        store.close().await;
        schema.drop_schema().await;
    });
}

/// [`time_raw`] on PostgreSQL: the same three plain statements per delivery in one
/// transaction.
async fn time_raw_pg(pool: &PgPool, ids: &[Uuid], round: &mut i32, iters: u64) -> Duration {
    let lease = WebhookId::new().as_uuid();
    let start = Instant::now();
    for _ in 0..iters {
        *round += 1;
        let mut tx = pool.begin().await.expect("begin");
        for id in ids {
            sqlx::query(
                "UPDATE deliveries SET status = 'delivering', claimable_at = $1, lease_token = $2, updated_at = $3 \
                 WHERE id = $4",
            )
            .bind(NOW.as_millis() + 60_000)
            .bind(lease)
            .bind(NOW.as_millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("lease");
            sqlx::query(
                "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, failure, error, \
                 response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(*round)
            .bind(NOW.as_millis())
            .bind(120_i64)
            .bind(503_i32)
            .bind("http_status")
            .bind("the receiver answered 503 Service Unavailable")
            .bind("upstream connect error")
            .execute(&mut *tx)
            .await
            .expect("attempt");
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, claimable_at = $2, \
                 lease_token = NULL, attempt_count = attempt_count + 1, updated_at = $3 WHERE id = $4",
            )
            .bind(NOW.as_millis())
            .bind(NOW.as_millis())
            .bind(NOW.as_millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("next state");
        }
        tx.commit().await.expect("commit");
    }
    start.elapsed()
}

fn claim_record_postgres(c: &mut Criterion) {
    let rt = runtime();
    let Some(schema) = rt.block_on(PgSchema::create()) else {
        return;
    };
    let (store, pool, ids) = rt.block_on(async {
        let store = schema.store().await;
        fill_queue(&store).await;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&schema.url)
            .await
            .expect("raw pool");
        // The raw transactions touch the rows a claim takes: the first due, in id order.
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM deliveries ORDER BY claimable_at, id LIMIT $1")
                .bind(BATCH as i64)
                .fetch_all(&pool)
                .await
                .expect("ids");
        (store, pool, ids)
    });
    // Attempt numbers of the raw rounds stay clear of the store's.
    let mut round = 1_000_000_000_i32;
    let mut group = c.benchmark_group("claim_record");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("postgres_store", |b| {
        b.iter_custom(|iters| rt.block_on(time_claim_record(&store, iters)))
    });
    group.bench_function("postgres_raw_statements", |b| {
        b.iter_custom(|iters| rt.block_on(time_raw_pg(&pool, &ids, &mut round, iters)))
    });
    group.finish();
    rt.block_on(async {
        pool.close().await;
        store.close().await;
        schema.drop_schema().await;
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ingest, claim_record, ingest_postgres, claim_record_postgres
}
criterion_main!(benches);
