//! What is particular to SQLite: the file on disk, its settings, what is stored in it, one writer
//! shared by two processes, and the query plans the design relies on.

use mia_webhooks_model::Secret;
use mia_webhooks_store::{AnyStore, SecretKeys, SqliteStore, Store, StoreError, StoreOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Row as _};

use crate::support::*;

async fn raw(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

async fn plan(conn: &mut SqliteConnection, sql: &str) -> String {
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(conn)
        .await
        .expect("plan");
    rows.iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
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
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(applied >= 1);
    conn.close().await.unwrap();

    // Reopening (as a newer binary would) applies nothing twice and keeps the data.
    let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap();
    assert_same_webhook(&store.get_webhook(hook.id).await.unwrap().unwrap(), &hook);
    store.close().await;
    let mut conn = raw(&path).await;
    let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(again, applied);
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
                store.record(&results).await.unwrap();
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

#[tokio::test]
async fn fanout_and_claim_are_index_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    let mut conn = raw(&path).await;
    // The statements of src/sqlite/queue.rs, as written there.
    let fanout = plan(
        &mut conn,
        "SELECT we.webhook_id FROM webhook_events we JOIN webhooks w ON w.id = we.webhook_id \
         WHERE we.event_name = ? AND we.scope IN (?, ?, ?) AND w.enabled = 1 ORDER BY we.webhook_id",
    )
    .await;
    assert!(
        fanout.contains("SEARCH we USING PRIMARY KEY (event_name=? AND scope=?)"),
        "{fanout}"
    );
    assert!(!fanout.contains("SCAN"), "{fanout}");
    let claim = plan(
        &mut conn,
        "SELECT id, webhook_id, event_id, attempt_count, created_at FROM deliveries WHERE claimable_at <= ? \
         ORDER BY claimable_at, id LIMIT ?",
    )
    .await;
    assert!(
        claim.contains("USING INDEX deliveries_claimable"),
        "{claim}"
    );
    assert!(!claim.contains("TEMP B-TREE"), "{claim}");
    let held = plan(
        &mut conn,
        "SELECT webhook_id, COUNT(*) AS held FROM deliveries WHERE status = 'delivering' AND claimable_at > ? \
         GROUP BY webhook_id",
    )
    .await;
    assert!(held.contains("deliveries_leased"), "{held}");
    // src/sqlite/record.rs: a batch of results probes the deliveries by id, never scans them.
    let record = plan(
        &mut conn,
        "WITH r (id, lease, status, next_at, now) AS (VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)) \
         UPDATE deliveries SET status = r.status, next_attempt_at = r.next_at, claimable_at = r.next_at, \
         lease_token = NULL, attempt_count = attempt_count + 1, updated_at = r.now \
         FROM r WHERE deliveries.id = r.id AND deliveries.lease_token = r.lease \
         AND deliveries.status = 'delivering' \
         RETURNING deliveries.id, deliveries.attempt_count, deliveries.webhook_id",
    )
    .await;
    assert!(
        record.contains("SEARCH deliveries USING PRIMARY KEY (id=?)"),
        "{record}"
    );
    assert!(!record.contains("SCAN deliveries"), "{record}");
}
