//! The query plans the claim, record and release statements rely on: probes by primary key and
//! ranges of indexes, never a scan of a table.

use sqlx::Row as _;

use super::SqliteStore;
use super::queue::{CLAIM_EVENTS, CLAIM_LEASE, CLAIM_PICK, CLAIM_WEBHOOKS, FANOUT, RELEASE};
use super::record::{SAVE_HEALTH, attempts_sql, states_sql};
use super::rows::WEBHOOK_COLUMNS;
use crate::StoreOptions;

async fn plan(store: &SqliteStore, sql: &str) -> String {
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(&store.writer)
        .await
        .expect("plan");
    rows.iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The tables (and their aliases in the statements) whose full scan would make a statement's
/// cost grow with the database.
const TABLES: [&str; 8] = [
    "deliveries",
    "d",
    "webhooks",
    "w",
    "events",
    "attempts",
    "webhook_events",
    "we",
];

/// Fails on a full scan of a table, except the scans `allowed` (substrings of plan lines).
fn assert_no_table_scan(name: &str, plan: &str, allowed: &[&str]) {
    for line in plan.lines() {
        let Some(scanned) = line.strip_prefix("SCAN ") else {
            continue;
        };
        let table = scanned.split_whitespace().next().unwrap_or_default();
        assert!(
            !TABLES.contains(&table) || allowed.iter().any(|a| line.contains(a)),
            "{name} scans {table}:\n{plan}"
        );
    }
}

#[tokio::test]
async fn fanout_claims_records_and_releases_never_scan_a_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plans.db");
    let store = SqliteStore::open(path.to_str().expect("path"), StoreOptions::default())
        .await
        .expect("open");
    let states = states_sql(2);
    let attempts = attempts_sql(2);
    for (name, sql) in [
        ("fanout", FANOUT),
        ("pick", CLAIM_PICK),
        ("lease", CLAIM_LEASE),
        ("webhooks", CLAIM_WEBHOOKS),
        ("events", CLAIM_EVENTS),
        ("states", &states),
        ("attempts", &attempts),
        ("health", SAVE_HEALTH),
        ("release", RELEASE),
    ] {
        let plan = plan(&store, sql).await;
        // The pick reads the live leases (a partial index of the deliveries in flight only)
        // and, to learn whether any webhook is below its cap, the webhooks until the first one
        // that is (at most one more than there are webhooks at their cap).
        let allowed: &[&str] = if name == "pick" {
            &[
                "SCAN deliveries USING COVERING INDEX deliveries_leased",
                "SCAN webhooks USING COVERING INDEX",
            ]
        } else {
            &[]
        };
        assert_no_table_scan(name, &plan, allowed);
        if name == "pick" {
            assert!(
                plan.contains(
                    "SEARCH deliveries USING INDEX deliveries_claimable (claimable_at<?)"
                ),
                "{plan}"
            );
        }
        if name == "fanout" {
            assert!(
                plan.contains("SEARCH we USING PRIMARY KEY (event_name=? AND scope=?)"),
                "{plan}"
            );
        }
        if ["lease", "states", "release"].contains(&name) {
            assert!(plan.contains("USING PRIMARY KEY (id=?)"), "{name}:\n{plan}");
        }
    }
    store.close().await;
}

#[test]
fn claims_read_every_column_a_webhook_needs() {
    let words = |sql: &str| sql.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words(CLAIM_WEBHOOKS).contains(&words(WEBHOOK_COLUMNS)),
        "{CLAIM_WEBHOOKS}"
    );
}
