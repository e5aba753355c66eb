//! Converting between the model's types and SQLite columns.

use std::ops::Range;

use mia_webhooks_model::{
    Attempt, CaCertificate, Delivery, DeliveryId, DeliveryStatus, EventId, EventName, EventSet,
    FailureKind, ProxyUrl, Role, Scope, TargetUrl, Timestamp, TokenId, Webhook, WebhookId,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row as _, Sqlite, Type};
use uuid::Uuid;

use crate::secrets::open_secret;
use crate::{ApiToken, Result, SecretKeys, StoreError, TokenHash};

/// A UUID as stored: its 16 bytes.
pub(super) fn blob(uuid: Uuid) -> Vec<u8> {
    uuid.as_bytes().to_vec()
}

/// A column, or [`StoreError::Corrupt`] naming it.
pub(super) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|err| StoreError::Corrupt(format!("column {column}: {err}")))
}

pub(super) fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid> {
    let bytes: &[u8] = get(row, column)?;
    Uuid::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt(format!("column {column} is not a 16-byte id")))
}

pub(super) fn timestamp(row: &SqliteRow, column: &str) -> Result<Timestamp> {
    get::<i64>(row, column).map(Timestamp::from_millis)
}

pub(super) fn opt_timestamp(row: &SqliteRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(get::<Option<i64>>(row, column)?.map(Timestamp::from_millis))
}

fn invalid(column: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {column}: {err}"))
}

/// A `u32` counter column.
pub(super) fn count(row: &SqliteRow, column: &str) -> Result<u32> {
    u32::try_from(get::<i64>(row, column)?).map_err(|err| invalid(column, err))
}

/// The subscribed names as stored in `webhooks.events`: sorted, space-separated.
pub(super) fn events_text(events: &EventSet) -> String {
    events
        .iter()
        .map(EventName::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The columns [`webhook`] reads, in a `SELECT`.
pub(super) const WEBHOOK_COLUMNS: &str = "id, scope, target_url, secret, events, ca_certificate, proxy_url, \
     description, enabled, disabled_reason, created_at, updated_at";

/// A webhook from a row of [`WEBHOOK_COLUMNS`], its secret opened with `keys`.
pub(super) fn webhook(row: &SqliteRow, keys: Option<&SecretKeys>) -> Result<Webhook> {
    let id = WebhookId::from_uuid(uuid(row, "id")?);
    let scope: Scope = get::<&str>(row, "scope")?
        .parse()
        .map_err(|err| invalid("scope", err))?;
    let target_url =
        TargetUrl::new(get(row, "target_url")?).map_err(|err| invalid("target_url", err))?;
    let secret = open_secret(keys, id, get(row, "secret")?)?;
    let events = EventSet::from_stored(get::<&str>(row, "events")?.split(' ').map(str::to_owned))
        .map_err(|err| invalid("events", err))?;
    let ca_certificate = get::<Option<&str>>(row, "ca_certificate")?
        .map(CaCertificate::new)
        .transpose()
        .map_err(|err| invalid("ca_certificate", err))?;
    let proxy = get::<Option<&str>>(row, "proxy_url")?
        .map(ProxyUrl::new)
        .transpose()
        .map_err(|err| invalid("proxy_url", err))?;
    Ok(Webhook {
        id,
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

/// Selects deliveries with their event's name and their latest attempt (the one whose number is
/// the delivery's attempt count). Callers append `WHERE ...`.
pub(super) const DELIVERY_SELECT: &str = "SELECT d.id, d.event_id, e.name AS event_name, d.webhook_id, d.status, \
     d.attempt_count, d.next_attempt_at, d.created_at, d.updated_at, \
     a.number, a.started_at, a.duration_ms, a.status_code, a.failure, a.error, a.response_excerpt \
     FROM deliveries d JOIN events e ON e.id = d.event_id \
     LEFT JOIN attempts a ON a.delivery_id = d.id AND a.number = d.attempt_count";

/// A delivery from a row of [`DELIVERY_SELECT`].
pub(super) fn delivery(row: &SqliteRow) -> Result<Delivery> {
    let status: DeliveryStatus = get::<&str>(row, "status")?
        .parse()
        .map_err(|err| invalid("status", err))?;
    let last_attempt = match get::<Option<i64>>(row, "number")? {
        Some(_) => Some(attempt(row)?),
        None => None,
    };
    Ok(Delivery {
        id: DeliveryId::from_uuid(uuid(row, "id")?),
        event_id: EventId::from_uuid(uuid(row, "event_id")?),
        event_name: EventName::new(get::<&str>(row, "event_name")?)
            .map_err(|err| invalid("event_name", err))?,
        webhook_id: WebhookId::from_uuid(uuid(row, "webhook_id")?),
        status,
        attempt_count: count(row, "attempt_count")?,
        next_attempt_at: if status == DeliveryStatus::Pending {
            opt_timestamp(row, "next_attempt_at")?
        } else {
            None
        },
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
        last_attempt,
    })
}

/// The columns [`attempt`] reads, in a `SELECT` from `attempts`.
pub(super) const ATTEMPT_COLUMNS: &str =
    "number, started_at, duration_ms, status_code, failure, error, response_excerpt";

/// An attempt from a row holding [`ATTEMPT_COLUMNS`].
pub(super) fn attempt(row: &SqliteRow) -> Result<Attempt> {
    let failure = get::<Option<&str>>(row, "failure")?
        .map(str::parse::<FailureKind>)
        .transpose()
        .map_err(|err| invalid("failure", err))?;
    let status_code = get::<Option<i64>>(row, "status_code")?
        .map(u16::try_from)
        .transpose()
        .map_err(|err| invalid("status_code", err))?;
    Ok(Attempt {
        number: count(row, "number")?,
        started_at: timestamp(row, "started_at")?,
        duration_ms: u64::try_from(get::<i64>(row, "duration_ms")?)
            .map_err(|err| invalid("duration_ms", err))?,
        status_code,
        failure,
        error: get(row, "error")?,
        response_excerpt: get(row, "response_excerpt")?,
    })
}

/// An API token from a row of `api_tokens`.
pub(super) fn token(row: &SqliteRow) -> Result<ApiToken> {
    let hash: [u8; 32] = get::<&[u8]>(row, "hash")?
        .try_into()
        .map_err(|_| invalid("hash", "not 32 bytes"))?;
    let role = Role::new(
        get(row, "role")?,
        get(row, "tenant_id")?,
        get(row, "project_id")?,
    )
    .map_err(|err| invalid("role", err))?;
    Ok(ApiToken {
        id: TokenId::from_uuid(uuid(row, "id")?),
        hash: TokenHash(hash),
        role,
        label: get(row, "label")?,
        created_at: timestamp(row, "created_at")?,
    })
}

/// Splits `0..len` into consecutive ranges of at most `max` items: the batches of a statement
/// that takes many rows.
pub(super) fn batches(len: usize, max: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len)
        .step_by(max.max(1))
        .map(move |start| start..(start + max.max(1)).min(len))
}

/// How many `VALUES` rows a statement for `n` items has: the next power of two, so that a
/// handful of statement shapes serve every batch size (each stays prepared in the statement
/// cache) and a batch still takes one statement. The rows past `n` are all NULL and match
/// nothing.
pub(super) fn padded(n: usize) -> usize {
    n.next_power_of_two()
}

/// `n` copies of a row of placeholders (`(?, ?)`), comma-separated: the rows of a `VALUES`.
pub(super) fn value_rows(row: &str, n: usize) -> String {
    let mut out = String::with_capacity(n * (row.len() + 2));
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(row);
    }
    out
}

/// `?, ?, ...` with `n` placeholders.
pub(super) fn placeholders(n: usize) -> String {
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}

/// The millisecond value of a duration in an INTEGER column (saturating).
pub(super) fn millis_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_everything_in_few_shapes() {
        assert_eq!(
            batches(600, 256).collect::<Vec<_>>(),
            vec![0..256, 256..512, 512..600]
        );
        assert_eq!(batches(0, 256).count(), 0);
        assert_eq!(
            (padded(1), padded(3), padded(233), padded(256)),
            (1, 4, 256, 256)
        );
        assert_eq!(value_rows("(?, ?)", 2), "(?, ?), (?, ?)");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
