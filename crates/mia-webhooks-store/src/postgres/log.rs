//! The delivery log (listing, detail, redelivery) and operations (purge, stats).

use mia_webhooks_model::{Delivery, DeliveryId, Timestamp};

use super::rows::{
    ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DELIVERY_FROM, attempt_from_row, delivery_from_row, get,
};
use super::{PostgresStore, db_error, into_page, page_limit};
use crate::{DeliveryDetail, DeliveryQuery, Page, PurgeReport, Result, StoreStats};

pub(super) async fn list_deliveries(
    store: &PostgresStore,
    query: &DeliveryQuery,
) -> Result<Page<Delivery>> {
    let (limit, fetch) = page_limit(query.limit);
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM}
         WHERE d.webhook_id = $1
           AND ($2::text IS NULL OR d.status = $2)
           AND ($3::uuid IS NULL OR d.id < $3)
         ORDER BY d.id DESC
         LIMIT $4"
    ))
    .bind(query.webhook.as_uuid())
    .bind(query.status.map(|status| status.as_str()))
    .bind(query.before.map(|id| id.as_uuid()))
    .bind(fetch)
    .fetch_all(&store.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(delivery_from_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(into_page(items, limit))
}

pub(super) async fn get_delivery(
    store: &PostgresStore,
    id: DeliveryId,
) -> Result<Option<DeliveryDetail>> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS}, e.bytes FROM {DELIVERY_FROM} WHERE d.id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&store.pool)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let attempts = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.delivery_id = $1 ORDER BY a.number"
    ))
    .bind(id.as_uuid())
    .fetch_all(&store.pool)
    .await
    .map_err(db_error)?;
    Ok(Some(DeliveryDetail {
        delivery: delivery_from_row(&row)?,
        attempts: attempts
            .iter()
            .map(attempt_from_row)
            .collect::<Result<_>>()?,
        payload: get(&row, "bytes")?,
    }))
}

pub(super) async fn redeliver(
    store: &PostgresStore,
    id: DeliveryId,
    now: Timestamp,
) -> Result<Option<Delivery>> {
    let new_id = DeliveryId::new();
    let inserted = sqlx::query(
        "INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count, next_attempt_at,
            claimable_at, created_at, updated_at)
         SELECT $1, event_id, webhook_id, 'pending', 0, $3, $3, $3, $3 FROM deliveries WHERE id = $2",
    )
    .bind(new_id.as_uuid())
    .bind(id.as_uuid())
    .bind(now.as_millis())
    .execute(&store.pool)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.id = $1"
    ))
    .bind(new_id.as_uuid())
    .fetch_optional(&store.pool)
    .await
    .map_err(db_error)?;
    // The webhook may have been deleted in between, taking the new delivery with it.
    row.map(|row| delivery_from_row(&row)).transpose()
}

pub(super) async fn purge(store: &PostgresStore, cutoff: Timestamp) -> Result<PurgeReport> {
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    let row = sqlx::query(
        "WITH old AS (
            SELECT id FROM deliveries WHERE claimable_at IS NULL AND updated_at < $1
         ),
         gone_attempts AS (
            DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM old) RETURNING 1
         )
         SELECT (SELECT count(*) FROM gone_attempts) AS attempts",
    )
    .bind(cutoff.as_millis())
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let attempts: i64 = get(&row, "attempts")?;
    let deliveries =
        sqlx::query("DELETE FROM deliveries WHERE claimable_at IS NULL AND updated_at < $1")
            .bind(cutoff.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
    let events = sqlx::query(
        "DELETE FROM events e WHERE e.created_at < $1
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)",
    )
    .bind(cutoff.as_millis())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    tx.commit().await.map_err(db_error)?;
    Ok(PurgeReport {
        deliveries,
        attempts: u64::try_from(attempts).unwrap_or(0),
        events,
    })
}

pub(super) async fn stats(store: &PostgresStore) -> Result<StoreStats> {
    let rows = sqlx::query(
        "SELECT status, count(*) AS n FROM deliveries GROUP BY status
         UNION ALL
         SELECT 'disabled_webhooks', count(*) FROM webhooks WHERE NOT enabled",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(db_error)?;
    let mut stats = StoreStats::default();
    for row in &rows {
        let n = u64::try_from(get::<i64>(row, "n")?).unwrap_or(0);
        match get::<String>(row, "status")?.as_str() {
            "pending" => stats.pending = n,
            "delivering" => stats.delivering = n,
            "succeeded" => stats.succeeded = n,
            "failed" => stats.failed = n,
            "cancelled" => stats.cancelled = n,
            "disabled_webhooks" => stats.disabled_webhooks = n,
            _ => {}
        }
    }
    Ok(stats)
}
