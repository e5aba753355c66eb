//! A database made by the first release, opened by this binary: only the first migration
//! applied, rows written in that schema, then `SqliteStore::open` / `PostgresStore::connect`.
//! The backend's own test (`sqlite_file.rs`, `pg.rs`) builds the database and writes the rows in
//! its SQL; what the rows hold and what must be true after the open is here, once.
//!
//! The first migration is applied by sqlx's own migrator, given a directory that holds only
//! that file: `_sqlx_migrations` then records it exactly as sqlx does (version, description,
//! checksum), as a database of the first release has it.

use std::path::PathBuf;

use mia_webhooks_model::{
    Attempt, DeliveryId, DeliveryStatus, FailureKind, Role, TokenId, WebhookPatch,
};
use mia_webhooks_store::{ApiToken, DeliveryQuery, NextState, RecordOutcome, Store, TokenHash};
use sqlx::migrate::Migrator;

use crate::support::*;

/// The migrations directory of a backend (`sqlite`, `postgres`).
fn migrations_dir(backend: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
}

/// The versions of every migration this binary embeds for `backend`, ascending (from the file
/// names, `<version>_<description>.sql`, the files `sqlx::migrate!` embeds).
pub fn embedded_versions(backend: &str) -> Vec<i64> {
    let mut versions: Vec<i64> = std::fs::read_dir(migrations_dir(backend))
        .expect("migrations directory")
        .map(|entry| entry.expect("migration file").file_name())
        .filter_map(|name| {
            let name = name.to_str()?.to_owned();
            let (version, _) = name.strip_suffix(".sql")?.split_once('_')?;
            version.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    assert!(!versions.is_empty(), "no migrations for {backend}");
    versions
}

/// sqlx's migrator over the first migration of `backend` only (a copy of its file in a
/// temporary directory, which the returned guard keeps).
pub async fn first_migration_only(backend: &str) -> (tempfile::TempDir, Migrator) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(migrations_dir(backend))
        .expect("migrations directory")
        .map(|entry| entry.expect("migration file").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let first = &files[0];
    assert!(
        first
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("0001_")),
        "{}",
        first.display()
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::copy(
        first,
        dir.path().join(first.file_name().expect("file name")),
    )
    .expect("copy the first migration");
    let migrator = Migrator::new(dir.path())
        .await
        .expect("the first migration resolves");
    assert_eq!(migrator.iter().count(), 1);
    (dir, migrator)
}

/// What a database of the first release holds: a webhook with every optional field, its
/// subscriptions, an event, a delivery waiting for its second attempt after a failed first one,
/// and an API token.
pub struct FirstRelease {
    pub webhook: mia_webhooks_model::Webhook,
    pub event: mia_webhooks_store::NewEvent,
    pub delivery: DeliveryId,
    pub attempt: Attempt,
    pub token: ApiToken,
}

impl FirstRelease {
    pub fn new() -> FirstRelease {
        let webhook = full_webhook();
        FirstRelease {
            event: event("tag_created", Some("acme"), Some("shop")),
            delivery: DeliveryId::new(),
            attempt: Attempt {
                number: 1,
                started_at: at(5),
                duration_ms: 42,
                status_code: Some(500),
                failure: Some(FailureKind::HttpStatus),
                error: Some("the receiver answered 500".into()),
                response_excerpt: Some("body of a 500".into()),
            },
            token: ApiToken {
                id: TokenId::new(),
                hash: TokenHash::of("mwh_first_release"),
                role: Role::Emitter,
                label: "emitter of the first release".into(),
                created_at: T0,
            },
            webhook,
        }
    }

    /// The webhook's secret as the first release stored it without an operator key.
    pub fn stored_secret(&self) -> String {
        format!("plain:{}", self.webhook.secret.expose_str())
    }

    /// The webhook's subscribed names, sorted (as stored).
    pub fn event_names(&self) -> Vec<String> {
        self.webhook
            .events
            .iter()
            .map(|name| name.as_str().to_owned())
            .collect()
    }

    /// When the delivery's second attempt is due.
    pub fn due(&self) -> mia_webhooks_model::Timestamp {
        at(100)
    }
}

/// Everything written by the first release reads back as it was, and the store works on it:
/// claims and records the old delivery, fans a new event out through the old subscriptions,
/// edits the old webhook.
pub async fn assert_kept_and_usable<S: Store>(store: &S, old: &FirstRelease) {
    let hook = &old.webhook;
    assert_same_webhook(&store.get_webhook(hook.id).await.unwrap().unwrap(), hook);
    assert_eq!(
        store.find_token(&old.token.hash).await.unwrap(),
        Some(old.token.clone())
    );
    assert_eq!(store.count_tokens().await.unwrap(), 1);
    assert_eq!(
        store.failing_since(hook.id).await.unwrap(),
        Some(old.attempt.started_at)
    );

    let detail = store.get_delivery(old.delivery).await.unwrap().unwrap();
    let delivery = &detail.delivery;
    assert_eq!(
        (
            delivery.id,
            delivery.event_id,
            delivery.event_name.as_str(),
            delivery.webhook_id
        ),
        (old.delivery, old.event.id, "tag_created", hook.id)
    );
    assert_eq!(
        (
            delivery.status,
            delivery.attempt_count,
            delivery.next_attempt_at
        ),
        (DeliveryStatus::Pending, 1, Some(old.due()))
    );
    assert_eq!(
        (delivery.created_at, delivery.updated_at),
        (T0, old.attempt.started_at)
    );
    assert_eq!(detail.attempts, std::slice::from_ref(&old.attempt));
    assert_eq!(detail.payload, old.event.event.bytes());
    let listed = store
        .list_deliveries(&DeliveryQuery {
            webhook: hook.id,
            status: Some(DeliveryStatus::Pending),
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(listed.items, std::slice::from_ref(delivery));

    // The old delivery is claimed for its second attempt, with everything an attempt needs.
    assert!(store.claim(&claim_at(at(99), 10)).await.unwrap().is_empty());
    let claimed = store.claim(&claim_at(old.due(), 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let claimed = &claimed[0];
    assert_eq!((claimed.delivery_id, claimed.attempt), (old.delivery, 2));
    assert_eq!(&*claimed.payload, old.event.event.bytes());
    assert_same_webhook(&claimed.webhook, hook);
    assert_eq!(
        store.record(&[success(claimed, at(101))]).await.unwrap(),
        [RecordOutcome::Recorded {
            failing_since: None
        }]
    );
    let detail = store.get_delivery(old.delivery).await.unwrap().unwrap();
    assert_eq!(detail.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(
        detail.attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2]
    );

    // The old subscriptions route a new event; the old webhook takes an edit.
    let new = event("tag_created", Some("acme"), Some("shop"));
    assert_eq!(
        store
            .ingest(std::slice::from_ref(&new), at(110))
            .await
            .unwrap()[0]
            .deliveries,
        1
    );
    let patch = WebhookPatch {
        description: Some(Some("edited after the upgrade".into())),
        ..WebhookPatch::default()
    };
    let edited = store
        .update_webhook(hook.id, patch, at(111))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        edited.description.as_deref(),
        Some("edited after the upgrade")
    );
    assert_eq!(edited.secret.expose(), hook.secret.expose());
    let retried = store.claim(&claim_at(at(112), 10)).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].event_id, new.id);
    assert_eq!(
        retried[0].webhook.description.as_deref(),
        Some("edited after the upgrade")
    );
    let failed = failure(&retried[0], at(113), NextState::Failed);
    assert!(matches!(
        store.record(&[failed]).await.unwrap()[0],
        RecordOutcome::Recorded { .. }
    ));
}
