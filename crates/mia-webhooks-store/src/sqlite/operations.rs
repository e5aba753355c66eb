//! API tokens, retention, counts and health checks on SQLite.

use mia_webhooks_model::Timestamp;

use super::SqliteStore;
use super::rows::{self, blob, get};
use crate::sql_error::database_error;
use crate::{ApiToken, PurgeReport, Result, StoreStats, TokenHash};

/// Rows deleted per purge transaction, so retention never holds the write lock for long.
const PURGE_CHUNK: i64 = 1000;

pub(super) async fn create_token(store: &SqliteStore, token: &ApiToken) -> Result<()> {
    let mut tx = store.write().await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, role, tenant_id, project_id, label, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(blob(token.id.as_uuid()))
    .bind(&token.hash.0[..])
    .bind(token.role.name())
    .bind(
        token
            .role
            .scope()
            .as_ref()
            .and_then(|s| s.tenant_id())
            .map(|t| t.as_str().to_owned()),
    )
    .bind(
        token
            .role
            .scope()
            .as_ref()
            .and_then(|s| s.project_id())
            .map(|p| p.as_str().to_owned()),
    )
    .bind(&token.label)
    .bind(token.created_at.as_millis())
    .execute(&mut *tx)
    .await
    .map_err(database_error)?;
    tx.commit().await.map_err(database_error)
}

pub(super) async fn find_token(store: &SqliteStore, hash: &TokenHash) -> Result<Option<ApiToken>> {
    sqlx::query("SELECT id, hash, role, tenant_id, project_id, label, created_at FROM api_tokens WHERE hash = ?")
        .bind(&hash.0[..])
        .fetch_optional(&store.reader)
        .await
        .map_err(database_error)?
        .map(|row| rows::token(&row))
        .transpose()
}

pub(super) async fn count_tokens(store: &SqliteStore) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
        .fetch_one(&store.reader)
        .await
        .map_err(database_error)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) async fn purge(store: &SqliteStore, cutoff: Timestamp) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    loop {
        let mut tx = store.write().await?;
        // Finished deliveries have no claimable_at; `deliveries_finished` indexes them by age.
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE claimable_at IS NULL AND updated_at < ? LIMIT ?",
        )
        .bind(cutoff.as_millis())
        .bind(PURGE_CHUNK)
        .fetch_all(&mut *tx)
        .await
        .map_err(database_error)?;
        for id in &ids {
            let attempts = sqlx::query("DELETE FROM attempts WHERE delivery_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(database_error)?;
            report.attempts += attempts.rows_affected();
            sqlx::query("DELETE FROM deliveries WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(database_error)?;
        }
        report.deliveries += ids.len() as u64;
        tx.commit().await.map_err(database_error)?;
        if (ids.len() as i64) < PURGE_CHUNK {
            break;
        }
    }
    loop {
        let mut tx = store.write().await?;
        let events = sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < ? \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT ?)",
        )
        .bind(cutoff.as_millis())
        .bind(PURGE_CHUNK)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?
        .rows_affected();
        tx.commit().await.map_err(database_error)?;
        report.events += events;
        if events < PURGE_CHUNK as u64 {
            break;
        }
    }
    Ok(report)
}

pub(super) async fn stats(store: &SqliteStore) -> Result<StoreStats> {
    let mut tx = store.reader.begin().await.map_err(database_error)?;
    let mut stats = StoreStats::default();
    for row in sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
        .fetch_all(&mut *tx)
        .await
        .map_err(database_error)?
    {
        let n = u64::try_from(get::<i64>(&row, "n")?).unwrap_or(0);
        match get::<&str>(&row, "status")? {
            "pending" => stats.pending = n,
            "delivering" => stats.delivering = n,
            "succeeded" => stats.succeeded = n,
            "failed" => stats.failed = n,
            "cancelled" => stats.cancelled = n,
            _ => {}
        }
    }
    let disabled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE enabled = 0")
        .fetch_one(&mut *tx)
        .await
        .map_err(database_error)?;
    stats.disabled_webhooks = u64::try_from(disabled).unwrap_or(0);
    tx.commit().await.map_err(database_error)?;
    Ok(stats)
}

pub(super) async fn ping(store: &SqliteStore) -> Result<()> {
    // The read pool: a readiness probe must not queue behind a long write.
    sqlx::query("SELECT 1")
        .execute(&store.reader)
        .await
        .map_err(database_error)?;
    Ok(())
}
