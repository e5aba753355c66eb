//! The REST JSON: the server's own request and response types, converted by hand from the model
//! so that what is on the wire changes only here, on purpose.

use mia_webhooks_model::{
    Attempt, CaCertificate, Delivery, EventDefinition, ProxyUrl, Scope, Timestamp, Webhook,
    WebhookInput, WebhookPatchInput,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Formats a timestamp as RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(ts: Timestamp) -> String {
    let nanos = i128::from(ts.as_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.as_millis().to_string())
}

/// Where a webhook is installed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScopeBody {
    /// `instance`, `company` or `project`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The company, for company and project scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    /// The project, for project scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<String>,
}

impl From<&Scope> for ScopeBody {
    fn from(scope: &Scope) -> Self {
        ScopeBody {
            kind: scope.kind(),
            tenant_id: scope.tenant_id().map(|t| t.as_str().to_owned()),
            project_id: scope.project_id().map(|p| p.as_str().to_owned()),
        }
    }
}

/// A proxy, as shown: credentials are replaced by `***`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProxyBody {
    /// The proxy URL with its credentials (user and password) replaced by `***`.
    url: String,
}

/// A webhook as the API shows it. The secret is never shown: `secretSet` says one is set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookBody {
    id: String,
    scope: ScopeBody,
    target_url: String,
    events: Vec<String>,
    /// Always true: a webhook cannot exist without a secret, and the secret is write-only.
    secret_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<ProxyBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&Webhook> for WebhookBody {
    fn from(w: &Webhook) -> Self {
        WebhookBody {
            id: w.id.to_string(),
            scope: ScopeBody::from(&w.scope),
            target_url: w.target_url.as_str().to_owned(),
            events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
            secret_set: true,
            ca_certificate: w
                .ca_certificate
                .as_ref()
                .map(|c: &CaCertificate| c.as_pem().to_owned()),
            proxy: w.proxy.as_ref().map(|p| ProxyBody { url: p.redacted() }),
            description: w.description.clone(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

/// A page of webhooks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookPage {
    pub(crate) items: Vec<WebhookBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

/// The proxy of a webhook, as sent. (No `Debug`, here and in the two requests below: they
/// hold credentials and the secret as sent.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyRequest {
    /// `http://`, `https://` or `socks5://` URL, with optional credentials.
    url: Option<String>,
}

/// Body of `POST .../webhooks`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateWebhookRequest {
    /// Absolute http or https URL, at most 2048 bytes, no fragment.
    target_url: Option<String>,
    /// 1 to 1024 bytes. Write-only.
    secret: Option<String>,
    /// Event names from the catalogue; at least one.
    events: Option<Vec<String>>,
    /// PEM with one or more certificates, or base64 of such PEM.
    ca_certificate: Option<String>,
    /// A proxy for all requests of this webhook.
    proxy: Option<ProxyRequest>,
    /// Free text.
    description: Option<String>,
    /// Default true.
    enabled: Option<bool>,
}

impl From<CreateWebhookRequest> for WebhookInput {
    fn from(r: CreateWebhookRequest) -> Self {
        WebhookInput {
            target_url: r.target_url,
            secret: r.secret,
            events: r.events,
            ca_certificate: r.ca_certificate,
            proxy_url: r.proxy.and_then(|p| p.url),
            description: r.description,
            enabled: r.enabled,
        }
    }
}

/// Body of `PATCH /api/webhooks/{id}`: fields left out stay as they are; `null` clears an
/// optional field; the secret is replaced only when given.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PatchWebhookRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    target_url: Option<Option<String>>,
    /// Replaced only when given and not empty.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    ca_certificate: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ProxyRequest>)]
    proxy: Option<Option<ProxyRequest>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    enabled: Option<Option<bool>>,
}

impl PatchWebhookRequest {
    /// `null` for a field that cannot be cleared is refused, not read as "leave it".
    pub(crate) fn refuse_nulls(&self) -> Result<(), crate::error::ApiError> {
        for (field, null) in [
            ("targetUrl", matches!(self.target_url, Some(None))),
            ("secret", matches!(self.secret, Some(None))),
            ("events", matches!(self.events, Some(None))),
            ("enabled", matches!(self.enabled, Some(None))),
        ] {
            if null {
                return Err(crate::error::ApiError::bad_field(
                    "invalid_field",
                    field,
                    format!("{field} cannot be cleared; leave it out to keep it"),
                ));
            }
        }
        Ok(())
    }

    /// Leaves the proxy out of the edit when it is sent back exactly as shown (credentials
    /// masked): a form that edits other fields keeps the stored credentials.
    pub(crate) fn keep_shown_proxy(&mut self, current: Option<&ProxyUrl>) {
        let sent = self
            .proxy
            .as_ref()
            .and_then(|p| p.as_ref())
            .and_then(|p| p.url.as_deref());
        if sent.is_some_and(|sent| current.is_some_and(|c| c.redacted() == sent)) {
            self.proxy = None;
        }
    }
}

impl From<PatchWebhookRequest> for WebhookPatchInput {
    fn from(r: PatchWebhookRequest) -> Self {
        // Nulls of fields that cannot be cleared were refused before (`refuse_nulls`).
        WebhookPatchInput {
            target_url: r.target_url.flatten(),
            secret: r.secret.flatten(),
            events: r.events.flatten(),
            ca_certificate: r.ca_certificate,
            proxy_url: r.proxy.map(|p| p.and_then(|p| p.url)),
            description: r.description,
            enabled: r.enabled.flatten(),
        }
    }
}

/// `Some(None)` for an explicit `null`, `None` (by `default`) for an absent field.
fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Answer of `POST /api/events` and of "send test event".
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IngestBody {
    pub(crate) event_id: String,
    /// How many deliveries were queued.
    pub(crate) deliveries: usize,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptBody {
    number: u32,
    started_at: String,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    /// `timeout`, `connect`, `dns`, `tls`, `blocked_address`, `redirect`, `body_too_large`,
    /// `http_status`, `proxy` or `other`; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_excerpt: Option<String>,
}

impl From<&Attempt> for AttemptBody {
    fn from(a: &Attempt) -> Self {
        AttemptBody {
            number: a.number,
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error_kind: a.failure.map(|f| f.as_str()),
            error: a.error.clone(),
            response_excerpt: a.response_excerpt.clone(),
        }
    }
}

/// A delivery: one event to one webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryBody {
    id: String,
    event_id: String,
    event_name: String,
    webhook_id: String,
    /// `pending`, `delivering`, `succeeded`, `failed` or `cancelled`.
    status: &'static str,
    attempt_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt: Option<AttemptBody>,
}

impl From<&Delivery> for DeliveryBody {
    fn from(d: &Delivery) -> Self {
        DeliveryBody {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_name: d.event_name.as_str().to_owned(),
            webhook_id: d.webhook_id.to_string(),
            status: d.status.as_str(),
            attempt_count: d.attempt_count,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            last_attempt: d.last_attempt.as_ref().map(AttemptBody::from),
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryPage {
    pub(crate) items: Vec<DeliveryBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

/// One delivery with all its attempts and the event it carries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryDetailBody {
    #[serde(flatten)]
    pub(crate) delivery: DeliveryBody,
    pub(crate) attempts: Vec<AttemptBody>,
    /// The exact bytes sent, as text.
    pub(crate) payload: String,
}

/// One event of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CatalogEventBody {
    name: String,
    summary: String,
    built_in: bool,
    payload: Vec<CatalogFieldBody>,
}

/// One payload field of a catalogued event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CatalogFieldBody {
    name: String,
    #[serde(rename = "type")]
    field_type: &'static str,
    required: bool,
    description: String,
}

impl From<&EventDefinition> for CatalogEventBody {
    fn from(e: &EventDefinition) -> Self {
        CatalogEventBody {
            name: e.name.as_str().to_owned(),
            summary: e.summary.clone(),
            built_in: e.built_in,
            payload: e
                .payload
                .iter()
                .map(|f| CatalogFieldBody {
                    name: f.name.clone(),
                    field_type: f.field_type.as_str(),
                    required: f.required,
                    description: f.description.clone(),
                })
                .collect(),
        }
    }
}

/// The event catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CatalogBody {
    pub(crate) events: Vec<CatalogEventBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_764_374_400_123)),
            "2025-11-29T00:00:00.123Z"
        );
        assert_eq!(rfc3339(Timestamp::EPOCH), "1970-01-01T00:00:00Z");
    }
}
