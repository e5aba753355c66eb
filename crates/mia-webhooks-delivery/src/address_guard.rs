//! The address guard: no delivery may reach loopback, private, link-local or other internal
//! addresses (server-side request forgery) unless an operator allows the range.
//!
//! The guard is applied where the address is decided, so that the address checked is the
//! address dialled:
//! - IP literals in a target or proxy URL are checked before the request (the HTTP client does
//!   not resolve literals), and
//! - every name the HTTP client resolves (the target's, the proxy's, a socks5 target's) goes
//!   through [`GuardedResolver`], which drops blocked addresses from the answer and fails when
//!   none is left. There is no second lookup between the check and the connection, so a DNS
//!   answer that changes (DNS rebinding) cannot slip a blocked address through.
//!
//! When a webhook uses an `http`, `https` or `socks5h` proxy, the proxy resolves the target's
//! name on its own network; the guard then checks the proxy's address and the target's IP
//! literals.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The kind of range a blocked address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockedRange {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.
    Private,
    /// 169.254.0.0/16 (cloud metadata services live there), fe80::/10.
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedAddressSpace,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18.0.0/15, network benchmarking.
    Benchmarking,
    /// 0.0.0.0/8, 192.0.0.0/24, 240.0.0.0/4, 100::/64, fec0::/10 and other reserved ranges.
    Reserved,
    /// fc00::/7, IPv6 unique local addresses.
    UniqueLocal,
}

impl BlockedRange {
    /// A short description, e.g. `"a loopback address"`.
    pub fn describe(self) -> &'static str {
        match self {
            BlockedRange::Loopback => "a loopback address",
            BlockedRange::Private => "a private network address",
            BlockedRange::LinkLocal => "a link-local address",
            BlockedRange::SharedAddressSpace => "a carrier-grade NAT address",
            BlockedRange::Multicast => "a multicast address",
            BlockedRange::Unspecified => "the unspecified address",
            BlockedRange::Broadcast => "the broadcast address",
            BlockedRange::Documentation => "a documentation address",
            BlockedRange::Benchmarking => "a benchmarking address",
            BlockedRange::Reserved => "a reserved address",
            BlockedRange::UniqueLocal => "an IPv6 unique local address",
        }
    }
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The guard refused an address. Its `Display` is the text recorded on the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedAddress {
    ip: IpAddr,
    range: BlockedRange,
    embedded: Option<Ipv4Addr>,
    host: Option<String>,
}

impl BlockedAddress {
    /// The refused address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Why it is refused.
    pub fn range(&self) -> BlockedRange {
        self.range
    }

    /// The name that resolved to the address, when it came from a lookup.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host} resolves to {}", self.ip)?;
        } else {
            write!(f, "{}", self.ip)?;
        }
        if let Some(v4) = self.embedded {
            write!(f, " (an IPv6 form of {v4})")?;
        }
        write!(
            f,
            ", {}; the address guard blocks deliveries to internal networks unless an operator \
             lists the range in allowed_cidrs",
            self.range
        )
    }
}

impl std::error::Error for BlockedAddress {}

/// A name could not be resolved. Its `Display` is the text recorded on the attempt.
#[derive(Debug)]
pub struct ResolveError {
    host: String,
    source: Option<std::io::Error>,
}

impl ResolveError {
    /// The name that did not resolve.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(err) => write!(
                f,
                "the host name {} could not be resolved: {err}",
                self.host
            ),
            None => write!(f, "the host name {} resolved to no address", self.host),
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Decides which IP addresses deliveries may connect to.
///
/// ```
/// use mia_webhooks_delivery::{AddressGuard, BlockedRange};
///
/// let guard = AddressGuard::new(Vec::new());
/// let err = guard.check_ip("169.254.169.254".parse()?).unwrap_err();
/// assert_eq!(err.range(), BlockedRange::LinkLocal);
/// assert!(guard.check_ip("93.184.215.14".parse()?).is_ok());
///
/// // Operators open ranges explicitly; tests open loopback that way.
/// let guard = AddressGuard::new(vec!["127.0.0.0/8".parse()?]);
/// assert!(guard.check_ip("127.0.0.1".parse()?).is_ok());
/// assert!(guard.check_ip("::ffff:127.0.0.1".parse()?).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed: Arc<[IpNet]>,
}

impl AddressGuard {
    /// A guard that blocks every internal range except those in `allowed`.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        AddressGuard {
            allowed: allowed.into(),
        }
    }

    /// The ranges let through.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether a connection to `ip` may be made.
    ///
    /// IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
    /// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are judged by the IPv4
    /// address they carry, and an allowed IPv4 range lets its IPv6 forms through too.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        if self.is_allowed(ip) {
            return Ok(());
        }
        let (range, embedded) = match ip {
            IpAddr::V4(v4) => (blocked_v4(v4), None),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => (blocked_v4(v4), Some(v4)),
                None => (blocked_v6(v6), None),
            },
        };
        let Some(range) = range else { return Ok(()) };
        if embedded.is_some_and(|v4| self.is_allowed(IpAddr::V4(v4))) {
            return Ok(());
        }
        Err(BlockedAddress {
            ip,
            range,
            embedded,
            host: None,
        })
    }

    /// Checks the host of `url` when it is an IP literal (in any form the URL parser accepts:
    /// `http://2130706433/` and `http://0x7f000001/` are `127.0.0.1`). Names pass here; their
    /// addresses are checked by [`GuardedResolver`] when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), BlockedAddress> {
        match url.host() {
            Some(Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            Some(Host::Domain(domain)) => match parse_ip_literal(domain) {
                // Non-special schemes (socks5) leave IP literals as opaque domains.
                Some(ip) => self.check_ip(ip),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// A resolver for the HTTP client that applies this guard to every answer.
    pub fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            guard: self.clone(),
        }
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip))
    }
}

/// A `reqwest` DNS resolver that resolves with the system resolver and keeps only the addresses
/// the [`AddressGuard`] allows; when none is left it fails with [`BlockedAddress`], so nothing
/// is dialled.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: AddressGuard,
}

impl GuardedResolver {
    /// Resolves `host` and applies the guard: the addresses that may be dialled.
    pub async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(ip) = parse_ip_literal(host) {
            self.guard.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, 0)]);
        }
        let resolved = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|err| ResolveError {
                host: host.to_owned(),
                source: Some(err),
            })?;
        let mut allowed = Vec::new();
        let mut blocked = None;
        for addr in resolved {
            match self.guard.check_ip(addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(err) => {
                    blocked.get_or_insert(err);
                }
            }
        }
        if allowed.is_empty() {
            return Err(match blocked {
                Some(err) => Box::new(err.with_host(host)),
                None => Box::new(ResolveError {
                    host: host.to_owned(),
                    source: None,
                }),
            });
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_host(&host).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// An IP literal as a host: `127.0.0.1`, `::1` or `[::1]`.
fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let [_, _, _, _, _, _, _, _, _, _, _, _, a, b, c, d] = v6.octets();
    let low = Ipv4Addr::new(a, b, c, d);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are judged as IPv6.
        [0, 0, 0, 0, 0, 0, _, _] if !matches!(v6.to_bits(), 0 | 1) => Some(low),
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 2002:aabb:ccdd::/48.
        [0x2002, hi, lo, ..] => {
            let ([a, b], [c, d]) = (hi.to_be_bytes(), lo.to_be_bytes());
            Some(Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    let [a, b, c, _] = ip.octets();
    let range = match (a, b, c) {
        _ if ip.is_unspecified() => BlockedRange::Unspecified,
        _ if ip.is_broadcast() => BlockedRange::Broadcast,
        (0, _, _) => BlockedRange::Reserved,
        (10, _, _) => BlockedRange::Private,
        (100, 64..=127, _) => BlockedRange::SharedAddressSpace,
        (127, _, _) => BlockedRange::Loopback,
        (169, 254, _) => BlockedRange::LinkLocal,
        (172, 16..=31, _) => BlockedRange::Private,
        (192, 0, 0) | (192, 88, 99) => BlockedRange::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => BlockedRange::Documentation,
        (192, 168, _) => BlockedRange::Private,
        (198, 18..=19, _) => BlockedRange::Benchmarking,
        (224..=239, _, _) => BlockedRange::Multicast,
        (240..=255, _, _) => BlockedRange::Reserved,
        _ => return None,
    };
    Some(range)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    let s = ip.segments();
    let range = match s {
        _ if ip.is_unspecified() => BlockedRange::Unspecified,
        _ if ip.is_loopback() => BlockedRange::Loopback,
        // Local-use NAT64 64:ff9b:1::/48 (the embedded address is not recoverable in general).
        [0x64, 0xff9b, 1, ..] => BlockedRange::Reserved,
        // Discard-only 100::/64.
        [0x100, 0, 0, 0, ..] => BlockedRange::Reserved,
        [0x2001, 0xdb8, ..] => BlockedRange::Documentation,
        [first, ..] if first & 0xfff0 == 0x3ff0 => BlockedRange::Documentation,
        [first, ..] if first & 0xfe00 == 0xfc00 => BlockedRange::UniqueLocal,
        [first, ..] if first & 0xffc0 == 0xfe80 => BlockedRange::LinkLocal,
        // Site-local (deprecated) fec0::/10.
        [first, ..] if first & 0xffc0 == 0xfec0 => BlockedRange::Reserved,
        [first, ..] if first & 0xff00 == 0xff00 => BlockedRange::Multicast,
        _ => return None,
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(guard: &AddressGuard, ip: &str, expected: Option<BlockedRange>) {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(
            guard.check_ip(ip).err().map(|e| e.range()),
            expected,
            "{ip}"
        );
    }

    #[test]
    fn internal_ranges_are_blocked_by_default() {
        use BlockedRange::*;
        let guard = AddressGuard::default();
        let cases = [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("169.254.169.254", Some(LinkLocal)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.128.0.1", None),
            ("224.0.0.1", Some(Multicast)),
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.7", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::169.254.169.254", Some(LinkLocal)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:0808:0808::1", None),
            ("fd00::1", Some(UniqueLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("fec0::1", Some(Reserved)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("2606:4700:4700::1111", None),
        ];
        for (ip, expected) in cases {
            check(&guard, ip, expected);
        }
    }

    #[test]
    fn allowed_ranges_pass_in_all_their_forms() {
        let guard = AddressGuard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::",
        ] {
            check(&guard, ip, None);
        }
        check(&guard, "10.0.0.1", Some(BlockedRange::Private));
        check(&guard, "::ffff:10.0.0.1", Some(BlockedRange::Private));
    }

    #[test]
    fn url_literals_are_checked_in_every_form_the_parser_accepts() {
        let guard = AddressGuard::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "socks5://127.0.0.1:1080",
            "socks5://[::1]:1080",
        ] {
            let url = Url::parse(url).unwrap();
            let err = guard.check_url(&url).unwrap_err();
            assert_eq!(err.range(), BlockedRange::Loopback, "{url}");
        }
        assert!(
            guard
                .check_url(&Url::parse("https://example.com/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn the_message_says_what_and_how_to_allow_it() {
        let err = AddressGuard::default()
            .check_ip("::ffff:10.0.0.1".parse().unwrap())
            .unwrap_err();
        let text = err.with_host("internal.example").to_string();
        assert!(
            text.contains("internal.example resolves to ::ffff:10.0.0.1"),
            "{text}"
        );
        assert!(text.contains("IPv6 form of 10.0.0.1"), "{text}");
        assert!(
            text.contains("private network") && text.contains("allowed_cidrs"),
            "{text}"
        );
    }
}
