//! Recording attempt results on SQLite: attempts, next states and webhook health for a batch,
//! in one transaction, each only for the holder of the current lease.
//!
//! A batch is written in a handful of statements whatever its size: one `UPDATE ... FROM` of the
//! deliveries (checking each lease, returning the rows it changed), one multi-row `INSERT` of the
//! attempts, one read and one write of the webhooks' health. A batch that disables a webhook
//! (410 Gone) goes one result at a time instead, so the cancellation lands exactly between the
//! results before and after it.

use std::collections::{HashMap, HashSet};

use mia_webhooks_model::{Timestamp, WebhookId};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use super::rows::{self, blob, chunks, get, placeholders, uuid};
use super::webhooks;
use crate::sql_error::database_error;
use crate::{AttemptResult, NextState, RecordOutcome, Result};

pub(super) async fn record(
    store: &SqliteStore,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write().await?;
    let outcomes = if results
        .iter()
        .any(|result| result.disable_webhook.is_some())
    {
        one_by_one(&mut tx, results).await?
    } else {
        batched(&mut tx, results).await?
    };
    tx.commit().await.map_err(database_error)?;
    Ok(outcomes)
}

/// The delivery row's status and next due time after a result.
fn next_state(next: NextState) -> (&'static str, Option<i64>) {
    match next {
        NextState::Succeeded => ("succeeded", None),
        NextState::RetryAt(at) => ("pending", Some(at.as_millis())),
        NextState::Failed => ("failed", None),
    }
}

/// The health of the webhooks a batch touches, as it applies the results in order.
#[derive(Default)]
struct Health {
    /// Webhook to (failing since, changed by this batch).
    webhooks: HashMap<Uuid, (Option<Timestamp>, bool)>,
}

impl Health {
    /// Applies one recorded attempt and returns the webhook's health after it.
    fn apply(&mut self, webhook: Uuid, result: &AttemptResult) -> Option<Timestamp> {
        let (since, changed) = self.webhooks.entry(webhook).or_insert((None, false));
        let after = if result.attempt.succeeded() {
            None
        } else {
            Some(since.unwrap_or(result.attempt.started_at))
        };
        if after != *since {
            *since = after;
            *changed = true;
        }
        after
    }

    /// Reads the current health of `ids` not read yet.
    async fn load(&mut self, conn: &mut SqliteConnection, ids: &[Uuid]) -> Result<()> {
        let missing: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| !self.webhooks.contains_key(id))
            .collect();
        for range in chunks(missing.len()) {
            let sql = format!(
                "SELECT id, failing_since FROM webhooks WHERE id IN ({})",
                placeholders(range.len())
            );
            let mut select = sqlx::query(&sql);
            for id in &missing[range] {
                select = select.bind(blob(*id));
            }
            for row in select.fetch_all(&mut *conn).await.map_err(database_error)? {
                let since = rows::opt_timestamp(&row, "failing_since")?;
                self.webhooks.insert(uuid(&row, "id")?, (since, false));
            }
        }
        Ok(())
    }

    /// Writes the health of the webhooks this batch changed.
    async fn save(&self, conn: &mut SqliteConnection) -> Result<()> {
        for (webhook, (since, changed)) in &self.webhooks {
            if *changed {
                sqlx::query("UPDATE webhooks SET failing_since = ? WHERE id = ?")
                    .bind(since.map(Timestamp::as_millis))
                    .bind(blob(*webhook))
                    .execute(&mut *conn)
                    .await
                    .map_err(database_error)?;
            }
        }
        Ok(())
    }
}

/// What the lease-checked update returned for one delivery.
struct Updated {
    attempt_number: i64,
    webhook: Uuid,
}

async fn batched(
    conn: &mut SqliteConnection,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    // The first result of a delivery takes part; a repeat finds the lease already ended, as it
    // would one result at a time.
    let mut seen = HashSet::new();
    let firsts: Vec<&AttemptResult> = results
        .iter()
        .filter(|r| seen.insert(r.delivery_id))
        .collect();

    // Next states, for the holders of the current leases only.
    let mut updated: HashMap<Uuid, Updated> = HashMap::with_capacity(firsts.len());
    for range in chunks(firsts.len()) {
        let values = vec!["(?, ?, ?, ?, ?)"; range.len()].join(", ");
        let sql = format!(
            "WITH r (id, lease, status, next_at, now) AS (VALUES {values}) \
             UPDATE deliveries SET status = r.status, next_attempt_at = r.next_at, claimable_at = r.next_at, \
             lease_token = NULL, attempt_count = attempt_count + 1, updated_at = r.now \
             FROM r WHERE deliveries.id = r.id AND deliveries.lease_token = r.lease \
             AND deliveries.status = 'delivering' \
             RETURNING deliveries.id, deliveries.attempt_count, deliveries.webhook_id"
        );
        let mut update = sqlx::query(&sql);
        for result in &firsts[range] {
            let (status, next_at) = next_state(result.next);
            update = update
                .bind(blob(result.delivery_id.as_uuid()))
                .bind(blob(result.lease.0))
                .bind(status)
                .bind(next_at)
                .bind(result.now.as_millis());
        }
        for row in update.fetch_all(&mut *conn).await.map_err(database_error)? {
            updated.insert(
                uuid(&row, "id")?,
                Updated {
                    attempt_number: get(&row, "attempt_count")?,
                    webhook: uuid(&row, "webhook_id")?,
                },
            );
        }
    }

    // Their attempts.
    let recorded: Vec<(&AttemptResult, &Updated)> = firsts
        .iter()
        .filter_map(|result| {
            updated
                .get(&result.delivery_id.as_uuid())
                .map(|u| (*result, u))
        })
        .collect();
    for range in chunks(recorded.len()) {
        let sql = format!(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, failure, error, \
             response_excerpt) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; range.len()].join(", ")
        );
        let mut insert = sqlx::query(&sql);
        for (result, row) in &recorded[range] {
            let attempt = &result.attempt;
            insert = insert
                .bind(blob(result.delivery_id.as_uuid()))
                .bind(row.attempt_number)
                .bind(attempt.started_at.as_millis())
                .bind(rows::millis_i64(attempt.duration_ms))
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.failure.map(|kind| kind.as_str()))
                .bind(attempt.error.as_deref())
                .bind(attempt.response_excerpt.as_deref());
        }
        insert.execute(&mut *conn).await.map_err(database_error)?;
    }

    // Webhook health, applied in the order of the results.
    let mut health = Health::default();
    let mut webhook_ids: Vec<Uuid> = updated.values().map(|u| u.webhook).collect();
    webhook_ids.sort_unstable();
    webhook_ids.dedup();
    health.load(conn, &webhook_ids).await?;
    let mut taken = HashSet::new();
    let outcomes = results
        .iter()
        .map(|result| match updated.get(&result.delivery_id.as_uuid()) {
            Some(row) if taken.insert(result.delivery_id) => RecordOutcome::Recorded {
                failing_since: health.apply(row.webhook, result),
            },
            _ => RecordOutcome::LeaseLost,
        })
        .collect();
    health.save(conn).await?;
    Ok(outcomes)
}

async fn one_by_one(
    conn: &mut SqliteConnection,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    let mut health = Health::default();
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        let (status, next_at) = next_state(result.next);
        let updated = sqlx::query(
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, claimable_at = ?, lease_token = NULL, \
             attempt_count = attempt_count + 1, updated_at = ? \
             WHERE id = ? AND lease_token = ? AND status = 'delivering' \
             RETURNING attempt_count, webhook_id",
        )
        .bind(status)
        .bind(next_at)
        .bind(next_at)
        .bind(result.now.as_millis())
        .bind(blob(result.delivery_id.as_uuid()))
        .bind(blob(result.lease.0))
        .fetch_optional(&mut *conn)
        .await
        .map_err(database_error)?;
        let Some(updated) = updated else {
            outcomes.push(RecordOutcome::LeaseLost);
            continue;
        };
        let number: i64 = get(&updated, "attempt_count")?;
        let webhook = uuid(&updated, "webhook_id")?;
        let attempt = &result.attempt;
        sqlx::query(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, failure, error, \
             response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(blob(result.delivery_id.as_uuid()))
        .bind(number)
        .bind(attempt.started_at.as_millis())
        .bind(rows::millis_i64(attempt.duration_ms))
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.failure.map(|kind| kind.as_str()))
        .bind(attempt.error.as_deref())
        .bind(attempt.response_excerpt.as_deref())
        .execute(&mut *conn)
        .await
        .map_err(database_error)?;
        health.load(conn, &[webhook]).await?;
        outcomes.push(RecordOutcome::Recorded {
            failing_since: health.apply(webhook, result),
        });
        if let Some(reason) = &result.disable_webhook {
            webhooks::disable_in(conn, WebhookId::from_uuid(webhook), reason, result.now).await?;
        }
    }
    health.save(conn).await?;
    Ok(outcomes)
}
