//! The queue: claiming due deliveries under a lease, recording results, releasing leases.
//!
//! Locking protocol (every transaction takes webhook row locks before delivery row locks, and
//! claims never wait, so no cycle can form):
//! - a claim locks the webhooks it takes deliveries from `FOR NO KEY UPDATE SKIP LOCKED`, then
//!   counts their live leases in a fresh statement: any other claimer of the same webhook has
//!   committed by then, so the per-webhook cap holds across processes, and concurrent claimers
//!   skip each other's webhooks instead of waiting;
//! - a record locks the webhooks of its results `FOR NO KEY UPDATE` in id order, to update their
//!   health from a consistent value;
//! - ingests take `FOR KEY SHARE`, which conflicts with neither, so ingestion never waits for
//!   the workers; so do releases, so that a disable either precedes a release (which then
//!   cancels) or waits for it (and cancels what it made pending);
//! - disabling (an update, `disable_webhook`, or a 410 in a record) takes `FOR UPDATE`, which
//!   waits for ingests holding `FOR KEY SHARE`, so it cancels the deliveries they queue.
//!
//! Where one transaction locks several webhooks it does so in id order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mia_webhooks_model::{DeliveryId, EventId, EventName, Timestamp, Webhook};
use sqlx::PgConnection;
use uuid::Uuid;

use super::rows::{WEBHOOK_COLUMNS, bigint, count, get, opt_timestamp, timestamp};
use super::webhooks::disable_in;
use super::{PostgresStore, db_error};
use crate::sql_error::same_failure;
use crate::{
    AttemptResult, ClaimRequest, ClaimedDelivery, LeaseToken, NextState, RecordOutcome, Result,
    StoreError,
};

/// Locks up to `$3` webhooks that have a due delivery (`$1`: now) and fewer than `$2` live
/// leases, oldest due first, skipping those another transaction holds.
///
/// Finding them walks the distinct webhooks of unfinished deliveries with a recursive skip scan
/// of `deliveries_due`: one index probe per such webhook, however long a backlog one of them
/// has, so a flooded webhook at its cap never hides the others.
const LOCK_DUE_WEBHOOKS: &str = "WITH RECURSIVE active(webhook_id) AS (
        (SELECT webhook_id FROM deliveries WHERE claimable_at IS NOT NULL ORDER BY webhook_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.webhook_id FROM deliveries d
                WHERE d.claimable_at IS NOT NULL AND d.webhook_id > a.webhook_id
                ORDER BY d.webhook_id LIMIT 1)
        FROM active a WHERE a.webhook_id IS NOT NULL
    ),
    candidates AS (
        SELECT a.webhook_id AS id, f.first_due
        FROM active a
        CROSS JOIN LATERAL (
            SELECT d.claimable_at AS first_due FROM deliveries d
            WHERE d.webhook_id = a.webhook_id AND d.claimable_at IS NOT NULL
            ORDER BY d.claimable_at LIMIT 1
        ) f
        WHERE a.webhook_id IS NOT NULL AND f.first_due <= $1
    ),
    live AS (
        SELECT webhook_id, count(*) AS n FROM deliveries
        WHERE status = 'delivering' AND claimable_at > $1
        GROUP BY webhook_id
    )
    SELECT w.id FROM webhooks w
    JOIN candidates c ON c.id = w.id
    LEFT JOIN live ON live.webhook_id = w.id
    WHERE coalesce(live.n, 0) < $2
    ORDER BY c.first_due, w.id
    LIMIT $3
    FOR NO KEY UPDATE OF w SKIP LOCKED";

/// Leases due deliveries of the locked webhooks `$1` at `$2`: per webhook, at most the cap
/// `$3` minus its live leases, oldest due first; `$4` in all; leased until `$5`.
///
/// Only the rows chosen are locked (`SKIP LOCKED`, though with their webhooks locked no other
/// claimer is after them), and the due condition is checked again on the locked row version.
const LEASE_DELIVERIES: &str = "WITH chosen AS (
        SELECT p.id, p.due_at FROM unnest($1::uuid[]) AS w(id)
        CROSS JOIN LATERAL (
            SELECT d.id, d.claimable_at AS due_at FROM deliveries d
            WHERE d.webhook_id = w.id AND d.claimable_at <= $2
            ORDER BY d.claimable_at, d.id
            LIMIT greatest($3 - (SELECT count(*) FROM deliveries l
                                 WHERE l.webhook_id = w.id AND l.status = 'delivering'
                                   AND l.claimable_at > $2), 0)
        ) p
        ORDER BY p.due_at, p.id
        LIMIT $4
    ),
    picked AS (
        SELECT d.id, c.due_at FROM deliveries d JOIN chosen c ON c.id = d.id
        WHERE d.claimable_at <= $2
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE deliveries d
    SET status = 'delivering', lease_token = gen_random_uuid(), claimable_at = $5
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.lease_token, d.event_id, d.webhook_id, d.attempt_count, d.created_at,
        picked.due_at";

pub(super) async fn claim(
    store: &PostgresStore,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedDelivery>> {
    if request.limit == 0 || request.per_webhook_cap == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    let claimed = claim_in(store, &mut tx, request).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(claimed)
}

/// [`claim`] inside the caller's transaction, which the caller commits. Takes no lock that it
/// would wait for (see the module docs), so it may follow a record in one transaction.
async fn claim_in(
    store: &PostgresStore,
    conn: &mut PgConnection,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedDelivery>> {
    if request.limit == 0 || request.per_webhook_cap == 0 {
        return Ok(Vec::new());
    }
    let now = request.now;
    let until = now.saturating_add(request.lease);
    let limit = bigint(u64::try_from(request.limit).unwrap_or(u64::MAX));
    let cap = bigint(u64::try_from(request.per_webhook_cap).unwrap_or(u64::MAX));

    let locked: Vec<Uuid> = sqlx::query_scalar(LOCK_DUE_WEBHOOKS)
        .bind(now.as_millis())
        .bind(cap)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let mut leased = sqlx::query(LEASE_DELIVERIES)
        .bind(&locked)
        .bind(now.as_millis())
        .bind(cap)
        .bind(limit)
        .bind(until.as_millis())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    leased.sort_by_key(|row| {
        (
            get::<i64>(row, "due_at").unwrap_or(i64::MAX),
            get::<Uuid>(row, "id").ok(),
        )
    });

    // What the attempts need, each fetched once: the webhooks (as they are now, secrets
    // opened) and the events' bytes, shared by every delivery of the claim that uses them.
    let mut webhook_ids = Vec::new();
    let mut event_ids = Vec::new();
    for row in &leased {
        webhook_ids.push(get::<Uuid>(row, "webhook_id")?);
        event_ids.push(get::<Uuid>(row, "event_id")?);
    }
    webhook_ids.sort_unstable();
    webhook_ids.dedup();
    event_ids.sort_unstable();
    event_ids.dedup();
    let webhook_rows = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = ANY($1)"
    ))
    .bind(&webhook_ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let event_rows = sqlx::query("SELECT id, name, bytes FROM events WHERE id = ANY($1)")
        .bind(&event_ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    // Secrets are opened before the commit. A webhook whose secret no configured key opens
    // holds up its own deliveries only: they are given back, pending after a backoff, and the
    // claim goes on with the others.
    let mut webhooks: HashMap<Uuid, Arc<Webhook>> = HashMap::with_capacity(webhook_rows.len());
    let mut unreadable = Vec::new();
    for row in &webhook_rows {
        match store.webhook_from_row(row) {
            Ok(webhook) => {
                webhooks.insert(webhook.id.as_uuid(), Arc::new(webhook));
            }
            Err(StoreError::SecretKey(why)) => {
                let id: Uuid = get(row, "id")?;
                crate::secrets::log_unreadable(id, &why);
                unreadable.push(id);
            }
            Err(other) => return Err(other),
        }
    }
    if !unreadable.is_empty() {
        let mut aside = Vec::new();
        for row in &leased {
            if unreadable.contains(&get::<Uuid>(row, "webhook_id")?) {
                aside.push(get::<Uuid>(row, "id")?);
            }
        }
        // The webhook's other due deliveries too: a backlog left due would come back at the
        // head of every claim. Only rows no other transaction holds (no waiting for a lock).
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', lease_token = NULL, claimable_at = $1, \
                 next_attempt_at = $1 \
             WHERE id = ANY($2) OR id IN (SELECT id FROM deliveries \
                 WHERE webhook_id = ANY($3) AND claimable_at <= $4 FOR UPDATE SKIP LOCKED)",
        )
        .bind(
            now.saturating_add(crate::UNREADABLE_SECRET_BACKOFF)
                .as_millis(),
        )
        .bind(&aside)
        .bind(&unreadable)
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        leased
            .retain(|row| get::<Uuid>(row, "webhook_id").is_ok_and(|id| !unreadable.contains(&id)));
    }
    store.options.check_claim_fault()?;
    let mut events: HashMap<Uuid, (EventName, Arc<[u8]>)> =
        HashMap::with_capacity(event_rows.len());
    for row in &event_rows {
        let id: Uuid = get(row, "id")?;
        let name = EventName::new(get::<String>(row, "name")?)
            .map_err(|e| StoreError::Corrupt(format!("event {id}: {}", e.message())))?;
        events.insert(id, (name, Arc::from(get::<Vec<u8>>(row, "bytes")?)));
    }

    leased
        .iter()
        .map(|row| {
            let webhook_id: Uuid = get(row, "webhook_id")?;
            let event_id: Uuid = get(row, "event_id")?;
            let webhook = webhooks.get(&webhook_id).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "claimed a delivery of missing webhook {webhook_id}"
                ))
            })?;
            let (event_name, payload) = events.get(&event_id).ok_or_else(|| {
                StoreError::Corrupt(format!("claimed a delivery of missing event {event_id}"))
            })?;
            Ok(ClaimedDelivery {
                delivery_id: DeliveryId::from_uuid(get(row, "id")?),
                lease: LeaseToken(get(row, "lease_token")?),
                leased_until: until,
                event_id: EventId::from_uuid(event_id),
                event_name: event_name.clone(),
                attempt: count(get::<i32>(row, "attempt_count")?).saturating_add(1),
                created_at: timestamp(row, "created_at")?,
                webhook: Arc::clone(webhook),
                payload: Arc::clone(payload),
            })
        })
        .collect()
}

/// Writes, for every result whose lease is still held (`$1`, `$2`: delivery, lease), the
/// delivery's next state (`$3`..`$5`: status, next attempt time, now) and its attempt
/// (`$6`..`$11`), numbered by the delivery's new attempt count. Returns the deliveries written
/// and their webhooks.
const RECORD_ATTEMPTS: &str = "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[],
            $6::bigint[], $7::bigint[], $8::int[], $9::text[], $10::text[], $11::text[])
        AS i(delivery_id, lease, status, next_at, now, started_at, duration_ms, status_code,
            failure, error, excerpt)
    ),
    updated AS (
        UPDATE deliveries d
        SET status = CASE WHEN i.status = 'pending' AND NOT w.enabled THEN 'cancelled'
                ELSE i.status END,
            next_attempt_at = CASE WHEN i.status = 'pending' AND NOT w.enabled THEN NULL
                ELSE i.next_at END,
            claimable_at = CASE WHEN i.status = 'pending' AND NOT w.enabled THEN NULL
                ELSE i.next_at END,
            attempt_count = d.attempt_count + 1, lease_token = NULL, updated_at = i.now
        FROM input i, webhooks w
        WHERE d.id = i.delivery_id AND d.lease_token = i.lease AND d.status = 'delivering'
            AND w.id = d.webhook_id
        RETURNING d.id, d.webhook_id, d.attempt_count, d.status
    ),
    attempts AS (
        INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, failure,
            error, response_excerpt)
        SELECT u.id, u.attempt_count, i.started_at, i.duration_ms, i.status_code, i.failure,
            i.error, i.excerpt
        FROM updated u JOIN input i ON i.delivery_id = u.id
    )
    SELECT id, webhook_id, status = 'cancelled' FROM updated";

/// The columns of [`RECORD_ATTEMPTS`], one vector per parameter.
#[derive(Default)]
struct RecordColumns<'a> {
    delivery: Vec<Uuid>,
    lease: Vec<Uuid>,
    status: Vec<&'static str>,
    next_at: Vec<Option<i64>>,
    now: Vec<i64>,
    started_at: Vec<i64>,
    duration_ms: Vec<i64>,
    status_code: Vec<Option<i32>>,
    failure: Vec<Option<&'static str>>,
    error: Vec<Option<Cow<'a, str>>>,
    excerpt: Vec<Option<Cow<'a, str>>>,
}

/// Text for a `text` column, which cannot hold NUL: each becomes U+FFFD (the SQLite and
/// in-memory stores keep it; an excerpt is for people to read).
fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

impl<'a> RecordColumns<'a> {
    fn push(&mut self, result: &'a AttemptResult) {
        let (status, next_at) = match result.next {
            NextState::Succeeded => ("succeeded", None),
            NextState::RetryAt(at) => ("pending", Some(at.as_millis())),
            NextState::Failed => ("failed", None),
        };
        let attempt = &result.attempt;
        self.delivery.push(result.delivery_id.as_uuid());
        self.lease.push(result.lease.0);
        self.status.push(status);
        self.next_at.push(next_at);
        self.now.push(result.now.as_millis());
        self.started_at.push(attempt.started_at.as_millis());
        self.duration_ms.push(bigint(attempt.duration_ms));
        self.status_code.push(attempt.status_code.map(i32::from));
        self.failure.push(attempt.failure.map(|kind| kind.as_str()));
        self.error.push(attempt.error.as_deref().map(pg_text));
        self.excerpt
            .push(attempt.response_excerpt.as_deref().map(pg_text));
    }
}

pub(super) async fn record(
    store: &PostgresStore,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    let outcomes = record_in(store, &mut tx, results).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(outcomes)
}

/// [`record`] inside the caller's transaction, which the caller commits.
async fn record_in(
    store: &PostgresStore,
    conn: &mut PgConnection,
    results: &[AttemptResult],
) -> Result<Vec<RecordOutcome>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    // A delivery recorded twice in one batch: the first result uses the lease up, the others
    // find it gone, as they would one call after another.
    let mut seen = HashSet::with_capacity(results.len());
    let first: Vec<bool> = results.iter().map(|r| seen.insert(r.delivery_id)).collect();
    let mut columns = RecordColumns::default();
    for (result, _) in results.iter().zip(&first).filter(|(_, first)| **first) {
        columns.push(result);
    }

    // Webhook locks first and in id order (see the module docs), with their current health.
    // The webhooks are those the deliveries belong to, whatever the results say.
    let health_rows = sqlx::query(
        "SELECT id, failing_since FROM webhooks
         WHERE id IN (SELECT webhook_id FROM deliveries WHERE id = ANY($1))
         ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(&columns.delivery)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let recorded: HashMap<Uuid, (Uuid, bool)> =
        sqlx::query_as::<_, (Uuid, Uuid, bool)>(RECORD_ATTEMPTS)
            .bind(columns.delivery)
            .bind(columns.lease)
            .bind(columns.status)
            .bind(columns.next_at)
            .bind(columns.now)
            .bind(columns.started_at)
            .bind(columns.duration_ms)
            .bind(columns.status_code)
            .bind(columns.failure)
            .bind(columns.error)
            .bind(columns.excerpt)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|(id, webhook, cancelled)| (id, (webhook, cancelled)))
            .collect();

    // Health, result by result: a success clears it, a failure starts it if it was clear.
    let mut health: HashMap<Uuid, Option<i64>> = HashMap::with_capacity(health_rows.len());
    for row in &health_rows {
        health.insert(
            get(row, "id")?,
            opt_timestamp(row, "failing_since")?.map(|t| t.as_millis()),
        );
    }
    let mut touched: HashSet<Uuid> = HashSet::new();
    let mut outcomes = Vec::with_capacity(results.len());
    // Keyed by webhook: the last reason wins, as one call after another, and the locks are
    // taken in id order like every other webhook lock.
    let mut disables = BTreeMap::new();
    // Retries recorded as pending, by webhook: a 410 in the batch cancels them.
    let mut retried: Vec<(usize, Uuid)> = Vec::new();
    for (result, first) in results.iter().zip(first) {
        let (webhook, cancelled) = match recorded.get(&result.delivery_id.as_uuid()) {
            Some(recorded) if first => *recorded,
            _ => {
                outcomes.push(RecordOutcome::LeaseLost);
                continue;
            }
        };
        if let Some(reason) = &result.disable_webhook {
            disables.insert(webhook, (reason.as_str(), result.now));
        }
        let since = health.entry(webhook).or_default();
        if result.attempt.succeeded() {
            *since = None;
        } else if since.is_none() {
            *since = Some(result.attempt.started_at.as_millis());
        }
        touched.insert(webhook);
        let failing_since = since.map(Timestamp::from_millis);
        if !cancelled && matches!(result.next, NextState::RetryAt(_)) {
            retried.push((outcomes.len(), webhook));
        }
        outcomes.push(if cancelled {
            RecordOutcome::Cancelled { failing_since }
        } else {
            RecordOutcome::Recorded { failing_since }
        });
    }
    if !touched.is_empty() {
        let (ids, since): (Vec<Uuid>, Vec<Option<i64>>) = touched
            .iter()
            .map(|id| (*id, health.get(id).copied().flatten()))
            .unzip();
        sqlx::query(
            "UPDATE webhooks w SET failing_since = u.since
             FROM unnest($1::uuid[], $2::bigint[]) AS u(id, since)
             WHERE w.id = u.id AND w.failing_since IS DISTINCT FROM u.since",
        )
        .bind(ids)
        .bind(since)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    // A 410 Gone disables the webhook and cancels its pending deliveries, retries just
    // recorded in this batch included.
    for (index, webhook) in retried {
        if disables.contains_key(&webhook) {
            outcomes[index] = outcomes[index].cancelled();
        }
    }
    for (webhook, (reason, now)) in disables {
        disable_in(&mut *conn, webhook, reason, now).await?;
    }
    // The test hook fails here, after every write and before the commit: the rollback must
    // leave no attempt and every lease held.
    store.options.check_record_fault()?;
    Ok(outcomes)
}

pub(super) async fn release(
    store: &PostgresStore,
    leases: &[(DeliveryId, LeaseToken)],
) -> Result<()> {
    if leases.is_empty() {
        return Ok(());
    }
    let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) = leases
        .iter()
        .map(|(id, lease)| (id.as_uuid(), lease.0))
        .unzip();
    // The webhooks first, `FOR KEY SHARE` in id order (webhook locks before delivery locks, as
    // everywhere): a disable (`FOR UPDATE`) then either commits before, and the update below
    // sees the webhook disabled, or waits for this transaction and cancels what it made pending.
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    sqlx::query(
        "SELECT id FROM webhooks
         WHERE id IN (SELECT webhook_id FROM deliveries WHERE id = ANY($1))
         ORDER BY id FOR KEY SHARE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    // Pending again with the due time it had when claimed, so it is claimable at once; or, if
    // the webhook was disabled meanwhile, cancelled (as its pending deliveries were).
    sqlx::query(
        "UPDATE deliveries d
         SET status = CASE WHEN w.enabled THEN 'pending' ELSE 'cancelled' END,
             lease_token = NULL,
             claimable_at = CASE WHEN w.enabled THEN d.next_attempt_at END,
             next_attempt_at = CASE WHEN w.enabled THEN d.next_attempt_at END,
             updated_at = CASE WHEN w.enabled THEN d.updated_at ELSE $3 END
         FROM unnest($1::uuid[], $2::uuid[]) AS r(id, lease), webhooks w
         WHERE d.id = r.id AND d.lease_token = r.lease AND d.status = 'delivering'
           AND w.id = d.webhook_id",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(Timestamp::now().as_millis())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(())
}

/// Records then claims in one transaction (see `Store::record_then_claim`): one commit, so one
/// WAL flush, per worker round instead of two. The record takes its webhook locks first, as a
/// record alone does; the claim after it waits for no lock. A batch that disables a webhook
/// (410 Gone) goes in two transactions instead, so that the disabling is committed before a
/// claim.
pub(super) async fn record_then_claim(
    store: &PostgresStore,
    results: &[AttemptResult],
    request: &ClaimRequest,
) -> (Result<Vec<RecordOutcome>>, Result<Vec<ClaimedDelivery>>) {
    if results.iter().any(|r| r.disable_webhook.is_some()) {
        return (record(store, results).await, claim(store, request).await);
    }
    let mut tx = match store.pool.begin().await {
        Ok(tx) => tx,
        Err(err) => {
            let err = db_error(err);
            return (Err(same_failure(&err)), Err(err));
        }
    };
    let outcomes = match record_in(store, &mut tx, results).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            drop(tx);
            return (Err(err), claim(store, request).await);
        }
    };
    let claimed = match claim_in(store, &mut tx, request).await {
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
            let err = db_error(err);
            (Err(same_failure(&err)), Err(err))
        }
    }
}
