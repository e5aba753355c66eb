//! Rows to model values and back: the column lists the queries share and their decoding.

use mia_webhooks_model::{
    Attempt, CaCertificate, Delivery, DeliveryId, DeliveryStatus, EventId, EventName, EventSet,
    FailureKind, ProxyUrl, Scope, TargetUrl, Timestamp, Webhook, WebhookId,
};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PostgresStore, db_error};
use crate::{Result, StoreError};

/// The columns of a webhook, read from `webhooks w`, with its event names.
pub(super) const WEBHOOK_COLUMNS: &str = "w.id, w.scope, w.target_url, w.secret, w.events, \
    w.ca_certificate, w.proxy_url, w.description, w.enabled, w.disabled_reason, w.created_at, \
    w.updated_at";

/// The columns of a delivery with its event's name and its latest attempt, read from
/// [`DELIVERY_FROM`].
pub(super) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.name AS event_name, \
    d.webhook_id, d.status, d.attempt_count, d.next_attempt_at, d.created_at, d.updated_at, \
    a.number, a.started_at, a.duration_ms, a.status_code, a.failure, a.error, a.response_excerpt";

/// The `FROM` clause that goes with [`DELIVERY_COLUMNS`].
/// The latest attempt is the one numbered `attempt_count`.
pub(super) const DELIVERY_FROM: &str = "deliveries d JOIN events e ON e.id = d.event_id \
    LEFT JOIN attempts a ON a.delivery_id = d.id AND a.number = d.attempt_count";

/// The columns of an attempt, read from `attempts a`.
pub(super) const ATTEMPT_COLUMNS: &str =
    "a.number, a.started_at, a.duration_ms, a.status_code, a.failure, a.error, a.response_excerpt";

/// Reads a column, mapping a type mismatch to a database error.
pub(super) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(db_error)
}

/// A time read from a `BIGINT` column.
pub(super) fn timestamp(row: &PgRow, column: &str) -> Result<Timestamp> {
    get::<i64>(row, column).map(Timestamp::from_millis)
}

/// An optional time read from a `BIGINT` column.
pub(super) fn opt_timestamp(row: &PgRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(get::<Option<i64>>(row, column)?.map(Timestamp::from_millis))
}

/// Reports a stored field that no longer validates, naming the field but never its value
/// (a proxy URL can carry credentials).
fn invalid(what: &str, id: Uuid, err: &mia_webhooks_model::ValidationError) -> StoreError {
    StoreError::Corrupt(format!("{what} {id}: stored {} is invalid", err.field()))
}

impl PostgresStore {
    /// Decodes a row of [`WEBHOOK_COLUMNS`], opening its secret.
    pub(super) fn webhook_from_row(&self, row: &PgRow) -> Result<Webhook> {
        let id: Uuid = get(row, "id")?;
        let bad = |e: mia_webhooks_model::ValidationError| invalid("webhook", id, &e);
        let scope = get::<String>(row, "scope")?.parse::<Scope>().map_err(bad)?;
        let target_url = TargetUrl::new(&get::<String>(row, "target_url")?).map_err(bad)?;
        let secret = self.open_secret(WebhookId::from_uuid(id), &get::<String>(row, "secret")?)?;
        let events = EventSet::from_stored(get::<Vec<String>>(row, "events")?).map_err(bad)?;
        let ca_certificate = get::<Option<String>>(row, "ca_certificate")?
            .map(|pem| CaCertificate::new(&pem))
            .transpose()
            .map_err(bad)?;
        let proxy = get::<Option<String>>(row, "proxy_url")?
            .map(|url| ProxyUrl::new(&url))
            .transpose()
            .map_err(bad)?;
        Ok(Webhook {
            id: WebhookId::from_uuid(id),
            scope,
            target_url,
            secret,
            events,
            ca_certificate,
            proxy,
            description: get(row, "description")?,
            enabled: get(row, "enabled")?,
            disabled_reason: get(row, "disabled_reason")?,
            created_at: timestamp(row, "created_at")?,
            updated_at: timestamp(row, "updated_at")?,
        })
    }
}

/// Decodes a row of [`DELIVERY_COLUMNS`].
pub(super) fn delivery_from_row(row: &PgRow) -> Result<Delivery> {
    let id: Uuid = get(row, "id")?;
    let status: DeliveryStatus = get::<String>(row, "status")?
        .parse()
        .map_err(|e| invalid("delivery", id, &e))?;
    let event_name: String = get(row, "event_name")?;
    let last_attempt = match get::<Option<i32>>(row, "number")? {
        Some(_) => Some(attempt_from_row(row)?),
        None => None,
    };
    Ok(Delivery {
        id: DeliveryId::from_uuid(id),
        event_id: EventId::from_uuid(get(row, "event_id")?),
        event_name: EventName::new(event_name).map_err(|e| invalid("delivery", id, &e))?,
        webhook_id: WebhookId::from_uuid(get(row, "webhook_id")?),
        status,
        attempt_count: count(get::<i32>(row, "attempt_count")?),
        // Kept while delivering (a released lease is due at once), shown only while pending.
        next_attempt_at: match status {
            DeliveryStatus::Pending => opt_timestamp(row, "next_attempt_at")?,
            _ => None,
        },
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
        last_attempt,
    })
}

/// Decodes a row of [`ATTEMPT_COLUMNS`].
pub(super) fn attempt_from_row(row: &PgRow) -> Result<Attempt> {
    let failure = get::<Option<String>>(row, "failure")?
        .map(|kind| kind.parse::<FailureKind>())
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.message().to_owned()))?;
    let status_code = get::<Option<i32>>(row, "status_code")?
        .map(|code| {
            u16::try_from(code)
                .map_err(|_| StoreError::Corrupt(format!("stored status code {code} is invalid")))
        })
        .transpose()?;
    Ok(Attempt {
        number: count(get::<i32>(row, "number")?),
        started_at: timestamp(row, "started_at")?,
        duration_ms: u64::try_from(get::<i64>(row, "duration_ms")?).unwrap_or(0),
        status_code,
        failure,
        error: get(row, "error")?,
        response_excerpt: get(row, "response_excerpt")?,
    })
}

/// A stored count (never negative) as the model's `u32`.
pub(super) fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A size as a `BIGINT` parameter.
pub(super) fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
