//! The queue on SQLite: ingestion (event + deliveries), claims, releases (records are in
//! `record.rs`).
//!
//! Each operation is one write transaction that works on a whole batch with few statements:
//! `IN (...)` lists and multi-row inserts in a handful of fixed shapes (see [`rows::chunks`]), so
//! the single writer spends its time writing rows, not round-tripping statements.

use std::collections::HashMap;
use std::sync::Arc;

use mia_webhooks_model::{DeliveryId, EventId, EventName, Timestamp, Webhook, WebhookId};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use super::rows::{self, WEBHOOK_COLUMNS, blob, chunks, get, placeholders, uuid};
use crate::sql_error::database_error;
use crate::{
    ClaimRequest, ClaimedDelivery, IngestReceipt, LeaseToken, NewEvent, Result, StoreError,
    StoreOptions,
};

/// How many times a claim looks again for due deliveries after the per-webhook cap set some aside.
const MAX_CLAIM_ROUNDS: usize = 8;

pub(super) async fn ingest(
    store: &SqliteStore,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<IngestReceipt>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write().await?;
    let mut receipts = Vec::with_capacity(events.len());
    for event in events {
        insert_event(&mut tx, event, now, &store.options).await?;
        let webhooks = matching_webhooks(&mut tx, event).await?;
        insert_deliveries(&mut tx, event.id, &webhooks, now).await?;
        receipts.push(IngestReceipt {
            event_id: event.id,
            deliveries: webhooks.len(),
        });
    }
    tx.commit().await.map_err(database_error)?;
    Ok(receipts)
}

pub(super) async fn ingest_for_webhook(
    store: &SqliteStore,
    event: &NewEvent,
    webhook: WebhookId,
    now: Timestamp,
) -> Result<Option<IngestReceipt>> {
    let mut tx = store.write().await?;
    let exists = sqlx::query("SELECT 1 FROM webhooks WHERE id = ?")
        .bind(blob(webhook.as_uuid()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?
        .is_some();
    if !exists {
        return Ok(None);
    }
    insert_event(&mut tx, event, now, &store.options).await?;
    insert_deliveries(&mut tx, event.id, &[webhook.as_uuid()], now).await?;
    tx.commit().await.map_err(database_error)?;
    Ok(Some(IngestReceipt {
        event_id: event.id,
        deliveries: 1,
    }))
}

/// Writes the event (its bytes, once), then honours the fault-injection hook.
async fn insert_event(
    conn: &mut SqliteConnection,
    event: &NewEvent,
    now: Timestamp,
    options: &StoreOptions,
) -> Result<()> {
    sqlx::query("INSERT INTO events (id, format, name, created_at, bytes) VALUES (?, 1, ?, ?, ?)")
        .bind(blob(event.id.as_uuid()))
        .bind(event.event.name().as_str())
        .bind(now.as_millis())
        .bind(event.event.bytes())
        .execute(&mut *conn)
        .await
        .map_err(database_error)?;
    options.check_ingest_fault()
}

/// The enabled webhooks subscribed to the event's name on one of its candidate scopes: a range
/// lookup on the primary key of `webhook_events`, never a scan of all webhooks.
async fn matching_webhooks(conn: &mut SqliteConnection, event: &NewEvent) -> Result<Vec<Uuid>> {
    let mut scopes: Vec<String> = event
        .event
        .routing()
        .candidate_scopes()
        .iter()
        .map(ToString::to_string)
        .collect();
    // Always three values, repeating the first: one statement shape whatever the routing.
    while scopes.len() < 3 {
        scopes.push(scopes[0].clone());
    }
    let found = sqlx::query(
        "SELECT we.webhook_id FROM webhook_events we JOIN webhooks w ON w.id = we.webhook_id \
         WHERE we.event_name = ? AND we.scope IN (?, ?, ?) AND w.enabled = 1 ORDER BY we.webhook_id",
    )
    .bind(event.event.name().as_str())
    .bind(&scopes[0])
    .bind(&scopes[1])
    .bind(&scopes[2])
    .fetch_all(&mut *conn)
    .await
    .map_err(database_error)?;
    found.iter().map(|row| uuid(row, "webhook_id")).collect()
}

/// Inserts one pending delivery, due now, per webhook, in multi-row statements.
pub(super) async fn insert_deliveries(
    conn: &mut SqliteConnection,
    event: EventId,
    webhooks: &[Uuid],
    now: Timestamp,
) -> Result<Vec<DeliveryId>> {
    let ids: Vec<DeliveryId> = webhooks.iter().map(|_| DeliveryId::new()).collect();
    for range in chunks(webhooks.len()) {
        // ?1 is the event, ?2 the time; each row adds its id and webhook.
        let values: Vec<String> = (0..range.len())
            .map(|i| {
                format!(
                    "(?{}, ?1, ?{}, 'pending', 0, ?2, ?2, ?2, ?2)",
                    3 + 2 * i,
                    4 + 2 * i
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count, next_attempt_at, \
             claimable_at, created_at, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql)
            .bind(blob(event.as_uuid()))
            .bind(now.as_millis());
        for i in range {
            insert = insert.bind(blob(ids[i].as_uuid())).bind(blob(webhooks[i]));
        }
        insert.execute(&mut *conn).await.map_err(database_error)?;
    }
    Ok(ids)
}

/// A due delivery picked by a claim.
struct Candidate {
    id: Uuid,
    webhook: Uuid,
    event: Uuid,
    attempt_count: u32,
    created_at: Timestamp,
}

pub(super) async fn claim(
    store: &SqliteStore,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedDelivery>> {
    if request.limit == 0 || request.per_webhook_cap == 0 {
        return Ok(Vec::new());
    }
    let now = request.now.as_millis();
    let leased_until = request.now.saturating_add(request.lease);
    let lease = LeaseToken::new();
    let mut tx = store.write().await?;

    // Live leases per webhook: the per-webhook cap counts what other workers already hold.
    let mut in_flight: HashMap<Uuid, usize> = HashMap::new();
    for row in sqlx::query(
        "SELECT webhook_id, COUNT(*) AS held FROM deliveries \
         WHERE status = 'delivering' AND claimable_at > ? GROUP BY webhook_id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(database_error)?
    {
        let held: i64 = get(&row, "held")?;
        in_flight.insert(
            uuid(&row, "webhook_id")?,
            usize::try_from(held).unwrap_or(usize::MAX),
        );
    }

    // Take due deliveries in due order, leaving out webhooks at their cap. Each round leases
    // what it took (so it is no longer due) and looks again without the webhooks that filled up,
    // so one webhook with a large backlog cannot hide the others.
    let mut chosen: Vec<Candidate> = Vec::new();
    for _ in 0..MAX_CLAIM_ROUNDS {
        let wanted = request.limit - chosen.len();
        let full: Vec<Uuid> = in_flight
            .iter()
            .filter(|(_, held)| **held >= request.per_webhook_cap)
            .map(|(id, _)| *id)
            .collect();
        let mut sql = String::from(
            "SELECT id, webhook_id, event_id, attempt_count, created_at FROM deliveries WHERE claimable_at <= ?",
        );
        if !full.is_empty() {
            sql.push_str(&format!(
                " AND webhook_id NOT IN ({})",
                placeholders(full.len())
            ));
        }
        sql.push_str(" ORDER BY claimable_at, id LIMIT ?");
        let mut select = sqlx::query(&sql).bind(now);
        for id in &full {
            select = select.bind(blob(*id));
        }
        let fetch = wanted.saturating_mul(2).saturating_add(16);
        let found = select
            .bind(i64::try_from(fetch).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(database_error)?;
        let exhausted = found.len() < fetch;
        let mut taken = Vec::new();
        let mut capped = false;
        for row in &found {
            if taken.len() >= wanted {
                break;
            }
            let webhook = uuid(row, "webhook_id")?;
            let held = in_flight.entry(webhook).or_default();
            if *held >= request.per_webhook_cap {
                capped = true;
                continue;
            }
            *held += 1;
            taken.push(Candidate {
                id: uuid(row, "id")?,
                webhook,
                event: uuid(row, "event_id")?,
                attempt_count: rows::count(row, "attempt_count")?,
                created_at: rows::timestamp(row, "created_at")?,
            });
        }
        lease_rows(&mut tx, &taken, lease, leased_until, request.now).await?;
        chosen.extend(taken);
        if chosen.len() >= request.limit || exhausted || !capped {
            break;
        }
    }
    if chosen.is_empty() {
        tx.commit().await.map_err(database_error)?;
        return Ok(Vec::new());
    }

    let webhooks = load_webhooks(&mut tx, &chosen, store).await?;
    let events = load_events(&mut tx, &chosen).await?;
    tx.commit().await.map_err(database_error)?;

    chosen
        .into_iter()
        .map(|candidate| {
            let webhook = webhooks.get(&candidate.webhook).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "delivery {} refers to a missing webhook",
                    candidate.id
                ))
            })?;
            let (event_name, payload) = events.get(&candidate.event).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "delivery {} refers to a missing event",
                    candidate.id
                ))
            })?;
            Ok(ClaimedDelivery {
                delivery_id: DeliveryId::from_uuid(candidate.id),
                lease,
                leased_until,
                event_id: EventId::from_uuid(candidate.event),
                event_name: event_name.clone(),
                attempt: candidate.attempt_count + 1,
                created_at: candidate.created_at,
                webhook: Arc::clone(webhook),
                payload: Arc::clone(payload),
            })
        })
        .collect()
}

/// Puts the taken deliveries under `lease` until `leased_until`.
async fn lease_rows(
    conn: &mut SqliteConnection,
    taken: &[Candidate],
    lease: LeaseToken,
    leased_until: Timestamp,
    now: Timestamp,
) -> Result<()> {
    for range in chunks(taken.len()) {
        let sql = format!(
            "UPDATE deliveries SET status = 'delivering', claimable_at = ?, lease_token = ?, updated_at = ? \
             WHERE id IN ({})",
            placeholders(range.len())
        );
        let mut update = sqlx::query(&sql)
            .bind(leased_until.as_millis())
            .bind(blob(lease.0))
            .bind(now.as_millis());
        for candidate in &taken[range] {
            update = update.bind(blob(candidate.id));
        }
        update.execute(&mut *conn).await.map_err(database_error)?;
    }
    Ok(())
}

/// The webhooks of the chosen deliveries, one shared copy each.
async fn load_webhooks(
    conn: &mut SqliteConnection,
    chosen: &[Candidate],
    store: &SqliteStore,
) -> Result<HashMap<Uuid, Arc<Webhook>>> {
    let mut ids: Vec<Uuid> = chosen.iter().map(|c| c.webhook).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut webhooks = HashMap::with_capacity(ids.len());
    for range in chunks(ids.len()) {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id IN ({})",
            placeholders(range.len())
        );
        let mut select = sqlx::query(&sql);
        for id in &ids[range] {
            select = select.bind(blob(*id));
        }
        for row in select.fetch_all(&mut *conn).await.map_err(database_error)? {
            let webhook = rows::webhook(&row, store.keys())?;
            webhooks.insert(webhook.id.as_uuid(), Arc::new(webhook));
        }
    }
    Ok(webhooks)
}

/// The names and bytes of the chosen deliveries' events, one shared copy each.
async fn load_events(
    conn: &mut SqliteConnection,
    chosen: &[Candidate],
) -> Result<HashMap<Uuid, (EventName, Arc<[u8]>)>> {
    let mut ids: Vec<Uuid> = chosen.iter().map(|c| c.event).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut events = HashMap::with_capacity(ids.len());
    for range in chunks(ids.len()) {
        let sql = format!(
            "SELECT id, name, bytes FROM events WHERE id IN ({})",
            placeholders(range.len())
        );
        let mut select = sqlx::query(&sql);
        for id in &ids[range] {
            select = select.bind(blob(*id));
        }
        for row in select.fetch_all(&mut *conn).await.map_err(database_error)? {
            let name = EventName::new(get::<&str>(&row, "name")?)
                .map_err(|err| StoreError::Corrupt(format!("column name: {err}")))?;
            let bytes: &[u8] = get(&row, "bytes")?;
            events.insert(uuid(&row, "id")?, (name, Arc::from(bytes)));
        }
    }
    Ok(events)
}

pub(super) async fn release(
    store: &SqliteStore,
    leases: &[(DeliveryId, LeaseToken)],
) -> Result<()> {
    if leases.is_empty() {
        return Ok(());
    }
    let mut tx = store.write().await?;
    for (id, lease) in leases {
        // Due again at once: at the time the attempt was due.
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', claimable_at = next_attempt_at, lease_token = NULL \
             WHERE id = ? AND lease_token = ? AND status = 'delivering'",
        )
        .bind(blob(id.as_uuid()))
        .bind(blob(lease.0))
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
    }
    tx.commit().await.map_err(database_error)
}
