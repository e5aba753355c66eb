//! Turns what happened to an attempt into a [`FailureKind`] and a sentence a webhook owner
//! understands ("connection refused by 127.0.0.1:9", "the receiver answered 302 Found with
//! Location ...; redirects are not followed").
//!
//! Errors are classified by walking their source chain for the types that say what failed:
//! the address guard's [`BlockedAddress`], the resolver's [`ResolveError`], `rustls` errors,
//! and `std::io` error kinds.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use mia_webhooks_model::{FailureKind, ProxyUrl};
use reqwest::StatusCode;
use rustls::CertificateError;
use url::Url;

use crate::address_guard::{BlockedAddress, ResolveError};

/// What the classifier needs to know about the attempt besides its error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) target: &'a Url,
    pub(crate) proxy: Option<&'a ProxyUrl>,
    pub(crate) connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
}

impl Context<'_> {
    /// `host:port` of the target, as the owner wrote it.
    fn endpoint(&self) -> String {
        endpoint(self.target)
    }
}

fn endpoint(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A failure: its kind and what to tell the webhook's owner.
pub(crate) type Failure = (FailureKind, String);

/// Classifies a response status that is not a success.
pub(crate) fn status_failure(status: StatusCode, location: Option<&str>) -> Failure {
    let status_text = match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    if status.is_redirection() {
        let location = match location {
            Some(location) => format!(" with Location {}", truncate(location, 256)),
            None => String::new(),
        };
        return (
            FailureKind::Redirect,
            format!("the receiver answered {status_text}{location}; redirects are not followed"),
        );
    }
    (
        FailureKind::HttpStatus,
        format!("the receiver answered {status_text}"),
    )
}

/// Classifies a failure of the HTTP client (before or while reading the response).
pub(crate) fn error_failure(err: &reqwest::Error, ctx: &Context<'_>) -> Failure {
    let root: &(dyn StdError + 'static) = err;
    // Behind a proxy, the names resolved here are the proxy's, and the target's too for a
    // socks5 proxy (socks5h, http and https proxies resolve the target themselves).
    let is_target = |host: Option<&str>| match ctx.proxy {
        None => true,
        Some(proxy) => proxy.as_url().scheme() == "socks5" && host != proxy.as_url().host_str(),
    };
    if let Some(blocked) = find::<BlockedAddress>(root) {
        let what = if is_target(blocked.host()) {
            "the target"
        } else {
            "the proxy"
        };
        return (
            FailureKind::BlockedAddress,
            format!("refused before connecting to {what}: {blocked}"),
        );
    }
    if let Some(resolve) = find::<ResolveError>(root) {
        let kind = if is_target(Some(resolve.host())) {
            FailureKind::Dns
        } else {
            FailureKind::Proxy
        };
        return (kind, resolve.to_string());
    }
    if let Some(tls) = find::<rustls::Error>(root) {
        return (FailureKind::Tls, tls_message(tls, ctx));
    }
    if err.is_timeout() {
        return if err.is_connect() {
            let whom = match ctx.proxy {
                Some(proxy) => format!("the proxy {}", proxy.redacted()),
                None => ctx.endpoint(),
            };
            (
                FailureKind::Timeout,
                format!(
                    "could not connect to {whom} within {:?} (the connect timeout)",
                    ctx.connect_timeout
                ),
            )
        } else {
            (
                FailureKind::Timeout,
                format!(
                    "no complete answer from {} within {:?} (the attempt timeout)",
                    ctx.endpoint(),
                    ctx.attempt_timeout
                ),
            )
        };
    }
    let io_kind = find::<io::Error>(root).map(io::Error::kind);
    if let Some(proxy) = ctx.proxy {
        if err.is_connect() {
            let detail = match io_kind {
                Some(kind) => io_words(kind).unwrap_or_else(|| innermost(root)),
                None => innermost(root),
            };
            return (
                FailureKind::Proxy,
                format!(
                    "could not reach {} through the proxy {}: {detail}",
                    ctx.endpoint(),
                    proxy.redacted()
                ),
            );
        }
    }
    if let Some(words) = io_kind.and_then(io_words) {
        let text = match io_kind {
            Some(io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => {
                format!("{words} by {}", ctx.endpoint())
            }
            _ => format!("{words} ({})", ctx.endpoint()),
        };
        return (FailureKind::Connect, text);
    }
    if err.is_connect() {
        return (
            FailureKind::Connect,
            format!(
                "could not connect to {}: {}",
                ctx.endpoint(),
                innermost(root)
            ),
        );
    }
    let message = innermost(root);
    if message.contains("connection closed before message completed") {
        return (
            FailureKind::Connect,
            format!(
                "{} closed the connection without a complete answer",
                ctx.endpoint()
            ),
        );
    }
    (
        FailureKind::Other,
        format!("the request to {} failed: {message}", ctx.endpoint()),
    )
}

fn tls_message(err: &rustls::Error, ctx: &Context<'_>) -> String {
    let host = ctx.target.host_str().unwrap_or("?");
    let problem = match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the certificate is not trusted (is the webhook's CA certificate set?)".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the certificate is not valid for the name {host}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the certificate is not valid yet".to_owned()
            }
            CertificateError::Revoked => "the certificate is revoked".to_owned(),
            other => format!("the certificate was refused ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => format!("the receiver sent the alert {alert:?}"),
        other => other.to_string(),
    };
    format!("TLS handshake with {} failed: {problem}", ctx.endpoint())
}

/// The error of type `T` in `err`'s chain, looking inside `io::Error`s too (their `source`
/// skips the error they wrap).
fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            if let Some(found) = find::<T>(inner) {
                return Some(found);
            }
        }
        current = err.source();
    }
    None
}

/// The message of the deepest error in the chain: usually the most specific.
fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn io_words(kind: io::ErrorKind) -> Option<String> {
    let words = match kind {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::NotConnected => "not connected",
        io::ErrorKind::BrokenPipe => "the connection was closed while sending",
        io::ErrorKind::UnexpectedEof => "the connection was closed before the answer was complete",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        _ => return None,
    };
    Some(words.to_owned())
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_status(status: u16, location: Option<&str>, kind: FailureKind, text: &str) {
        let (got_kind, got_text) = status_failure(StatusCode::from_u16(status).unwrap(), location);
        assert_eq!(got_kind, kind, "{status}");
        assert_eq!(got_text, text, "{status}");
    }

    #[test]
    fn statuses() {
        check_status(
            500,
            None,
            FailureKind::HttpStatus,
            "the receiver answered 500 Internal Server Error",
        );
        check_status(
            410,
            None,
            FailureKind::HttpStatus,
            "the receiver answered 410 Gone",
        );
        check_status(
            599,
            None,
            FailureKind::HttpStatus,
            "the receiver answered 599",
        );
        check_status(
            302,
            Some("http://elsewhere.example/"),
            FailureKind::Redirect,
            "the receiver answered 302 Found with Location http://elsewhere.example/; redirects are not followed",
        );
        check_status(
            307,
            None,
            FailureKind::Redirect,
            "the receiver answered 307 Temporary Redirect; redirects are not followed",
        );
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }

    #[test]
    fn find_looks_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, inner);
        let found = find::<rustls::Error>(&io);
        assert!(matches!(
            found,
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
    }
}
