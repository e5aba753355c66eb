//! Ingestion: events and their fan-out to matching webhooks, one transaction per batch.

use mia_webhooks_model::{DeliveryId, Timestamp, WebhookId};
use uuid::Uuid;

use super::rows::get;
use super::{PostgresStore, db_error};
use crate::{IngestReceipt, NewEvent, Result};

/// Writes events (`$1`..`$4`: ids, names, bytes, time) and pending deliveries (`$5`..`$7`:
/// ids, event ids, webhook ids), due at once, in one statement.
const INSERT_EVENTS_AND_DELIVERIES: &str = "WITH e AS (
        INSERT INTO events (id, name, bytes, created_at)
        SELECT id, name, bytes, $4 FROM unnest($1::uuid[], $2::text[], $3::bytea[])
            AS t(id, name, bytes)
        RETURNING id
    )
    INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count, next_attempt_at,
        claimable_at, created_at, updated_at)
    SELECT id, event_id, webhook_id, 'pending', 0, $4, $4, $4, $4
    FROM unnest($5::uuid[], $6::uuid[], $7::uuid[]) AS t(id, event_id, webhook_id)";

/// The fan-out: the enabled webhooks subscribed to each (event index, name, candidate scope) of
/// `$1`, `$2`, `$3`, by probes of the primary key of `webhook_events` (event name, scope),
/// never a scan (`plans.rs` checks the plan). FOR KEY SHARE keeps a matched webhook from being
/// deleted or disabled (both take FOR UPDATE) before this transaction ends, and does not wait
/// for claims and records. Rows are locked in webhook id order, like everywhere else.
pub(super) const FANOUT: &str = "SELECT c.i, w.id
    FROM unnest($1::int[], $2::text[], $3::text[]) AS c(i, name, scope)
    JOIN webhook_events we ON we.event_name = c.name AND we.scope = c.scope
    JOIN webhooks w ON w.id = we.webhook_id
    WHERE w.enabled
    ORDER BY w.id, c.i
    FOR KEY SHARE OF w";

/// The parameters of [`FANOUT`]: for every event, its candidate scopes (at most three:
/// instance, its company, its project), each an exact key of the subscription index, with the
/// event's index in the batch and its name.
pub(super) fn fanout_keys(events: &[NewEvent]) -> (Vec<i32>, Vec<&str>, Vec<String>) {
    let mut index = Vec::new();
    let mut names = Vec::new();
    let mut scopes = Vec::new();
    for (i, new) in events.iter().enumerate() {
        for scope in new.event.routing().candidate_scopes() {
            index.push(i32::try_from(i).unwrap_or(i32::MAX));
            names.push(new.event.name().as_str());
            scopes.push(scope.to_string());
        }
    }
    (index, names, scopes)
}

pub(super) async fn ingest(
    store: &PostgresStore,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<IngestReceipt>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (index, names, scopes) = fanout_keys(events);

    let mut tx = store.pool.begin().await.map_err(db_error)?;
    let matches = sqlx::query(FANOUT)
        .bind(index)
        .bind(names)
        .bind(scopes)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;

    let mut counts = vec![0usize; events.len()];
    let mut delivery_ids = Vec::with_capacity(matches.len());
    let mut delivery_events = Vec::with_capacity(matches.len());
    let mut delivery_webhooks = Vec::with_capacity(matches.len());
    for row in &matches {
        let i = usize::try_from(get::<i32>(row, "i")?).unwrap_or(usize::MAX);
        let Some(count) = counts.get_mut(i) else {
            continue;
        };
        *count += 1;
        delivery_ids.push(DeliveryId::new().as_uuid());
        delivery_events.push(events[i].id.as_uuid());
        delivery_webhooks.push(get::<Uuid>(row, "id")?);
    }

    sqlx::query(INSERT_EVENTS_AND_DELIVERIES)
        .bind(
            events
                .iter()
                .map(|new| new.id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|new| new.event.name().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|new| new.event.bytes())
                .collect::<Vec<_>>(),
        )
        .bind(now.as_millis())
        .bind(delivery_ids)
        .bind(delivery_events)
        .bind(delivery_webhooks)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    // The test hook fails here, after the writes and before the commit: the rollback must
    // leave neither the events nor their deliveries.
    store.options.check_ingest_fault()?;
    tx.commit().await.map_err(db_error)?;

    Ok(events
        .iter()
        .zip(counts)
        .map(|(new, deliveries)| IngestReceipt {
            event_id: new.id,
            deliveries,
        })
        .collect())
}

pub(super) async fn ingest_for_webhook(
    store: &PostgresStore,
    event: &NewEvent,
    webhook: WebhookId,
    now: Timestamp,
) -> Result<Option<IngestReceipt>> {
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    // One statement: nothing is written when the webhook does not exist.
    let written = sqlx::query(
        "WITH w AS (SELECT id FROM webhooks WHERE id = $1 FOR KEY SHARE),
         e AS (
            INSERT INTO events (id, name, bytes, created_at)
            SELECT $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM w)
            RETURNING id
         )
         INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count,
            next_attempt_at, claimable_at, created_at, updated_at)
         SELECT $6, e.id, w.id, 'pending', 0, $5, $5, $5, $5 FROM e, w",
    )
    .bind(webhook.as_uuid())
    .bind(event.id.as_uuid())
    .bind(event.event.name().as_str())
    .bind(event.event.bytes())
    .bind(now.as_millis())
    .bind(DeliveryId::new().as_uuid())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if written.rows_affected() == 0 {
        return Ok(None);
    }
    store.options.check_ingest_fault()?;
    tx.commit().await.map_err(db_error)?;
    Ok(Some(IngestReceipt {
        event_id: event.id,
        deliveries: 1,
    }))
}
