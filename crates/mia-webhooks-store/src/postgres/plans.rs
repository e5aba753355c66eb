//! The query plan the fan-out relies on: with 10,000 webhooks stored, of which a few match, an
//! ingestion finds them by probes of the subscription index, never by a scan of a table.
//!
//! Runs against the server named by `MIA_WEBHOOKS_TEST_POSTGRES_URL`, in a schema of its own
//! (named like those of the integration tests, `t_<uuid v7>`, which drop them once stale).

use std::io::Write as _;
use std::str::FromStr as _;

use mia_webhooks_model::{
    Event, EventId, EventName, EventSet, Secret, TargetUrl, Timestamp, Webhook, WebhookId,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use super::PostgresStore;
use super::ingest::{FANOUT, fanout_keys};
use crate::{NewEvent, Store, StoreOptions};

const URL_VAR: &str = "MIA_WEBHOOKS_TEST_POSTGRES_URL";

/// Webhooks stored besides the matching ones.
const OTHERS: i64 = 10_000;

/// Webhooks the event reaches.
const MATCHING: usize = 5;

/// A store on a fresh schema of the test server, or `None` (said on the process's stderr, past
/// the harness's capture) when no server is configured.
async fn store_in_fresh_schema(test: &str) -> Option<PostgresStore> {
    let Ok(url) = std::env::var(URL_VAR) else {
        let _ = writeln!(std::io::stderr(), "{test}: NOT RUN, {URL_VAR} not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnectOptions::from_str(&url)
        .expect("test server URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR} is set but PostgreSQL does not answer: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create the test schema");
    conn.close().await.ok();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options[search_path]={schema}");
    Some(
        PostgresStore::connect(&url, StoreOptions::default())
            .await
            .expect("open the store"),
    )
}

fn webhook(scope: &str) -> Webhook {
    let id = WebhookId::new();
    Webhook {
        id,
        scope: scope.parse().expect("scope"),
        target_url: TargetUrl::new("https://receiver.example/hooks").expect("url"),
        secret: Secret::new(format!("secret-of-{id}")).expect("secret"),
        events: EventSet::from_stored(["tag_created".to_owned(), "project_created".to_owned()])
            .expect("events"),
        ca_certificate: None,
        proxy: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_probes_the_subscription_index_among_10000_webhooks() {
    let Some(store) = store_in_fresh_schema(
        "postgres::plans::fanout_probes_the_subscription_index_among_10000_webhooks",
    )
    .await
    else {
        return;
    };
    // 10,000 webhooks subscribed to the same names as the matching ones, on scopes the event
    // does not reach (each its own company and project), written in bulk...
    sqlx::query(
        "INSERT INTO webhooks (id, scope, target_url, secret, events, enabled, created_at,
            updated_at)
         SELECT gen_random_uuid(), 'company/tenant-' || g || '/project/p' || g,
            'https://receiver.example/hooks', 'plain:s', ARRAY['project_created', 'tag_created'],
            true, 0, 0
         FROM generate_series(1, $1::bigint) AS g",
    )
    .bind(OTHERS)
    .execute(&store.pool)
    .await
    .expect("bulk webhooks");
    sqlx::query(
        "INSERT INTO webhook_events (event_name, scope, webhook_id)
         SELECT unnest(events), scope, id FROM webhooks",
    )
    .execute(&store.pool)
    .await
    .expect("bulk subscriptions");
    // ... and the few it reaches, through the store, on each of its candidate scopes.
    for scope in [
        "instance",
        "company/acme",
        "company/acme/project/shop",
        "company/acme/project/shop",
        "company/acme",
    ] {
        store.create_webhook(&webhook(scope)).await.expect("create");
    }
    sqlx::query("ANALYZE webhooks, webhook_events")
        .execute(&store.pool)
        .await
        .expect("analyze");

    let mut payload = serde_json::Map::new();
    payload.insert("tenantId".into(), "acme".into());
    payload.insert("projectId".into(), "shop".into());
    let event = NewEvent {
        id: EventId::new(),
        event: Event::from_parts(
            EventName::new("tag_created").expect("name"),
            Timestamp::from_millis(0),
            &payload,
        )
        .expect("event"),
    };
    let events = std::slice::from_ref(&event);

    // The plan of the statement ingestion runs, with the parameters it binds.
    let (index, names, scopes) = fanout_keys(events);
    assert_eq!(
        scopes,
        ["instance", "company/acme", "company/acme/project/shop"]
    );
    let rows = sqlx::query(&format!("EXPLAIN {FANOUT}"))
        .bind(index)
        .bind(names)
        .bind(scopes)
        .fetch_all(&store.pool)
        .await
        .expect("explain");
    let plan = rows
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n");
    for table in ["webhook_events", "webhooks"] {
        assert!(
            !plan.contains(&format!("Seq Scan on {table}")),
            "the fan-out scans {table}:\n{plan}"
        );
    }
    assert!(
        plan.contains("Scan using webhook_events_pkey on webhook_events"),
        "the fan-out does not probe the subscription index:\n{plan}"
    );
    assert!(
        plan.contains("Index Cond: ((event_name = c.name) AND (scope = c.scope))"),
        "the probe is not by (event name, scope):\n{plan}"
    );

    // And the statement finds exactly the webhooks the event reaches.
    let receipts = store
        .ingest(events, Timestamp::from_millis(1))
        .await
        .expect("ingest");
    assert_eq!(receipts[0].deliveries, MATCHING);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhooks")
        .fetch_one(&store.pool)
        .await
        .expect("count");
    assert_eq!(stored, OTHERS + MATCHING as i64);
    store.close().await;
}
