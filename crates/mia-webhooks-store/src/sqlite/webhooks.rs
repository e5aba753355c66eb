//! Webhooks on SQLite: create, read, patch, delete, list, health.
//!
//! Every write of a webhook's fields sets a fresh `revision`, which tells the claims' cache of
//! decoded webhooks (`cache.rs`) that its copy is stale.

use mia_webhooks_model::{Timestamp, Webhook, WebhookId, WebhookPatch};
use sqlx::{Executor, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::cache::new_revision;
use super::rows::{self, WEBHOOK_COLUMNS, blob, events_text};
use crate::secrets::seal_secret;
use crate::sql_error::database_error;
use crate::{Page, Result, SecretKeys, WebhookQuery, page_limit};

pub(super) async fn create(store: &SqliteStore, webhook: &Webhook) -> Result<()> {
    let mut tx = store.write().await?;
    insert(&mut tx, webhook, store.keys()).await?;
    tx.commit().await.map_err(database_error)
}

async fn insert(
    conn: &mut SqliteConnection,
    webhook: &Webhook,
    keys: Option<&SecretKeys>,
) -> Result<()> {
    let secret = seal_secret(keys, webhook.id, &webhook.secret)?;
    sqlx::query(
        "INSERT INTO webhooks (id, format, scope, target_url, secret, events, ca_certificate, proxy_url, \
         description, enabled, disabled_reason, failing_since, created_at, updated_at, revision) \
         VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
    )
    .bind(blob(webhook.id.as_uuid()))
    .bind(webhook.scope.to_string())
    .bind(webhook.target_url.as_str())
    .bind(secret)
    .bind(events_text(&webhook.events))
    .bind(webhook.ca_certificate.as_ref().map(|ca| ca.as_pem()))
    .bind(webhook.proxy.as_ref().map(|proxy| proxy.expose()))
    .bind(webhook.description.as_deref())
    .bind(webhook.enabled)
    .bind(webhook.disabled_reason.as_deref())
    .bind(webhook.created_at.as_millis())
    .bind(webhook.updated_at.as_millis())
    .bind(new_revision())
    .execute(&mut *conn)
    .await
    .map_err(database_error)?;
    index(conn, webhook).await
}

/// Writes the fan-out index rows of a webhook.
async fn index(conn: &mut SqliteConnection, webhook: &Webhook) -> Result<()> {
    let id = blob(webhook.id.as_uuid());
    let scope = webhook.scope.to_string();
    for name in webhook.events.iter() {
        sqlx::query("INSERT INTO webhook_events (event_name, scope, webhook_id) VALUES (?, ?, ?)")
            .bind(name.as_str())
            .bind(&scope)
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
    }
    Ok(())
}

pub(super) async fn get(store: &SqliteStore, id: WebhookId) -> Result<Option<Webhook>> {
    let mut conn = store.reader.acquire().await.map_err(database_error)?;
    fetch(&mut conn, id, store.keys()).await
}

pub(super) async fn fetch(
    conn: &mut SqliteConnection,
    id: WebhookId,
    keys: Option<&SecretKeys>,
) -> Result<Option<Webhook>> {
    let row = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?"
    ))
    .bind(blob(id.as_uuid()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(database_error)?;
    row.map(|row| rows::webhook(&row, keys)).transpose()
}

pub(super) async fn update(
    store: &SqliteStore,
    id: WebhookId,
    patch: WebhookPatch,
    now: Timestamp,
) -> Result<Option<Webhook>> {
    let mut tx = store.write().await?;
    let Some(mut webhook) = fetch(&mut tx, id, store.keys()).await? else {
        return Ok(None);
    };
    let disabling = patch.enabled == Some(false);
    let events_changed = patch
        .events
        .as_ref()
        .is_some_and(|events| *events != webhook.events);
    let restart_clock = patch.restarts_failure_clock(&webhook);
    patch.apply(&mut webhook, now);
    // The secret is written back on every update, so it is re-sealed with the current key.
    let secret = seal_secret(store.keys(), id, &webhook.secret)?;
    sqlx::query(
        "UPDATE webhooks SET target_url = ?, secret = ?, events = ?, ca_certificate = ?, proxy_url = ?, \
         description = ?, enabled = ?, disabled_reason = ?, updated_at = ?, revision = ?, \
         failing_since = CASE WHEN ? THEN NULL ELSE failing_since END WHERE id = ?",
    )
    .bind(webhook.target_url.as_str())
    .bind(secret)
    .bind(events_text(&webhook.events))
    .bind(webhook.ca_certificate.as_ref().map(|ca| ca.as_pem()))
    .bind(webhook.proxy.as_ref().map(|proxy| proxy.expose()))
    .bind(webhook.description.as_deref())
    .bind(webhook.enabled)
    .bind(webhook.disabled_reason.as_deref())
    .bind(now.as_millis())
    .bind(new_revision())
    .bind(restart_clock)
    .bind(blob(id.as_uuid()))
    .execute(&mut *tx)
    .await
    .map_err(database_error)?;
    if events_changed {
        sqlx::query("DELETE FROM webhook_events WHERE webhook_id = ?")
            .bind(blob(id.as_uuid()))
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        index(&mut tx, &webhook).await?;
    }
    if disabling {
        cancel_pending(&mut *tx, id, now).await?;
    }
    tx.commit().await.map_err(database_error)?;
    Ok(Some(webhook))
}

/// Cancels the pending deliveries of a webhook (those under a lease finish their attempt).
pub(super) async fn cancel_pending<'c, E>(conn: E, id: WebhookId, now: Timestamp) -> Result<()>
where
    E: Executor<'c, Database = Sqlite>,
{
    sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, claimable_at = NULL, updated_at = ? \
         WHERE webhook_id = ? AND status = 'pending'",
    )
    .bind(now.as_millis())
    .bind(blob(id.as_uuid()))
    .execute(conn)
    .await
    .map_err(database_error)?;
    Ok(())
}

pub(super) async fn delete(store: &SqliteStore, id: WebhookId) -> Result<bool> {
    let mut tx = store.write().await?;
    // Deliveries, their attempts and the index rows go with it (ON DELETE CASCADE).
    let done = sqlx::query("DELETE FROM webhooks WHERE id = ?")
        .bind(blob(id.as_uuid()))
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
    tx.commit().await.map_err(database_error)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list(store: &SqliteStore, query: &WebhookQuery) -> Result<Page<Webhook>> {
    let limit = page_limit(query.limit);
    let scope = query.scope.to_string();
    let mut sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE scope = ?");
    if query.after.is_some() {
        sql.push_str(" AND id > ?");
    }
    if !query.events.is_empty() {
        sql.push_str(&format!(
            " AND id IN (SELECT webhook_id FROM webhook_events WHERE scope = ? AND event_name IN ({}))",
            rows::placeholders(query.events.len())
        ));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    let mut select = sqlx::query(&sql).bind(&scope);
    if let Some(after) = query.after {
        select = select.bind(blob(after.as_uuid()));
    }
    if !query.events.is_empty() {
        select = select.bind(&scope);
        for name in &query.events {
            select = select.bind(name.as_str());
        }
    }
    let found = select
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&store.reader)
        .await
        .map_err(database_error)?;
    let mut items = found
        .iter()
        .map(|row| rows::webhook(row, store.keys()))
        .collect::<Result<Vec<_>>>()?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, has_more })
}

pub(super) async fn failing_since(store: &SqliteStore, id: WebhookId) -> Result<Option<Timestamp>> {
    let since: Option<Option<i64>> =
        sqlx::query_scalar("SELECT failing_since FROM webhooks WHERE id = ?")
            .bind(blob(id.as_uuid()))
            .fetch_optional(&store.reader)
            .await
            .map_err(database_error)?;
    Ok(since.flatten().map(Timestamp::from_millis))
}

pub(super) async fn disable(
    store: &SqliteStore,
    id: WebhookId,
    reason: &str,
    now: Timestamp,
) -> Result<bool> {
    let mut tx = store.write().await?;
    let found = disable_in(&mut tx, id, reason, now).await?;
    tx.commit().await.map_err(database_error)?;
    Ok(found)
}

/// Disables a webhook and cancels its pending deliveries inside a transaction. A webhook
/// disabled already keeps its reason (an owner's, say, over a late automatic one).
pub(super) async fn disable_in(
    conn: &mut SqliteConnection,
    id: WebhookId,
    reason: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE webhooks SET disabled_reason = CASE WHEN enabled THEN ?1 ELSE disabled_reason END, \
         updated_at = CASE WHEN enabled THEN ?2 ELSE updated_at END, \
         revision = CASE WHEN enabled THEN ?3 ELSE revision END, enabled = 0 WHERE id = ?4",
    )
    .bind(reason)
    .bind(now.as_millis())
    .bind(new_revision())
    .bind(blob(id.as_uuid()))
    .execute(&mut *conn)
    .await
    .map_err(database_error)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    cancel_pending(&mut *conn, id, now).await?;
    Ok(true)
}
