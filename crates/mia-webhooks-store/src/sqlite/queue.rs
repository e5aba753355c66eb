//! The queue on SQLite: ingestion (event + deliveries), claims, releases (records are in
//! `record.rs`).
//!
//! Each operation is one write transaction that works on a whole batch with few statements, so
//! the single writer spends its time writing rows, not round-tripping statements: ingestion
//! writes all the events of a batch with one multi-row insert, looks up the matching webhooks
//! once per distinct name and scopes, and writes all the deliveries with multi-row inserts of up
//! to 256 rows (padded to a power of two, see [`rows::padded`]); a claim picks
//! its deliveries with one statement that answers with one packed row, leases them with one
//! statement that takes their ids as one JSON parameter (see `batch.rs`), and reads only the
//! webhooks and events the store's caches do not hold (`cache.rs`). Under load, what a claim
//! costs is mostly its round trips to the connection's thread (each waits for the async task to
//! be scheduled again), so a usual claim makes four: begin, pick, lease, commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mia_webhooks_model::{DeliveryId, EventId, EventName, Timestamp, Webhook, WebhookId};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use super::batch;
use super::cache::CachedEvent;
use super::rows::{self, batches, blob, get, padded, uuid, value_rows};
use crate::sql_error::database_error;
use crate::{
    ClaimRequest, ClaimedDelivery, IngestReceipt, LeaseToken, NewEvent, Result, StoreError,
};

/// How many times a claim looks again for due deliveries after the per-webhook cap set some aside.
const MAX_CLAIM_ROUNDS: usize = 8;

/// The most rows one multi-row insert of events or deliveries takes.
const INSERT_CHUNK: usize = 256;

pub(super) async fn ingest(
    store: &SqliteStore,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<IngestReceipt>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write().await?;
    let receipts = ingest_in(&mut tx, store, events, now).await?;
    tx.commit().await.map_err(database_error)?;
    for event in events {
        keep_event(store, event);
    }
    Ok(receipts)
}

/// Ingests then claims in one write transaction (see `Store::ingest_then_claim`). The events
/// go into the event cache before the claim reads them, so that the claim finds their bytes
/// without a statement; should the transaction not commit, the cache holds events no delivery
/// names, which is harmless.
pub(super) async fn ingest_then_claim(
    store: &SqliteStore,
    events: &[NewEvent],
    now: Timestamp,
    request: &ClaimRequest,
) -> (Result<Vec<IngestReceipt>>, Result<Vec<ClaimedDelivery>>) {
    if events.is_empty() {
        return (Ok(Vec::new()), claim(store, request).await);
    }
    let mut tx = match store.write().await {
        Ok(tx) => tx,
        Err(err) => return (Err(err), Ok(Vec::new())),
    };
    let receipts = match ingest_in(&mut tx, store, events, now).await {
        Ok(receipts) => receipts,
        Err(err) => return (Err(err), Ok(Vec::new())),
    };
    for event in events {
        keep_event(store, event);
    }
    let claimed = match claim_in(&mut tx, store, request).await {
        Ok(claimed) => claimed,
        Err(err) => {
            // Some claim failures repeat (a secret no configured key opens): the events must
            // not go down with them. Undone, then written on their own.
            drop(tx);
            return (ingest(store, events, now).await, Err(err));
        }
    };
    match tx.commit().await {
        Ok(()) => (Ok(receipts), Ok(claimed)),
        Err(err) => (Err(database_error(err)), Ok(Vec::new())),
    }
}

/// [`ingest`] inside the caller's write transaction, which the caller commits.
async fn ingest_in(
    conn: &mut SqliteConnection,
    store: &SqliteStore,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<IngestReceipt>> {
    insert_events(conn, events, now).await?;
    // One lookup per distinct (name, candidate scopes) of the batch: the events of a busy
    // source mostly share them.
    let mut matched: HashMap<(&str, Vec<String>), Vec<Uuid>> = HashMap::new();
    let mut deliveries = Vec::new();
    let mut receipts = Vec::with_capacity(events.len());
    for event in events {
        let key = (event.event.name().as_str(), candidate_scopes(event));
        let webhooks = match matched.get(&key) {
            Some(webhooks) => webhooks,
            None => {
                let found = matching_webhooks(conn, key.0, &key.1).await?;
                matched.entry(key).or_insert(found)
            }
        };
        deliveries.extend(
            webhooks
                .iter()
                .map(|webhook| (DeliveryId::new(), event.id, *webhook)),
        );
        receipts.push(IngestReceipt {
            event_id: event.id,
            deliveries: webhooks.len(),
        });
    }
    insert_delivery_rows(conn, &deliveries, now).await?;
    store.options.check_ingest_fault()?;
    Ok(receipts)
}

/// Keeps a committed event for the claims that follow.
fn keep_event(store: &SqliteStore, event: &NewEvent) {
    let bytes: Arc<[u8]> = Arc::from(event.event.bytes());
    store
        .event_cache
        .put(event.id.as_uuid(), event.event.name(), &bytes);
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
    insert_events(&mut tx, std::slice::from_ref(event), now).await?;
    insert_deliveries(&mut tx, event.id, &[webhook.as_uuid()], now).await?;
    store.options.check_ingest_fault()?;
    tx.commit().await.map_err(database_error)?;
    keep_event(store, event);
    Ok(Some(IngestReceipt {
        event_id: event.id,
        deliveries: 1,
    }))
}

/// Writes the events (their bytes, once) in multi-row inserts.
async fn insert_events(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<()> {
    for range in batches(events.len(), INSERT_CHUNK) {
        let shape = padded(range.len());
        // Each row has its id, name and bytes (all NULL for padding), then comes the time. The
        // placeholders are all plain `?`, bound in order (sqlx numbers plain ones on its own).
        let sql = format!(
            "INSERT INTO events (id, format, name, created_at, bytes) \
             SELECT v.column1, 1, v.column2, t.now, v.column3 \
             FROM (VALUES {}) AS v, (SELECT ? AS now) AS t WHERE v.column1 IS NOT NULL",
            value_rows("(?, ?, ?)", shape)
        );
        let mut insert = sqlx::query(&sql);
        for _ in 0..(shape - range.len()) * 3 {
            insert = insert.bind(None::<i64>);
        }
        for event in &events[range] {
            insert = insert
                .bind(blob(event.id.as_uuid()))
                .bind(event.event.name().as_str())
                .bind(event.event.bytes());
        }
        insert
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
    }
    Ok(())
}

/// An event's candidate scopes as stored, always three (the first repeated): one statement
/// shape whatever the routing.
fn candidate_scopes(event: &NewEvent) -> Vec<String> {
    let mut scopes: Vec<String> = event
        .event
        .routing()
        .candidate_scopes()
        .iter()
        .map(ToString::to_string)
        .collect();
    while scopes.len() < 3 {
        scopes.push(scopes[0].clone());
    }
    scopes
}

/// The enabled webhooks subscribed to an event name (?1) on one of three scopes (?2 to ?4): a
/// range lookup on the primary key of `webhook_events`, never a scan of all webhooks.
pub(super) const FANOUT: &str = "\
SELECT we.webhook_id FROM webhook_events we JOIN webhooks w ON w.id = we.webhook_id
WHERE we.event_name = ? AND we.scope IN (?, ?, ?) AND w.enabled = 1 ORDER BY we.webhook_id";

/// The enabled webhooks subscribed to `name` on one of `scopes` (three): [`FANOUT`].
async fn matching_webhooks(
    conn: &mut SqliteConnection,
    name: &str,
    scopes: &[String],
) -> Result<Vec<Uuid>> {
    let found = sqlx::query(FANOUT)
        .bind(name)
        .bind(&scopes[0])
        .bind(&scopes[1])
        .bind(&scopes[2])
        .fetch_all(&mut *conn)
        .await
        .map_err(database_error)?;
    found.iter().map(|row| uuid(row, "webhook_id")).collect()
}

/// Inserts one pending delivery, due now, of `event` per webhook.
pub(super) async fn insert_deliveries(
    conn: &mut SqliteConnection,
    event: EventId,
    webhooks: &[Uuid],
    now: Timestamp,
) -> Result<Vec<DeliveryId>> {
    let rows: Vec<(DeliveryId, EventId, Uuid)> = webhooks
        .iter()
        .map(|webhook| (DeliveryId::new(), event, *webhook))
        .collect();
    insert_delivery_rows(conn, &rows, now).await?;
    Ok(rows.into_iter().map(|(id, _, _)| id).collect())
}

/// Inserts pending deliveries, due now, of (id, event, webhook), in multi-row statements.
async fn insert_delivery_rows(
    conn: &mut SqliteConnection,
    rows: &[(DeliveryId, EventId, Uuid)],
    now: Timestamp,
) -> Result<()> {
    for range in batches(rows.len(), INSERT_CHUNK) {
        let shape = padded(range.len());
        // Each row has its id, event and webhook (all NULL for padding), then comes the time.
        let sql = format!(
            "INSERT INTO deliveries (id, event_id, webhook_id, status, attempt_count, \
             next_attempt_at, claimable_at, created_at, updated_at) \
             SELECT v.column1, v.column2, v.column3, 'pending', 0, t.now, t.now, t.now, t.now \
             FROM (VALUES {}) AS v, (SELECT ? AS now) AS t WHERE v.column1 IS NOT NULL",
            value_rows("(?, ?, ?)", shape)
        );
        let mut insert = sqlx::query(&sql);
        for _ in 0..(shape - range.len()) * 3 {
            insert = insert.bind(None::<i64>);
        }
        for (id, event, webhook) in &rows[range] {
            insert = insert
                .bind(blob(id.as_uuid()))
                .bind(blob(event.as_uuid()))
                .bind(blob(*webhook));
        }
        insert
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
    }
    Ok(())
}

/// What a claim round looks at, in one statement that answers with one row of two packed
/// columns (`batch.rs`).
///
/// Parameters: ?1 now, ?2 the per-webhook cap, ?3 how many due deliveries to look at.
/// `held`: the live leases per webhook (what every worker holds), which the per-webhook cap
/// counts (a scan of the small `deliveries_leased`). `due`: the first due deliveries in due
/// order, leaving out webhooks already at their cap (`full`), from a range of
/// `deliveries_claimable`, each with its webhook's revision (for the cache of decoded webhooks,
/// `cache.rs`).
///
/// Leaving out full webhooks means reading past their due deliveries, which costs time in
/// proportion to their backlog. When every webhook is full there can be nothing to take, and
/// the `EXISTS` (which reads at most one more webhook than there are full ones) skips that read:
/// with a few webhooks all at their cap and a long backlog, this is the common case, and
/// without it every claim would read the whole backlog to find nothing. (Finding the due
/// deliveries of each webhook directly, as the PostgreSQL backend does, would need an index by
/// webhook and due time, whose entries every claim and record would move: about three times
/// the pages each commit writes.)
pub(super) const CLAIM_PICK: &str = "\
WITH held (webhook_id, n) AS (
    SELECT webhook_id, COUNT(*) FROM deliveries
    WHERE status = 'delivering' AND claimable_at > ?1 GROUP BY webhook_id
),
full (webhook_id) AS (SELECT webhook_id FROM held WHERE n >= ?2)
SELECT
    (SELECT group_concat(concat_ws(',', hex(webhook_id), n), ';') FROM held) AS held,
    CASE WHEN EXISTS (SELECT 1 FROM webhooks WHERE id NOT IN (SELECT webhook_id FROM full)) THEN
        (SELECT group_concat(
                    concat_ws(',', hex(f.id), hex(f.webhook_id), hex(f.event_id), f.attempt_count,
                              f.created_at, f.claimable_at, w.revision),
                    ';')
         FROM (SELECT id, webhook_id, event_id, attempt_count, created_at, claimable_at
               FROM deliveries
               WHERE claimable_at <= ?1 AND webhook_id NOT IN (SELECT webhook_id FROM full)
               ORDER BY claimable_at, id LIMIT ?3) AS f
         CROSS JOIN webhooks AS w ON w.id = f.webhook_id)
    END AS due";

/// Puts the deliveries listed in ?4 (a JSON array of ids) under lease ?2 until ?1.
pub(super) const CLAIM_LEASE: &str = "\
UPDATE deliveries SET status = 'delivering', claimable_at = ?1, lease_token = ?2, updated_at = ?3
WHERE id IN (SELECT unhex(value) FROM json_each(?4))";

/// The webhooks listed in ?1 (a JSON array of ids), in full, with their revisions.
pub(super) const CLAIM_WEBHOOKS: &str = "\
SELECT id, scope, target_url, secret, events, ca_certificate, proxy_url, description, enabled,
       disabled_reason, created_at, updated_at, revision
FROM webhooks WHERE id IN (SELECT unhex(value) FROM json_each(?1))";

/// Sets aside, pending again from ?1 on, the deliveries listed in ?2 (a JSON array of ids), just
/// leased by this claim, and every other delivery due at ?4 of the webhooks listed in ?3: their
/// secret could not be opened, and a backlog left due would come back at the head of every claim.
pub(super) const SET_ASIDE: &str = "\
UPDATE deliveries SET status = 'pending', claimable_at = ?1, next_attempt_at = ?1, lease_token = NULL
WHERE id IN (SELECT unhex(value) FROM json_each(?2))
   OR (webhook_id IN (SELECT unhex(value) FROM json_each(?3)) AND claimable_at <= ?4)";

/// The events listed in ?1 (a JSON array of ids): names and bytes.
pub(super) const CLAIM_EVENTS: &str =
    "SELECT id, name, bytes FROM events WHERE id IN (SELECT unhex(value) FROM json_each(?1))";

/// A due delivery a claim round looked at.
struct Candidate {
    id: Uuid,
    webhook: Uuid,
    event: Uuid,
    attempt_count: u32,
    created_at: Timestamp,
    claimable_at: i64,
    /// The webhook's revision.
    revision: i64,
}

impl Candidate {
    fn read(fields: &mut batch::Fields<'_>) -> Result<Candidate> {
        Ok(Candidate {
            id: fields.id()?,
            webhook: fields.id()?,
            event: fields.id()?,
            attempt_count: u32::try_from(fields.int()?)
                .map_err(|_| StoreError::Corrupt("an attempt count is out of range".into()))?,
            created_at: Timestamp::from_millis(fields.int()?),
            claimable_at: fields.int()?,
            revision: fields.int()?,
        })
    }
}

/// How many due deliveries a claim round looks at to take `wanted`: a quarter more, so that
/// deliveries of webhooks reaching their cap do not leave the round short; when they fill the
/// whole window, the next round looks again without those webhooks.
fn window(wanted: usize) -> usize {
    wanted.saturating_add(wanted / 4).saturating_add(16)
}

pub(super) async fn claim(
    store: &SqliteStore,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedDelivery>> {
    if request.limit == 0 || request.per_webhook_cap == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.write().await?;
    let claimed = claim_in(&mut tx, store, request).await?;
    tx.commit().await.map_err(database_error)?;
    Ok(claimed)
}

/// [`claim`] inside the caller's write transaction, which the caller commits.
pub(super) async fn claim_in(
    conn: &mut SqliteConnection,
    store: &SqliteStore,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedDelivery>> {
    if request.limit == 0 || request.per_webhook_cap == 0 {
        return Ok(Vec::new());
    }
    let now = request.now.as_millis();
    let leased_until = request.now.saturating_add(request.lease);
    let lease = LeaseToken::new();
    let cap = request.per_webhook_cap;

    // Take due deliveries in due order, leaving out webhooks at their cap. Usually one round.
    // Each round leases what it took (so it is no longer due, and counts against its webhook's
    // cap) and, when capped deliveries filled the whole window, looks again without the
    // webhooks that filled up, so one webhook with a large backlog cannot hide the others.
    let mut chosen: Vec<Candidate> = Vec::new();
    for _ in 0..MAX_CLAIM_ROUNDS {
        let wanted = request.limit - chosen.len();
        let window = window(wanted);
        let row = sqlx::query(CLAIM_PICK)
            .bind(now)
            .bind(i64::try_from(cap).unwrap_or(i64::MAX))
            .bind(i64::try_from(window).unwrap_or(i64::MAX))
            .fetch_one(&mut *conn)
            .await
            .map_err(database_error)?;
        let mut in_flight: HashMap<Uuid, usize> = HashMap::new();
        for mut fields in batch::records(get::<Option<&str>>(&row, "held")?) {
            let webhook = fields.id()?;
            in_flight.insert(
                webhook,
                usize::try_from(fields.int()?).unwrap_or(usize::MAX),
            );
        }
        let mut due = batch::records(get::<Option<&str>>(&row, "due")?)
            .map(|mut fields| Candidate::read(&mut fields))
            .collect::<Result<Vec<_>>>()?;
        // Due order. `group_concat` keeps the order of the rows it is given, so they come
        // sorted already; SQLite does not promise that, and sorting sorted rows costs little.
        due.sort_by_key(|c| (c.claimable_at, c.id));
        let exhausted = due.len() < window;

        let mut taken = Vec::new();
        let mut capped = false;
        for candidate in due {
            if taken.len() >= wanted {
                break;
            }
            let held = in_flight.entry(candidate.webhook).or_default();
            if *held >= cap {
                capped = true;
                continue;
            }
            *held += 1;
            taken.push(candidate);
        }
        if !taken.is_empty() {
            let leased = sqlx::query(CLAIM_LEASE)
                .bind(leased_until.as_millis())
                .bind(blob(lease.0))
                .bind(now)
                .bind(batch::id_array(taken.iter().map(|c| c.id)))
                .execute(&mut *conn)
                .await
                .map_err(database_error)?;
            if leased.rows_affected() != taken.len() as u64 {
                return Err(StoreError::Corrupt(format!(
                    "a claim leased {} of the {} deliveries it picked",
                    leased.rows_affected(),
                    taken.len()
                )));
            }
        }
        chosen.extend(taken);
        if chosen.len() >= request.limit || exhausted || !capped {
            break;
        }
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }

    let (webhooks, unreadable) = load_webhooks(&mut *conn, &chosen, store).await?;
    if !unreadable.is_empty() {
        let (aside, kept) = chosen
            .into_iter()
            .partition::<Vec<_>, _>(|c| unreadable.contains(&c.webhook));
        chosen = kept;
        sqlx::query(SET_ASIDE)
            .bind(
                request
                    .now
                    .saturating_add(crate::UNREADABLE_SECRET_BACKOFF)
                    .as_millis(),
            )
            .bind(batch::id_array(aside.iter().map(|c| c.id)))
            .bind(batch::id_array(unreadable.iter().copied()))
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
    }
    let events = load_events(&mut *conn, &chosen, store).await?;
    store.options.check_claim_fault()?;

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

/// The webhooks of the chosen deliveries, one shared copy each: from the store's cache when it
/// holds the revision the claim read, else read and decoded (and kept). Beside them, the
/// webhooks whose secret no configured key opens (logged here).
async fn load_webhooks(
    conn: &mut SqliteConnection,
    chosen: &[Candidate],
    store: &SqliteStore,
) -> Result<(HashMap<Uuid, Arc<Webhook>>, HashSet<Uuid>)> {
    let mut webhooks = HashMap::new();
    let mut missing = HashSet::new();
    for candidate in chosen {
        if webhooks.contains_key(&candidate.webhook) || missing.contains(&candidate.webhook) {
            continue;
        }
        match store
            .webhook_cache
            .get(candidate.webhook, candidate.revision)
        {
            Some(webhook) => {
                webhooks.insert(candidate.webhook, webhook);
            }
            None => {
                missing.insert(candidate.webhook);
            }
        }
    }
    let mut unreadable = HashSet::new();
    if missing.is_empty() {
        return Ok((webhooks, unreadable));
    }
    let found = sqlx::query(CLAIM_WEBHOOKS)
        .bind(batch::id_array(missing))
        .fetch_all(&mut *conn)
        .await
        .map_err(database_error)?;
    for row in found {
        match rows::webhook(&row, store.keys()) {
            Ok(webhook) => {
                let webhook = Arc::new(webhook);
                store.webhook_cache.put(get(&row, "revision")?, &webhook);
                webhooks.insert(webhook.id.as_uuid(), webhook);
            }
            Err(StoreError::SecretKey(why)) => {
                let id = uuid(&row, "id")?;
                crate::secrets::log_unreadable(id, &why);
                unreadable.insert(id);
            }
            Err(other) => return Err(other),
        }
    }
    Ok((webhooks, unreadable))
}

/// The names and bytes of the chosen deliveries' events, one shared copy each: from the
/// store's cache, else read (and kept).
async fn load_events(
    conn: &mut SqliteConnection,
    chosen: &[Candidate],
    store: &SqliteStore,
) -> Result<HashMap<Uuid, CachedEvent>> {
    let mut events = HashMap::new();
    let mut missing = HashSet::new();
    for candidate in chosen {
        if events.contains_key(&candidate.event) || missing.contains(&candidate.event) {
            continue;
        }
        match store.event_cache.get(candidate.event) {
            Some(event) => {
                events.insert(candidate.event, event);
            }
            None => {
                missing.insert(candidate.event);
            }
        }
    }
    if missing.is_empty() {
        return Ok(events);
    }
    let found = sqlx::query(CLAIM_EVENTS)
        .bind(batch::id_array(missing))
        .fetch_all(&mut *conn)
        .await
        .map_err(database_error)?;
    for row in found {
        let id = uuid(&row, "id")?;
        let name = EventName::new(get::<&str>(&row, "name")?)
            .map_err(|err| StoreError::Corrupt(format!("column name: {err}")))?;
        let bytes: Arc<[u8]> = Arc::from(get::<&[u8]>(&row, "bytes")?);
        store.event_cache.put(id, &name, &bytes);
        events.insert(id, (name, bytes));
    }
    Ok(events)
}

/// Gives back the leases listed in ?1 (a JSON array of `[delivery id, lease]`): due again at
/// once, at the time the attempt was due; or, if the webhook was disabled meanwhile, cancelled
/// at ?2 (as its pending deliveries were). A lease no longer held changes nothing.
pub(super) const RELEASE: &str = "\
UPDATE deliveries SET
    status = CASE WHEN w.enabled = 1 THEN 'pending' ELSE 'cancelled' END,
    claimable_at = CASE WHEN w.enabled = 1 THEN deliveries.next_attempt_at END,
    next_attempt_at = CASE WHEN w.enabled = 1 THEN deliveries.next_attempt_at END,
    updated_at = CASE WHEN w.enabled = 1 THEN deliveries.updated_at ELSE ?2 END,
    lease_token = NULL
FROM json_each(?1) AS r, webhooks AS w
WHERE deliveries.id = unhex(r.value ->> 0) AND deliveries.lease_token = unhex(r.value ->> 1)
  AND deliveries.status = 'delivering' AND w.id = deliveries.webhook_id";

pub(super) async fn release(
    store: &SqliteStore,
    leases: &[(DeliveryId, LeaseToken)],
) -> Result<()> {
    if leases.is_empty() {
        return Ok(());
    }
    let mut rows = batch::JsonRows::new();
    for (id, lease) in leases {
        rows.row().id(id.as_uuid()).id(lease.0);
    }
    let mut tx = store.write().await?;
    sqlx::query(RELEASE)
        .bind(rows.finish())
        .bind(Timestamp::now().as_millis())
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
    tx.commit().await.map_err(database_error)
}
