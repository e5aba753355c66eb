//! The delivery log on SQLite: deliveries of a webhook, one delivery with its attempts,
//! redelivery.

use mia_webhooks_model::{Delivery, DeliveryId, Timestamp};

use super::SqliteStore;
use super::queue::insert_deliveries;
use super::rows::{self, ATTEMPT_COLUMNS, DELIVERY_SELECT, blob, uuid};
use crate::sql_error::database_error;
use crate::{DeliveryDetail, DeliveryQuery, Page, Result, StoreError, page_limit};

pub(super) async fn list(store: &SqliteStore, query: &DeliveryQuery) -> Result<Page<Delivery>> {
    let limit = page_limit(query.limit);
    let mut sql = format!("{DELIVERY_SELECT} WHERE d.webhook_id = ?");
    if query.status.is_some() {
        sql.push_str(" AND d.status = ?");
    }
    if query.before.is_some() {
        sql.push_str(" AND d.id < ?");
    }
    sql.push_str(" ORDER BY d.id DESC LIMIT ?");
    let mut select = sqlx::query(&sql).bind(blob(query.webhook.as_uuid()));
    if let Some(status) = query.status {
        select = select.bind(status.as_str());
    }
    if let Some(before) = query.before {
        select = select.bind(blob(before.as_uuid()));
    }
    let found = select
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&store.reader)
        .await
        .map_err(database_error)?;
    let mut items = found
        .iter()
        .map(rows::delivery)
        .collect::<Result<Vec<_>>>()?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, has_more })
}

pub(super) async fn get(store: &SqliteStore, id: DeliveryId) -> Result<Option<DeliveryDetail>> {
    // One read transaction, so the delivery, its attempts and its event agree.
    let mut tx = store.reader.begin().await.map_err(database_error)?;
    let Some(row) = sqlx::query(&format!("{DELIVERY_SELECT} WHERE d.id = ?"))
        .bind(blob(id.as_uuid()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?
    else {
        return Ok(None);
    };
    let delivery = rows::delivery(&row)?;
    let attempts = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ? ORDER BY number"
    ))
    .bind(blob(id.as_uuid()))
    .fetch_all(&mut *tx)
    .await
    .map_err(database_error)?
    .iter()
    .map(rows::attempt)
    .collect::<Result<Vec<_>>>()?;
    let payload: Vec<u8> = sqlx::query_scalar("SELECT bytes FROM events WHERE id = ?")
        .bind(blob(delivery.event_id.as_uuid()))
        .fetch_one(&mut *tx)
        .await
        .map_err(database_error)?;
    tx.commit().await.map_err(database_error)?;
    Ok(Some(DeliveryDetail {
        delivery,
        attempts,
        payload,
    }))
}

pub(super) async fn redeliver(
    store: &SqliteStore,
    id: DeliveryId,
    now: Timestamp,
) -> Result<Option<Delivery>> {
    let mut tx = store.write().await?;
    let Some(row) = sqlx::query("SELECT event_id, webhook_id FROM deliveries WHERE id = ?")
        .bind(blob(id.as_uuid()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?
    else {
        return Ok(None);
    };
    let event = mia_webhooks_model::EventId::from_uuid(uuid(&row, "event_id")?);
    let ids = insert_deliveries(&mut tx, event, &[uuid(&row, "webhook_id")?], now).await?;
    let new_id = ids
        .first()
        .ok_or_else(|| StoreError::Corrupt("the redelivery was not written".into()))?;
    let row = sqlx::query(&format!("{DELIVERY_SELECT} WHERE d.id = ?"))
        .bind(blob(new_id.as_uuid()))
        .fetch_one(&mut *tx)
        .await
        .map_err(database_error)?;
    let delivery = rows::delivery(&row)?;
    tx.commit().await.map_err(database_error)?;
    Ok(Some(delivery))
}
