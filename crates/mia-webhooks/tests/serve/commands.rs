//! `migrate` and `emit` against real databases and a real `serve` process.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use super::{Proc, bootstrap_token, create_webhook, receiver, run, wait_for};

/// The tables `migrate` leaves in a SQLite database, and how many migrations it recorded.
async fn schema(path: &std::path::Path) -> (Vec<String>, i64) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    (tables, migrations)
}

/// `migrate` on a fresh SQLite file creates the schema and exits 0; a second run changes
/// nothing; `serve` then starts on the database and stores a webhook in it.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_creates_the_schema_once_and_serve_starts_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("migrated.db");
    let url = format!("sqlite://{}", path.display());
    let env = [("MIA_WEBHOOKS_DATABASE_URL", url.as_str())];

    let out = run(dir.path(), &["migrate"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "mia-webhooks: migrations applied"
    );
    let (tables, migrations) = schema(&path).await;
    for table in [
        "api_tokens",
        "attempts",
        "deliveries",
        "events",
        "webhook_events",
        "webhooks",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    assert!(migrations >= 1);

    let out = run(dir.path(), &["migrate"], &env);
    assert!(
        out.status.success(),
        "a second migrate succeeds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        schema(&path).await,
        (tables, migrations),
        "a second migrate changes nothing"
    );

    let token = "migrated-admin-token-0123456789";
    let (proc, _) = Proc::start(
        dir.path(),
        &[
            ("MIA_WEBHOOKS_DATABASE_URL", url.clone()),
            ("MIA_WEBHOOKS_ADMIN_TOKEN", token.to_owned()),
            ("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8".to_owned()),
        ],
    );
    create_webhook(
        &proc.base,
        token,
        "http://127.0.0.1:9/hook",
        &["project_created"],
    )
    .await;
    assert!(proc.terminate().success());
    let mut db = sqlx::SqliteConnection::connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    let webhooks: i64 = sqlx::query_scalar("SELECT count(*) FROM webhooks")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(webhooks, 1, "serve used the migrated file");
}

/// `emit --payload @FILE` posts the file's JSON as the event's payload, and the receiver gets
/// it; a refused emit exits 1 with one line naming the status and never the token; a payload
/// file that cannot be read is a usage error (2).
#[tokio::test(flavor = "multi_thread")]
async fn emit_posts_a_payload_file_and_reports_a_refusal_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, stdout) = Proc::start(
        dir.path(),
        &[("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8".into())],
    );
    let token = bootstrap_token(stdout);
    let (target, seen) = receiver().await;
    let webhook = create_webhook(&proc.base, &token, &target, &["project_created"]).await;

    let payload =
        json!({"tenantId": "acme", "projectId": "p1", "name": "from a file", "tags": ["a", "b"]});
    let file = dir.path().join("payload.json");
    std::fs::write(&file, serde_json::to_string_pretty(&payload).unwrap()).unwrap();
    let at_file = format!("@{}", file.display());
    let emit = |token: &str, payload: &str| {
        run(
            dir.path(),
            &[
                "emit",
                "--server",
                &proc.base,
                "--token",
                token,
                "--event",
                "project_created",
                "--payload",
                payload,
            ],
            &[],
        )
    };

    let out = emit(&token, &at_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["deliveries"], 1, "{answer}");
    wait_for(&seen, 1, Duration::from_secs(20)).await;
    let (_, body) = seen.lock().unwrap()[0].clone();
    let delivered: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(delivered["payload"], payload);

    let bad_token = "mwh_not-a-real-token-0123456789";
    let out = emit(bad_token, &at_file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("mia-webhooks: the server answered 401 Unauthorized: "),
        "{stderr}"
    );
    assert!(!stderr.contains(bad_token), "{stderr}");
    assert!(out.stdout.is_empty());

    let missing = format!("@{}", dir.path().join("missing.json").display());
    let out = emit(&token, &missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.json"), "{stderr}");
    assert!(!stderr.contains(&token), "{stderr}");

    // The refused and unread emits queued nothing.
    let log: Value = reqwest::Client::new()
        .get(format!("{}/api/webhooks/{webhook}/deliveries", proc.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["items"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["items"][0]["eventId"], answer["eventId"], "{log}");
    assert!(proc.terminate().success());
}
