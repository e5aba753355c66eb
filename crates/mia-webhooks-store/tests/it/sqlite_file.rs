//! What is particular to SQLite: the file on disk, its settings, what is stored in it, one writer
//! shared by two processes, the write-ahead log under load. (The query plans the design relies
//! on are checked on the statements themselves, in `src/sqlite/plans.rs`.)

use mia_webhooks_model::{Event, EventName, Secret};
use mia_webhooks_store::{
    AnyStore, NewEvent, RecordOutcome, SecretKeys, SqliteStore, Store, StoreError, StoreOptions,
};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::support::*;
use crate::upgrade;

async fn raw(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn database_file_is_created_on_first_open_with_migrations_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    assert!(!path.exists());
    let hook = webhook("instance", &["tag_created"]);
    {
        let store = SqliteStore::open(
            &format!("sqlite://{}", path.display()),
            StoreOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(store.path(), path);
        store.create_webhook(&hook).await.unwrap();
        store.close().await;
    }
    assert!(path.is_file(), "the file exists after the first open");
    let wal = dir.path().join("hooks.db-wal");
    assert!(
        !wal.exists() || wal.metadata().unwrap().len() == 0,
        "closing folds the log into the file"
    );

    let mut conn = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let applied = applied_versions(&mut conn).await;
    assert_eq!(
        applied,
        upgrade::embedded_versions("sqlite"),
        "every embedded migration is applied"
    );
    conn.close().await.unwrap();

    // Reopening (as a newer binary would) applies nothing twice and keeps the data.
    let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    assert_same_webhook(&store.get_webhook(hook.id).await.unwrap().unwrap(), &hook);
    store.close().await;
    let mut conn = raw(&path).await;
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(usize::try_from(all).unwrap(), applied.len());
}

/// The versions of the migrations applied successfully, ascending.
async fn applied_versions(conn: &mut SqliteConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// A database of the first release (migration 0001 only, rows written in its schema) opened
/// by this binary: every later migration is applied and all the data is kept and usable.
#[tokio::test]
async fn a_database_of_the_first_release_is_migrated_and_keeps_all_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("first-release.db");
    let (_migrations, first) = upgrade::first_migration_only("sqlite").await;
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true),
    )
    .await
    .unwrap();
    first.run(&mut conn).await.unwrap();
    assert_eq!(applied_versions(&mut conn).await, [1]);

    let old = upgrade::FirstRelease::new();
    let hook = &old.webhook;
    let id = |uuid: uuid::Uuid| uuid.as_bytes().to_vec();
    sqlx::query(
        "INSERT INTO webhooks (id, format, scope, target_url, secret, events, ca_certificate, \
         proxy_url, description, enabled, disabled_reason, failing_since, created_at, updated_at) \
         VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, 1, NULL, ?, ?, ?)",
    )
    .bind(id(hook.id.as_uuid()))
    .bind(hook.scope.to_string())
    .bind(hook.target_url.as_str())
    .bind(old.stored_secret())
    .bind(old.event_names().join(" "))
    .bind(hook.ca_certificate.as_ref().map(|ca| ca.as_pem()))
    .bind(hook.proxy.as_ref().map(|proxy| proxy.expose()))
    .bind(hook.description.as_deref())
    .bind(old.attempt.started_at.as_millis())
    .bind(hook.created_at.as_millis())
    .bind(hook.updated_at.as_millis())
    .execute(&mut conn)
    .await
    .unwrap();
    for name in old.event_names() {
        sqlx::query("INSERT INTO webhook_events (event_name, scope, webhook_id) VALUES (?, ?, ?)")
            .bind(name)
            .bind(hook.scope.to_string())
            .bind(id(hook.id.as_uuid()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO events (id, format, name, created_at, bytes) VALUES (?, 1, ?, ?, ?)")
        .bind(id(old.event.id.as_uuid()))
        .bind(old.event.event.name().as_str())
        .bind(T0.as_millis())
        .bind(old.event.event.bytes())
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count, \
         next_attempt_at, claimable_at, lease_token, created_at, updated_at) \
         VALUES (?, ?, ?, 'pending', 1, ?, ?, NULL, ?, ?)",
    )
    .bind(id(old.delivery.as_uuid()))
    .bind(id(old.event.id.as_uuid()))
    .bind(id(hook.id.as_uuid()))
    .bind(old.due().as_millis())
    .bind(old.due().as_millis())
    .bind(T0.as_millis())
    .bind(old.attempt.started_at.as_millis())
    .execute(&mut conn)
    .await
    .unwrap();
    let attempt = &old.attempt;
    sqlx::query(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, \
         failure, error, response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id(old.delivery.as_uuid()))
    .bind(i64::from(attempt.number))
    .bind(attempt.started_at.as_millis())
    .bind(i64::try_from(attempt.duration_ms).unwrap())
    .bind(attempt.status_code.map(i64::from))
    .bind(attempt.failure.map(|kind| kind.as_str()))
    .bind(attempt.error.as_deref())
    .bind(attempt.response_excerpt.as_deref())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, role, tenant_id, project_id, label, created_at) \
         VALUES (?, ?, ?, NULL, NULL, ?, ?)",
    )
    .bind(id(old.token.id.as_uuid()))
    .bind(&old.token.hash.0[..])
    .bind(old.token.role.name())
    .bind(&old.token.label)
    .bind(old.token.created_at.as_millis())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    upgrade::assert_kept_and_usable(&store, &old).await;
    store.close().await;

    let mut conn = raw(&path).await;
    assert_eq!(
        applied_versions(&mut conn).await,
        upgrade::embedded_versions("sqlite"),
        "every later migration is applied"
    );
    // The later migrations' columns are there (0002: the webhook revision, set by the edit).
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM webhooks WHERE id = ?")
        .bind(id(hook.id.as_uuid()))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_ne!(revision, 0, "the edit after the upgrade set a revision");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    match SqliteStore::open(path.to_str().unwrap(), StoreOptions::default()).await {
        Err(StoreError::Migration(_)) => {}
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let path = missing.join("hooks.db");
    match SqliteStore::open(path.to_str().unwrap(), StoreOptions::default()).await {
        Err(StoreError::Config(message)) => {
            assert!(
                message.contains("does not exist")
                    && message.contains(&missing.display().to_string()),
                "{message}"
            )
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(!missing.exists(), "nothing was created");
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_under_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    let keys = SecretKeys::from_bytes([5; 32], &[]);
    let key_id = keys.current_key_id().to_owned();
    let plaintext = "correct-horse-battery-staple-4242";
    let hook = mia_webhooks_model::Webhook {
        secret: Secret::new(plaintext).unwrap(),
        ..webhook("instance", &["tag_created"])
    };
    let store = SqliteStore::open(
        path.to_str().unwrap(),
        StoreOptions {
            secret_keys: Some(keys),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    store.create_webhook(&hook).await.unwrap();
    assert_eq!(
        store
            .get_webhook(hook.id)
            .await
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        plaintext.as_bytes()
    );
    store.close().await;

    let mut conn = raw(&path).await;
    let stored: String = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        stored.starts_with(&format!("sealed:v1:{key_id}:")),
        "{stored}"
    );
    assert!(!stored.contains(plaintext));
    conn.close().await.unwrap();
    // Nowhere in the files either (the database and its write-ahead log).
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes()),
            "plaintext secret on disk"
        );
    }
}

#[tokio::test]
async fn secrets_without_a_key_are_stored_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    let hook = webhook("instance", &["tag_created"]);
    let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    store.create_webhook(&hook).await.unwrap();
    store.close().await;
    let mut conn = raw(&path).await;
    let stored: String = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored.as_bytes(),
        [b"plain:".as_slice(), hook.secret.expose()].concat()
    );
}

#[tokio::test]
async fn any_store_picks_the_backend_from_the_url() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["memory:", "memory://"] {
        let store = AnyStore::open(url, StoreOptions::default()).await.unwrap();
        assert_eq!((store.backend(), store.is_durable()), ("memory", false));
    }
    let plain_path = dir.path().join("plain.db");
    let urls = [
        plain_path.display().to_string(),
        format!("sqlite://{}", dir.path().join("url.db").display()),
        format!("sqlite:{}", dir.path().join("short.db").display()),
    ];
    for url in &urls {
        let store = AnyStore::open(url, StoreOptions::default()).await.unwrap();
        assert_eq!(
            (store.backend(), store.is_durable()),
            ("sqlite", true),
            "{url}"
        );
        store.ping().await.unwrap();
    }
    assert!(plain_path.is_file());
    assert!(dir.path().join("url.db").is_file() && dir.path().join("short.db").is_file());
    match AnyStore::open("sqlite::memory:", StoreOptions::default()).await {
        Err(StoreError::Config(message)) => assert!(message.contains("memory:"), "{message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    #[cfg(not(feature = "postgres"))]
    for url in [
        "postgres://postgres@127.0.0.1/test",
        "postgresql://127.0.0.1/test",
    ] {
        match AnyStore::open(url, StoreOptions::default()).await {
            Err(StoreError::Config(message)) => assert!(
                message.contains("built without postgres support"),
                "{message}"
            ),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_one_writer() {
    // Two stores on one file stand for two processes (say, the server and `mia-webhooks emit`):
    // `BEGIN IMMEDIATE` and the busy timeout make each wait for the other, never fail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    let location = path.to_str().unwrap().to_owned();
    let first = SqliteStore::open(&location, StoreOptions::default())
        .await
        .unwrap();
    let second = SqliteStore::open(&location, StoreOptions::default())
        .await
        .unwrap();
    let hook = webhook("instance", &["tag_created"]);
    first.create_webhook(&hook).await.unwrap();
    let mut tasks = Vec::new();
    for store in [first.clone(), second.clone(), first.clone(), second.clone()] {
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                store
                    .ingest(&[event("tag_created", None, None)], T0)
                    .await
                    .unwrap();
                let claimed = store.claim(&claim_at(at(1), 1)).await.unwrap();
                let results: Vec<_> = claimed.iter().map(|c| success(c, at(1))).collect();
                for outcome in store.record(&results).await.unwrap() {
                    assert_eq!(
                        outcome,
                        RecordOutcome::Recorded {
                            failing_since: None
                        }
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = second.stats().await.unwrap();
    assert_eq!(stats.succeeded + stats.pending, 100);
    assert_eq!(deliveries_of(&first, hook.id).await.len(), 100);
}

/// Under a steady write load the write-ahead log is rewound once it passes 16 MiB (4,096
/// pages): later commits write it from its start again, so it stays bounded instead of growing
/// with everything written (a passive checkpoint alone never lets SQLite rewind the log while
/// commits keep coming: two writers here keep one always waiting), and its file is reused
/// rather than cut and grown again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_rewound_under_steady_writes() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    for _ in 0..10 {
        store
            .create_webhook(&webhook("instance", &["tag_created"]))
            .await
            .unwrap();
    }
    let wal = dir.path().join("wal.db-wal");
    // The log header's checkpoint sequence number (bytes 12 to 15, big-endian), which SQLite
    // increments each time it starts the log over: read from the file, so that the test itself
    // checkpoints nothing.
    let sequence = |wal: &std::path::Path| {
        let bytes = std::fs::read(wal).unwrap_or_default();
        bytes
            .get(12..16)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let first = sequence(&wal);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..2 {
        let (store, stop) = (store.clone(), std::sync::Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut payload = serde_json::Map::new();
            payload.insert("text".into(), "x".repeat(1000).into());
            // Commits of 50 events of 1 KiB to 10 webhooks each, back to back.
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let batch: Vec<NewEvent> = (0..50)
                    .map(|_| NewEvent {
                        id: mia_webhooks_model::EventId::new(),
                        event: Event::from_parts(
                            EventName::new("tag_created").unwrap(),
                            T0,
                            &payload,
                        )
                        .unwrap(),
                    })
                    .collect();
                store.ingest(&batch, T0).await.unwrap();
            }
        }));
    }
    // About 100 MiB of log written: several times the threshold.
    let started = std::time::Instant::now();
    let mut peak = 0;
    while started.elapsed() < std::time::Duration::from_secs(60) {
        peak = peak.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        let stats = store.stats().await.unwrap();
        if stats.pending >= 60_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let rewinds = sequence(&wal).wrapping_sub(first);
    store.close().await;
    assert!(rewinds >= 2, "the log was rewound {rewinds} times");
    // 16 MiB, plus what commits add while the task is between ticks.
    assert!(peak < 48 * MIB, "the log file reached {peak} bytes");
}
