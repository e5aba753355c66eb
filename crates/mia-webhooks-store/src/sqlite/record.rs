//! Recording attempt results on SQLite: attempts, next states and webhook health for a batch,
//! in one transaction, each only for the holder of the current lease.
//!
//! A batch of up to 256 results is written with two statements whatever its size, each taking
//! the results as `VALUES` rows of bound parameters (padded to a power of two, so that a
//! handful of statement shapes stay prepared): one `UPDATE ... FROM` of the deliveries that
//! checks each lease and returns, for the rows it changed, the attempt count and the webhook
//! with its stored health; and one multi-row `INSERT` of the attempts. A third writes the health
//! of the webhooks whose health changed (none in a steady state). Under load, what a record
//! costs is mostly its round trips to the connection's thread (each waits for the async task to
//! be scheduled again): begin, update, insert, commit.
//!
//! A batch that disables a webhook (410 Gone) goes one result at a time instead, so the
//! cancellation lands exactly between the results before and after it; so does the rare batch
//! that holds two different leases of one delivery, since the update cannot say which of them
//! matched.

use std::collections::{HashMap, HashSet};

use mia_webhooks_model::{Timestamp, WebhookId};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use super::batch::JsonRows;
use super::rows::{self, batches, blob, get, padded, uuid, value_rows};
use super::webhooks;
use crate::sql_error::{database_error, same_failure};
use crate::{AttemptResult, ClaimRequest, ClaimedDelivery, NextState, RecordOutcome, Result};

pub(super) async fn record(
    store: &SqliteStore,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write().await?;
    let outcomes = record_in(&mut tx, store, results).await?;
    tx.commit().await.map_err(database_error)?;
    Ok(outcomes)
}

/// [`record`] inside the caller's write transaction, which the caller commits.
pub(super) async fn record_in(
    conn: &mut SqliteConnection,
    store: &SqliteStore,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = if results
        .iter()
        .any(|result| result.disable_webhook.is_some())
        || two_leases_of_one_delivery(results)
    {
        one_by_one(conn, results).await?
    } else {
        batched(conn, results).await?
    };
    // The test hook fails here, after every write and before the commit: the rollback must
    // leave no attempt and every lease held.
    store.options.check_record_fault()?;
    Ok(outcomes)
}

/// Records then claims in one write transaction (see [`Store::record_then_claim`]).
pub(super) async fn record_then_claim(
    store: &SqliteStore,
    results: &[AttemptResult],
    request: &ClaimRequest,
) -> (Result<Vec<RecordOutcome>>, Result<Vec<ClaimedDelivery>>) {
    let mut tx = match store.write().await {
        Ok(tx) => tx,
        Err(err) => {
            let again = same_failure(&err);
            return (Err(err), Err(again));
        }
    };
    let outcomes = match record_in(&mut tx, store, results).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            // Nothing recorded; the claim still runs, on its own.
            drop(tx);
            return (Err(err), super::queue::claim(store, request).await);
        }
    };
    let claimed = match super::queue::claim_in(&mut tx, store, request).await {
        Ok(claimed) => claimed,
        Err(err) => {
            // Some claim failures repeat (a secret no configured key opens): the results must
            // not go down with them. Undone, then written on their own.
            drop(tx);
            return (record(store, results).await, Err(err));
        }
    };
    match tx.commit().await {
        Ok(()) => (Ok(outcomes), Ok(claimed)),
        Err(err) => {
            let err = database_error(err);
            (Err(same_failure(&err)), Err(err))
        }
    }
}

/// The outcome of a written result.
fn outcome(cancelled: bool, failing_since: Option<Timestamp>) -> RecordOutcome {
    if cancelled {
        RecordOutcome::Cancelled { failing_since }
    } else {
        RecordOutcome::Recorded { failing_since }
    }
}

/// Whether some delivery appears with two different leases.
fn two_leases_of_one_delivery(results: &[AttemptResult]) -> bool {
    let mut leases = HashMap::with_capacity(results.len());
    results
        .iter()
        .any(|r| *leases.entry(r.delivery_id).or_insert(r.lease) != r.lease)
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

    /// Takes the stored health of a webhook the batch has not seen yet.
    fn know(&mut self, webhook: Uuid, since: Option<Timestamp>) {
        self.webhooks.entry(webhook).or_insert((since, false));
    }

    /// Reads the current health of `id` unless known.
    async fn load(&mut self, conn: &mut SqliteConnection, id: Uuid) -> Result<()> {
        if self.webhooks.contains_key(&id) {
            return Ok(());
        }
        let since: Option<Option<i64>> =
            sqlx::query_scalar("SELECT failing_since FROM webhooks WHERE id = ?")
                .bind(blob(id))
                .fetch_optional(&mut *conn)
                .await
                .map_err(database_error)?;
        if let Some(since) = since {
            self.know(id, since.map(Timestamp::from_millis));
        }
        Ok(())
    }

    /// Writes the health of the webhooks this batch changed, in one statement.
    async fn save(&self, conn: &mut SqliteConnection) -> Result<()> {
        let mut rows = JsonRows::new();
        for (webhook, (since, changed)) in &self.webhooks {
            if *changed {
                rows.row()
                    .id(*webhook)
                    .opt_int(since.map(Timestamp::as_millis));
            }
        }
        if rows.len() > 0 {
            sqlx::query(SAVE_HEALTH)
                .bind(rows.finish())
                .execute(&mut *conn)
                .await
                .map_err(database_error)?;
        }
        Ok(())
    }
}

/// The most results one statement takes (five or eight parameters each). Longer `VALUES` lists
/// cost a little more per row, but under load each statement's round trip to the connection's
/// thread costs far more: a batch of up to 256 results is written with two statements, whatever
/// its size (see [`padded`]).
const WIDE_CHUNK: usize = 256;

/// The next states of `n` results, as `VALUES` rows of (delivery id, lease, status, next attempt
/// at, now; all NULL for padding), for holders of the lease only: the lease ends and the attempt
/// is counted. Returns, per delivery changed, its attempt count after the attempt (the attempt's
/// number), its webhook and the webhook's stored health. Probes the deliveries by primary key.
pub(super) fn states_sql(n: usize) -> String {
    format!(
        "WITH r (id, lease, status, next_at, now) AS (VALUES {}) \
         UPDATE deliveries SET status = {RETRY_OR_CANCEL}, next_attempt_at = {NEXT_UNLESS_CANCELLED}, \
           claimable_at = {NEXT_UNLESS_CANCELLED}, lease_token = NULL, \
           attempt_count = attempt_count + 1, updated_at = r.now \
         FROM r WHERE deliveries.id = r.id AND deliveries.lease_token = r.lease \
           AND deliveries.status = 'delivering' \
         RETURNING deliveries.id, deliveries.attempt_count, deliveries.webhook_id, \
           deliveries.status, \
           (SELECT failing_since FROM webhooks WHERE webhooks.id = deliveries.webhook_id) \
             AS failing_since",
        value_rows("(?, ?, ?, ?, ?)", n)
    )
}

/// The status a result leaves: its own, except that a retry of a delivery whose webhook is
/// disabled (while the attempt was in flight, so the disabling did not cancel it) is cancelled.
/// With `r` the result row; the webhook is read only for retries.
const RETRY_OR_CANCEL: &str = "CASE WHEN r.status = 'pending' AND \
    (SELECT enabled FROM webhooks WHERE webhooks.id = deliveries.webhook_id) = 0 \
    THEN 'cancelled' ELSE r.status END";

/// The next attempt time of a result, none when [`RETRY_OR_CANCEL`] cancels it.
const NEXT_UNLESS_CANCELLED: &str = "CASE WHEN r.status = 'pending' AND \
    (SELECT enabled FROM webhooks WHERE webhooks.id = deliveries.webhook_id) = 0 \
    THEN NULL ELSE r.next_at END";

/// The insert of `n` attempts, as `VALUES` rows of (delivery id, number, started at, duration,
/// status code, failure, error, response excerpt); rows without a delivery id (padding) are
/// left out.
pub(super) fn attempts_sql(n: usize) -> String {
    format!(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, failure, \
         error, response_excerpt) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8 \
         FROM (VALUES {}) WHERE column1 IS NOT NULL",
        value_rows("(?, ?, ?, ?, ?, ?, ?, ?)", n)
    )
}

/// Sets the health of the webhooks in ?1 (a JSON array of `[webhook id, failing since]`).
pub(super) const SAVE_HEALTH: &str = "\
UPDATE webhooks SET failing_since = r.value ->> 1
FROM json_each(?1) AS r WHERE webhooks.id = unhex(r.value ->> 0)";

/// A delivery whose lease a result held: its attempt count after the attempt, its webhook, and
/// whether the result's retry was cancelled (the webhook is disabled).
struct Held {
    attempt_count: i64,
    webhook: Uuid,
    cancelled: bool,
}

async fn batched(
    conn: &mut SqliteConnection,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    // The first result of each delivery takes part (every result of a delivery carries the same
    // lease here); a repeat finds the lease ended, as it would one result at a time.
    let mut seen = HashSet::with_capacity(results.len());
    let firsts: Vec<&AttemptResult> = results
        .iter()
        .filter(|r| seen.insert(r.delivery_id))
        .collect();

    // Next states, for the holders of the current leases only.
    let mut health = Health::default();
    let mut held: HashMap<Uuid, Held> = HashMap::with_capacity(firsts.len());
    for range in batches(firsts.len(), WIDE_CHUNK) {
        let shape = padded(range.len());
        let sql = states_sql(shape);
        let mut update = sqlx::query(&sql);
        for _ in 0..(shape - range.len()) * 5 {
            update = update.bind(None::<i64>);
        }
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
            let webhook = uuid(&row, "webhook_id")?;
            health.know(webhook, rows::opt_timestamp(&row, "failing_since")?);
            held.insert(
                uuid(&row, "id")?,
                Held {
                    attempt_count: get(&row, "attempt_count")?,
                    webhook,
                    cancelled: get::<&str>(&row, "status")? == "cancelled",
                },
            );
        }
    }

    // Outcomes in the order of the results, and the attempts of the holders.
    let mut ended = HashSet::with_capacity(held.len());
    let mut recorded: Vec<(&AttemptResult, i64)> = Vec::with_capacity(held.len());
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        match held.get(&result.delivery_id.as_uuid()) {
            Some(delivery) if ended.insert(result.delivery_id) => {
                recorded.push((result, delivery.attempt_count));
                let failing_since = health.apply(delivery.webhook, result);
                outcomes.push(outcome(delivery.cancelled, failing_since));
            }
            _ => outcomes.push(RecordOutcome::LeaseLost),
        }
    }
    for range in batches(recorded.len(), WIDE_CHUNK) {
        let shape = padded(range.len());
        let sql = attempts_sql(shape);
        let mut insert = sqlx::query(&sql);
        for _ in 0..(shape - range.len()) * 8 {
            insert = insert.bind(None::<i64>);
        }
        for (result, number) in &recorded[range] {
            let attempt = &result.attempt;
            insert = insert
                .bind(blob(result.delivery_id.as_uuid()))
                .bind(*number)
                .bind(attempt.started_at.as_millis())
                .bind(rows::millis_i64(attempt.duration_ms))
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.failure.map(|kind| kind.as_str()))
                .bind(attempt.error.as_deref())
                .bind(attempt.response_excerpt.as_deref());
        }
        insert.execute(&mut *conn).await.map_err(database_error)?;
    }
    health.save(conn).await?;
    Ok(outcomes)
}

async fn one_by_one(
    conn: &mut SqliteConnection,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    let mut health = Health::default();
    let mut outcomes = Vec::with_capacity(results.len());
    // Retries recorded as pending, by webhook: a 410 later in the batch cancels them.
    let mut retried: Vec<(usize, Uuid)> = Vec::new();
    let mut disabled: HashSet<Uuid> = HashSet::new();
    for result in results {
        let (status, next_at) = next_state(result.next);
        let sql = format!(
            "WITH r (status, next_at) AS (VALUES (?, ?)) \
             UPDATE deliveries SET status = {RETRY_OR_CANCEL}, \
             next_attempt_at = {NEXT_UNLESS_CANCELLED}, claimable_at = {NEXT_UNLESS_CANCELLED}, \
             lease_token = NULL, attempt_count = attempt_count + 1, updated_at = ? \
             FROM r WHERE id = ? AND lease_token = ? AND deliveries.status = 'delivering' \
             RETURNING attempt_count, webhook_id, deliveries.status"
        );
        let updated = sqlx::query(&sql)
            .bind(status)
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
        let cancelled = get::<&str>(&updated, "status")? == "cancelled";
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
        health.load(conn, webhook).await?;
        let failing_since = health.apply(webhook, result);
        if !cancelled && matches!(result.next, NextState::RetryAt(_)) {
            retried.push((outcomes.len(), webhook));
        }
        outcomes.push(outcome(cancelled, failing_since));
        if let Some(reason) = &result.disable_webhook {
            webhooks::disable_in(conn, WebhookId::from_uuid(webhook), reason, result.now).await?;
            disabled.insert(webhook);
        }
    }
    for (index, webhook) in retried {
        if disabled.contains(&webhook) {
            outcomes[index] = outcomes[index].cancelled();
        }
    }
    health.save(conn).await?;
    Ok(outcomes)
}
