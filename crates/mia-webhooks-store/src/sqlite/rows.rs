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

/// The largest number of ids in one `IN (...)` list or rows in one multi-row `INSERT`.
const MAX_CHUNK: usize = 64;

/// Splits `0..len` into ranges whose lengths are powers of two of at most [`MAX_CHUNK`], so the
/// statements built for them come in a handful of shapes and stay in the statement cache.
pub(super) fn chunks(len: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < len {
        let left = len - start;
        let size = if left >= MAX_CHUNK {
            MAX_CHUNK
        } else {
            1 << left.ilog2()
        };
        ranges.push(start..start + size);
        start += size;
    }
    ranges
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
    fn chunks_cover_everything_in_few_shapes() {
        for len in 0..300 {
            let ranges = chunks(len);
            assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), len);
            assert!(
                ranges
                    .iter()
                    .all(|r| r.len().is_power_of_two() && r.len() <= MAX_CHUNK)
            );
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        }
        assert_eq!(chunks(70), vec![0..64, 64..68, 68..70]);
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
