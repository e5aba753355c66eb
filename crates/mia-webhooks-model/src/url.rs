//! Validated URLs: a webhook's target and its proxy.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::ValidationError;

/// The longest target URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Where a webhook's POSTs go: an absolute `http` or `https` URL with a host, at most 2048 bytes,
/// without a fragment or credentials.
///
/// Whether the host may be reached (loopback, private ranges, ...) is the delivery's address
/// guard's call, made on the addresses actually dialled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl(Url);

impl TargetUrl {
    /// Validates a target URL; errors name the field `targetUrl`.
    pub fn new(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "targetUrl";
        let url = parse_absolute(FIELD, input)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ValidationError::invalid(
                FIELD,
                format!("targetUrl must use http or https, not {}", url.scheme()),
            ));
        }
        require_host(FIELD, &url)?;
        if url.fragment().is_some() {
            return Err(ValidationError::invalid(
                FIELD,
                "targetUrl must not have a fragment (#...)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ValidationError::invalid(
                FIELD,
                "targetUrl must not contain credentials; receivers authenticate requests with \
                 the X-Mia-Signature header",
            ));
        }
        if url.as_str().len() > MAX_URL_LEN {
            return Err(too_long(FIELD, url.as_str().len()));
        }
        Ok(TargetUrl(url))
    }

    /// The URL, normalized.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetUrl {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A proxy that carries every request of a webhook: `http`, `https` or `socks5` (also
/// `socks5h`, which resolves names at the proxy), with a host and an optional port and
/// credentials.
///
/// Credentials are secret: [`ProxyUrl::redacted`] is what responses and logs show.
/// [`ProxyUrl::holds_mask`] tells a shown URL sent back (user or password `***`), which webhook
/// input refuses; `new` itself accepts it, so rows stored before that rule still read.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl(Url);

/// What shown proxy URLs carry instead of their credentials.
const MASK: &str = "***";

impl ProxyUrl {
    /// Validates a proxy URL; errors name the field `proxy.url`.
    pub fn new(input: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "proxy.url";
        let url = parse_absolute(FIELD, input)?;
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(ValidationError::invalid(
                FIELD,
                format!(
                    "proxy.url must use http, https or socks5, not {}",
                    url.scheme()
                ),
            ));
        }
        require_host(FIELD, &url)?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(ValidationError::invalid(
                FIELD,
                "proxy.url must be only a scheme, host and port (no path, query or fragment)",
            ));
        }
        if url.as_str().len() > MAX_URL_LEN {
            return Err(too_long(FIELD, url.as_str().len()));
        }
        Ok(ProxyUrl(url))
    }

    /// Whether the user or the password is the mask of shown URLs (`***`): a shown URL sent
    /// back, whose credentials would be replaced by the mask if stored.
    pub fn holds_mask(&self) -> bool {
        self.0.username() == MASK || self.0.password() == Some(MASK)
    }

    /// The full URL, credentials included: for the HTTP client only.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL, credentials included.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL with its credentials (user and password: proxies often take a token as the
    /// user) replaced by `***`: what responses and logs show.
    pub fn redacted(&self) -> String {
        if self.0.username().is_empty() && self.0.password().is_none() {
            return self.0.as_str().to_owned();
        }
        let mut url = self.0.clone();
        // Neither can fail on a URL with a host, which `new` requires.
        let _ = url.set_password(None);
        let _ = url.set_username(MASK);
        url.into()
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProxyUrl").field(&self.redacted()).finish()
    }
}

impl FromStr for ProxyUrl {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

fn parse_absolute(field: &'static str, input: &str) -> Result<Url, ValidationError> {
    if input.is_empty() {
        return Err(ValidationError::missing(field));
    }
    if input.len() > MAX_URL_LEN {
        return Err(too_long(field, input.len()));
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::invalid(
            field,
            format!("{field} must not contain whitespace or control characters (found {c:?})"),
        ));
    }
    let url = Url::parse(input).map_err(|e| {
        let problem = match e {
            url::ParseError::RelativeUrlWithoutBase => {
                "it is not absolute (it needs a scheme such as https://)".to_owned()
            }
            other => other.to_string(),
        };
        ValidationError::invalid(field, format!("{field} is not a valid URL: {problem}"))
    })?;
    Ok(url)
}

fn require_host(field: &'static str, url: &Url) -> Result<(), ValidationError> {
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(ValidationError::invalid(
            field,
            format!("{field} must name a host"),
        )),
    }
}

fn too_long(field: &'static str, len: usize) -> ValidationError {
    ValidationError::invalid(
        field,
        format!("{field} is {len} bytes long; the limit is {MAX_URL_LEN}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_target(input: &str, expected: Result<&str, &str>) {
        match (TargetUrl::new(input), expected) {
            (Ok(url), Ok(normalized)) => assert_eq!(url.as_str(), normalized, "{input:?}"),
            (Err(err), Err(needle)) => {
                assert_eq!(err.field(), "targetUrl", "{input:?}");
                assert!(
                    err.message().contains(needle),
                    "{input:?}: {}",
                    err.message()
                );
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn target_urls() {
        check_target("https://example.com/hook", Ok("https://example.com/hook"));
        check_target("HTTP://Example.COM", Ok("http://example.com/"));
        check_target(
            "http://127.0.0.1:8080/x?y=1",
            Ok("http://127.0.0.1:8080/x?y=1"),
        );
        check_target("https://[::1]/", Ok("https://[::1]/"));
        check_target("", Err("required"));
        check_target("example.com/hook", Err("not absolute"));
        check_target("/hook", Err("not absolute"));
        check_target("ftp://example.com/", Err("http or https"));
        check_target("javascript:alert(1)", Err("http or https"));
        check_target("file:///etc/passwd", Err("http or https"));
        check_target("https://example.com/#frag", Err("fragment"));
        check_target("https://user:pw@example.com/", Err("credentials"));
        check_target("https://exa mple.com/", Err("whitespace"));
        check_target(" https://example.com/", Err("whitespace"));
        check_target("https://example.com:99999/", Err("not a valid URL"));
        check_target("http://", Err("host"));
        check_target(
            &format!("https://example.com/{}", "a".repeat(2040)),
            Err("limit is 2048"),
        );
    }

    #[test]
    fn the_length_limit_is_2048_bytes_exactly() {
        let prefix = "https://example.com/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_URL_LEN - prefix.len()));
        assert_eq!(TargetUrl::new(&at_limit).unwrap().as_str(), at_limit);
        let over = format!("{at_limit}a");
        let err = TargetUrl::new(&over).unwrap_err();
        assert_eq!(err.field(), "targetUrl");
        assert!(
            err.message().contains("2049 bytes long"),
            "{}",
            err.message()
        );
        // A URL that grows past the limit when normalized is refused too.
        let grows = format!("{prefix}{}", "é".repeat((MAX_URL_LEN - prefix.len()) / 2));
        assert!(grows.len() <= MAX_URL_LEN);
        let err = TargetUrl::new(&grows).unwrap_err();
        assert_eq!(err.field(), "targetUrl");
        assert!(err.message().contains("limit is 2048"), "{}", err.message());
    }

    #[test]
    fn proxy_urls() {
        for ok in [
            "http://proxy:3128",
            "https://proxy.example/",
            "socks5://127.0.0.1:1080",
            "socks5h://p:1",
        ] {
            assert!(ProxyUrl::new(ok).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("", "required"),
            ("proxy:3128", "http, https or socks5"),
            ("ftp://proxy", "http, https or socks5"),
            ("http://proxy/path", "no path"),
            ("http://proxy/?q", "no path"),
            ("proxy.example", "not absolute"),
        ] {
            let err = ProxyUrl::new(bad).unwrap_err();
            assert_eq!(err.field(), "proxy.url", "{bad}");
            assert!(err.message().contains(needle), "{bad}: {}", err.message());
        }
    }

    #[test]
    fn proxy_credentials_are_redacted() {
        let proxy = ProxyUrl::new("http://user:hunter2@proxy:3128").unwrap();
        assert_eq!(proxy.redacted(), "http://***@proxy:3128/");
        assert!(!format!("{proxy:?}").contains("hunter2"));
        assert!(proxy.expose().contains("hunter2"));
        // A token as the user is a credential too.
        let proxy = ProxyUrl::new("http://tok3n@proxy:3128").unwrap();
        assert_eq!(proxy.redacted(), "http://***@proxy:3128/");
        assert!(!format!("{proxy:?}").contains("tok3n"));
        let plain = ProxyUrl::new("socks5://proxy:1080").unwrap();
        assert_eq!(plain.redacted(), "socks5://proxy:1080");
    }

    #[test]
    fn a_shown_proxy_url_is_told_apart_and_still_parses() {
        for shown in ["http://***@proxy:3128/", "http://user:***@proxy:3128"] {
            assert!(ProxyUrl::new(shown).unwrap().holds_mask(), "{shown}");
        }
        for typed in [
            "http://user:pw@proxy:3128",
            "http://proxy:3128",
            "socks5://a:b@p:1",
        ] {
            assert!(!ProxyUrl::new(typed).unwrap().holds_mask(), "{typed}");
        }
    }
}
