//! Webhooks: create, read, update, delete, list, health and disabling.

use mia_webhooks_model::{Timestamp, Webhook, WebhookId, WebhookPatch};
use uuid::Uuid;

use super::rows::{WEBHOOK_COLUMNS, opt_timestamp};
use super::{PostgresStore, db_error, into_page, page_limit};
use crate::{Page, Result, WebhookQuery};

/// Cancels the pending deliveries of webhook `$1` at time `$2`.
const CANCEL_PENDING: &str = "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, \
    claimable_at = NULL, updated_at = $2 WHERE webhook_id = $1 AND status = 'pending'";

pub(super) async fn create(store: &PostgresStore, webhook: &Webhook) -> Result<()> {
    let secret = store.seal_secret(webhook.id, &webhook.secret)?;
    let names: Vec<&str> = webhook.events.iter().map(|name| name.as_str()).collect();
    // One statement: the webhook and its subscriptions are written together or not at all.
    sqlx::query(
        "WITH w AS (
            INSERT INTO webhooks (id, scope, target_url, secret, events, ca_certificate,
                proxy_url, description, enabled, disabled_reason, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING id, scope, events
        )
        INSERT INTO webhook_events (event_name, scope, webhook_id)
        SELECT n, w.scope, w.id FROM w, unnest(w.events) AS n",
    )
    .bind(webhook.id.as_uuid())
    .bind(webhook.scope.to_string())
    .bind(webhook.target_url.as_str())
    .bind(secret)
    .bind(names)
    .bind(webhook.ca_certificate.as_ref().map(|ca| ca.as_pem()))
    .bind(webhook.proxy.as_ref().map(|proxy| proxy.expose()))
    .bind(webhook.description.as_deref())
    .bind(webhook.enabled)
    .bind(webhook.disabled_reason.as_deref())
    .bind(webhook.created_at.as_millis())
    .bind(webhook.updated_at.as_millis())
    .execute(&store.pool)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(super) async fn get(store: &PostgresStore, id: WebhookId) -> Result<Option<Webhook>> {
    let row = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&store.pool)
    .await
    .map_err(db_error)?;
    row.map(|row| store.webhook_from_row(&row)).transpose()
}

pub(super) async fn update(
    store: &PostgresStore,
    id: WebhookId,
    patch: WebhookPatch,
    now: Timestamp,
) -> Result<Option<Webhook>> {
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    // FOR UPDATE (not NO KEY UPDATE) also waits for ingests that matched this webhook, so a
    // disable cannot miss the deliveries they are about to queue.
    let row = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = $1 FOR UPDATE"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut webhook = store.webhook_from_row(&row)?;
    let events_changed = patch.events.is_some();
    let disabling = patch.enabled == Some(false);
    let restart_clock = patch.restarts_failure_clock(&webhook);
    patch.apply(&mut webhook, now);
    // Re-sealed on every update, so secrets move to the current key as webhooks are edited.
    let secret = store.seal_secret(id, &webhook.secret)?;

    sqlx::query(
        "UPDATE webhooks SET target_url = $2, secret = $3, events = $4, ca_certificate = $5,
            proxy_url = $6, description = $7, enabled = $8, disabled_reason = $9,
            updated_at = $10, failing_since = CASE WHEN $11 THEN NULL ELSE failing_since END
         WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(webhook.target_url.as_str())
    .bind(secret)
    .bind(
        webhook
            .events
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(webhook.ca_certificate.as_ref().map(|ca| ca.as_pem()))
    .bind(webhook.proxy.as_ref().map(|proxy| proxy.expose()))
    .bind(webhook.description.as_deref())
    .bind(webhook.enabled)
    .bind(webhook.disabled_reason.as_deref())
    .bind(now.as_millis())
    .bind(restart_clock)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;

    if events_changed {
        // Delete and insert cannot share a statement (the insert would not see the delete and
        // collide with the rows it keeps), so two statements.
        sqlx::query("DELETE FROM webhook_events WHERE webhook_id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO webhook_events (event_name, scope, webhook_id)
             SELECT n, w.scope, w.id FROM webhooks w, unnest(w.events) AS n WHERE w.id = $1",
        )
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    if disabling {
        sqlx::query(CANCEL_PENDING)
            .bind(id.as_uuid())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(Some(webhook))
}

pub(super) async fn delete(store: &PostgresStore, id: WebhookId) -> Result<bool> {
    // The foreign keys cascade to subscriptions, deliveries and their attempts; a worker still
    // holding a lease then finds no row to record into.
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&store.pool)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list(store: &PostgresStore, query: &WebhookQuery) -> Result<Page<Webhook>> {
    let (limit, fetch) = page_limit(query.limit);
    let events: Vec<&str> = query.events.iter().map(|name| name.as_str()).collect();
    let rows = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w
         WHERE w.scope = $1
           AND ($2::uuid IS NULL OR w.id > $2)
           AND (cardinality($3::text[]) = 0 OR w.events && $3)
         ORDER BY w.id
         LIMIT $4"
    ))
    .bind(query.scope.to_string())
    .bind(query.after.map(|id| id.as_uuid()))
    .bind(events)
    .bind(fetch)
    .fetch_all(&store.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(|row| store.webhook_from_row(row))
        .collect::<Result<Vec<_>>>()?;
    Ok(into_page(items, limit))
}

pub(super) async fn failing_since(
    store: &PostgresStore,
    id: WebhookId,
) -> Result<Option<Timestamp>> {
    let row = sqlx::query("SELECT failing_since FROM webhooks WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_optional(&store.pool)
        .await
        .map_err(db_error)?;
    match row {
        Some(row) => opt_timestamp(&row, "failing_since"),
        None => Ok(None),
    }
}

pub(super) async fn disable(
    store: &PostgresStore,
    id: WebhookId,
    reason: &str,
    now: Timestamp,
) -> Result<bool> {
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    let found = disable_in(&mut tx, id.as_uuid(), reason, now).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(found)
}

/// Disables a webhook and cancels its pending deliveries inside a transaction.
pub(super) async fn disable_in(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    reason: &str,
    now: Timestamp,
) -> Result<bool> {
    // FOR UPDATE waits for ingests that matched the webhook while it was enabled (they hold
    // FOR KEY SHARE), so their deliveries are in place to be cancelled.
    let found = sqlx::query("SELECT id FROM webhooks WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
    if found.is_none() {
        return Ok(false);
    }
    // A webhook disabled already keeps its reason (an owner's, say, over a late automatic one).
    sqlx::query(
        "UPDATE webhooks SET enabled = false,
            disabled_reason = CASE WHEN enabled THEN $2 ELSE disabled_reason END,
            updated_at = CASE WHEN enabled THEN $3 ELSE updated_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now.as_millis())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    sqlx::query(CANCEL_PENDING)
        .bind(id)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(true)
}
