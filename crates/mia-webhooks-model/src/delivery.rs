//! Deliveries (one event to one webhook) and their attempts (one HTTP try each).

use std::fmt;
use std::str::FromStr;

use crate::error::quoted;
use crate::{DeliveryId, EventId, EventName, Timestamp, ValidationError, WebhookId};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A worker holds it and an attempt is under way.
    Delivering,
    /// A 2xx answer was received.
    Succeeded,
    /// Attempts are exhausted (or the receiver answered 410 Gone).
    Failed,
    /// Its webhook was deleted or disabled before it succeeded.
    Cancelled,
}

impl DeliveryStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivering,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the delivery is over: succeeded, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Succeeded | DeliveryStatus::Failed | DeliveryStatus::Cancelled
        )
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::invalid(
                    "status",
                    format!(
                        "status {} is not one of pending, delivering, succeeded, failed, cancelled",
                        quoted(s)
                    ),
                )
            })
    }
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The receiver answered with a status outside 2xx (and not a redirect).
    HttpStatus,
    /// No answer within the attempt timeout (or the connect timeout).
    Timeout,
    /// The connection was refused or reset.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (untrusted certificate, wrong name, ...).
    Tls,
    /// The address guard refused the target's or the proxy's address; nothing was sent.
    BlockedAddress,
    /// The receiver answered with a redirect, which is not followed.
    Redirect,
    /// The response body was larger than the read limit. Attempts recorded by versions before
    /// 0.1 (2026-11-29) may carry it; the sender now reads up to the limit and lets the status
    /// decide.
    BodyTooLarge,
    /// The proxy refused or failed the request.
    Proxy,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 10] = [
        FailureKind::HttpStatus,
        FailureKind::Timeout,
        FailureKind::Connect,
        FailureKind::Dns,
        FailureKind::Tls,
        FailureKind::BlockedAddress,
        FailureKind::Redirect,
        FailureKind::BodyTooLarge,
        FailureKind::Proxy,
        FailureKind::Other,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::HttpStatus => "http_status",
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Dns => "dns",
            FailureKind::Tls => "tls",
            FailureKind::BlockedAddress => "blocked_address",
            FailureKind::Redirect => "redirect",
            FailureKind::BodyTooLarge => "body_too_large",
            FailureKind::Proxy => "proxy",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                ValidationError::invalid("errorKind", format!("unknown error kind {}", quoted(s)))
            })
    }
}

/// One HTTP try of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first try.
    pub number: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The response status, when a response came.
    pub status_code: Option<u16>,
    /// Why it failed; `None` on success.
    pub failure: Option<FailureKind>,
    /// What happened, in words a webhook owner understands; `None` on success.
    pub error: Option<String>,
    /// The first 4 KiB of the response body (lossy UTF-8).
    pub response_excerpt: Option<String>,
}

impl Attempt {
    /// Whether the attempt succeeded (2xx).
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// One event to one webhook, with its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id, sent as `X-Mia-Delivery`.
    pub id: DeliveryId,
    /// The event.
    pub event_id: EventId,
    /// The event's name.
    pub event_name: EventName,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// How many attempts were made.
    pub attempt_count: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The latest attempt, if any.
    pub last_attempt: Option<Attempt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>().unwrap(), status);
        }
        for kind in FailureKind::ALL {
            assert_eq!(kind.as_str().parse::<FailureKind>().unwrap(), kind);
        }
        assert_eq!(
            "done".parse::<DeliveryStatus>().unwrap_err().field(),
            "status"
        );
    }

    #[test]
    fn final_statuses() {
        let finals: Vec<_> = DeliveryStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                DeliveryStatus::Succeeded,
                DeliveryStatus::Failed,
                DeliveryStatus::Cancelled
            ]
        );
    }
}
