//! The address guard end to end: a table of addresses and URL forms refused by default, with
//! trap listeners on loopback that must accept no connection, then allowed through
//! `allowed_cidrs`.
//!
//! Forms that would reach a non-loopback address (10.0.0.1, 169.254.169.254, ...) are refused
//! before any connection in both phases: these tests never send traffic beyond loopback.

use mia_webhooks_delivery::{DeliveryConfig, Sender};
use mia_webhooks_model::{FailureKind, Timestamp};

use crate::support::{Trap, claimed, local_config, webhook, with_proxy};

/// Where a form leads once allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reach {
    /// The IPv4 trap.
    Trap4,
    /// The IPv6 trap.
    Trap6,
    /// Allowed by the guard, but nothing listens there (the connection itself fails).
    Nowhere,
    /// Still refused with 127.0.0.0/8 and ::1/128 allowed: not loopback.
    StillBlocked,
}

struct Case {
    target: String,
    proxy: Option<String>,
    reach: Reach,
}

fn cases(p4: u16, p6: u16) -> Vec<Case> {
    use Reach::*;
    let direct = |target: String, reach| Case {
        target,
        proxy: None,
        reach,
    };
    let proxied = |proxy: String, reach| Case {
        target: "http://localhost/hook".into(),
        proxy: Some(proxy),
        reach,
    };
    vec![
        direct(format!("http://127.0.0.1:{p4}/hook"), Trap4),
        direct(format!("http://2130706433:{p4}/hook"), Trap4),
        direct(format!("http://0x7f000001:{p4}/hook"), Trap4),
        direct(format!("http://0177.0.0.1:{p4}/hook"), Trap4),
        direct(format!("http://127.1:{p4}/hook"), Trap4),
        direct(format!("http://127.0.0.2:{p4}/hook"), Nowhere),
        direct(format!("https://127.0.0.1:{p4}/hook"), Trap4),
        direct(format!("http://[::1]:{p6}/hook"), Trap6),
        direct(format!("http://[::ffff:127.0.0.1]:{p4}/hook"), Trap4),
        direct(format!("http://[::ffff:7f00:1]:{p4}/hook"), Trap4),
        direct(format!("http://[::127.0.0.1]:{p4}/hook"), Nowhere),
        direct(format!("http://localhost:{p4}/hook"), Trap4),
        direct(format!("http://0.0.0.0:{p4}/hook"), StillBlocked),
        direct(format!("http://0:{p4}/hook"), StillBlocked),
        direct(format!("http://[::]:{p6}/hook"), StillBlocked),
        direct(
            "http://169.254.169.254/latest/meta-data/".into(),
            StillBlocked,
        ),
        direct("http://[::ffff:169.254.169.254]/".into(), StillBlocked),
        direct("http://100.64.0.1/".into(), StillBlocked),
        direct("http://10.0.0.1/".into(), StillBlocked),
        direct("http://172.16.0.1/".into(), StillBlocked),
        direct("http://192.168.1.1/".into(), StillBlocked),
        direct("http://[fd00::1]/".into(), StillBlocked),
        direct("http://[fe80::1]/".into(), StillBlocked),
        direct("http://224.0.0.1/".into(), StillBlocked),
        direct("http://255.255.255.255/".into(), StillBlocked),
        direct("http://192.0.2.1/".into(), StillBlocked),
        direct("http://198.18.0.1/".into(), StillBlocked),
        direct("http://[64:ff9b::a00:1]/".into(), StillBlocked),
        direct("http://[2002:a00:1::1]/".into(), StillBlocked),
        proxied(format!("http://127.0.0.1:{p4}"), Trap4),
        proxied(format!("http://localhost:{p4}"), Trap4),
        proxied(format!("socks5://127.0.0.1:{p4}"), Trap4),
        proxied(format!("http://[::1]:{p6}"), Trap6),
        proxied("http://10.0.0.1:3128".into(), StillBlocked),
    ]
}

fn hook(case: &Case) -> mia_webhooks_model::Webhook {
    let hook = webhook(&case.target);
    match &case.proxy {
        Some(proxy) => with_proxy(hook, proxy),
        None => hook,
    }
}

#[tokio::test]
async fn internal_addresses_are_refused_by_default_without_any_connection() {
    let (trap4, trap6) = (Trap::start("127.0.0.1").await, Trap::start("[::1]").await);
    let sender = Sender::new(&DeliveryConfig {
        allowed_cidrs: Vec::new(),
        ..local_config()
    })
    .unwrap();
    let cases = cases(trap4.port(), trap6.port());
    assert!(cases.len() >= 20);
    for case in &cases {
        let report = sender
            .send(&claimed(&hook(case), 1), Timestamp::now())
            .await;
        let attempt = report.attempt;
        assert_eq!(
            attempt.failure,
            Some(FailureKind::BlockedAddress),
            "{} via {:?}: {:?}",
            case.target,
            case.proxy,
            attempt.error
        );
        assert_eq!(attempt.status_code, None);
        let error = attempt.error.unwrap();
        assert!(
            error.starts_with("refused before connecting to the"),
            "{error}"
        );
        assert!(error.contains("allowed_cidrs"), "{error}");
        assert!(!error.contains(crate::support::SECRET));
    }
    assert_eq!(
        trap4.connections(),
        0,
        "no connection may reach the IPv4 trap"
    );
    assert_eq!(
        trap6.connections(),
        0,
        "no connection may reach the IPv6 trap"
    );
}

#[tokio::test]
async fn the_refusal_says_which_address_and_range() {
    let sender = Sender::new(&DeliveryConfig {
        allowed_cidrs: Vec::new(),
        ..local_config()
    })
    .unwrap();
    let check = async |target: &str, expected: &str| {
        let report = sender
            .send(&claimed(&webhook(target), 1), Timestamp::now())
            .await;
        assert_eq!(report.attempt.error.as_deref(), Some(expected), "{target}");
    };
    check(
        "http://169.254.169.254/",
        "refused before connecting to the target: 169.254.169.254, a link-local address; the address guard \
         blocks deliveries to internal networks unless an operator lists the range in allowed_cidrs",
    )
    .await;
    check(
        "http://localhost:9/",
        "refused before connecting to the target: localhost resolves to 127.0.0.1, a loopback address; the \
         address guard blocks deliveries to internal networks unless an operator lists the range in allowed_cidrs",
    )
    .await;
    let proxied = with_proxy(
        webhook("http://receiver.invalid/hook"),
        "http://localhost:9",
    );
    let report = sender.send(&claimed(&proxied, 1), Timestamp::now()).await;
    assert_eq!(report.attempt.failure, Some(FailureKind::BlockedAddress));
    assert_eq!(
        report.attempt.error.as_deref(),
        Some(
            "refused before connecting to the proxy: localhost resolves to 127.0.0.1, a loopback address; the \
             address guard blocks deliveries to internal networks unless an operator lists the range in allowed_cidrs"
        )
    );
    check(
        "http://[::ffff:10.0.0.1]/",
        "refused before connecting to the target: ::ffff:10.0.0.1 (an IPv6 form of 10.0.0.1), a private network \
         address; the address guard blocks deliveries to internal networks unless an operator lists the range \
         in allowed_cidrs",
    )
    .await;
}

#[tokio::test]
async fn loopback_forms_are_allowed_once_allowed_cidrs_lists_them() {
    let (trap4, trap6) = (Trap::start("127.0.0.1").await, Trap::start("[::1]").await);
    let sender = Sender::new(&local_config()).unwrap();
    for case in cases(trap4.port(), trap6.port()) {
        let (before4, before6) = (trap4.connections(), trap6.connections());
        let report = sender
            .send(&claimed(&hook(&case), 1), Timestamp::now())
            .await;
        let attempt = report.attempt;
        let label = format!("{} via {:?}: {:?}", case.target, case.proxy, attempt.error);
        match case.reach {
            Reach::StillBlocked => {
                assert_eq!(
                    attempt.failure,
                    Some(FailureKind::BlockedAddress),
                    "{label}"
                );
            }
            Reach::Nowhere => {
                assert_ne!(
                    attempt.failure,
                    Some(FailureKind::BlockedAddress),
                    "{label}"
                );
            }
            Reach::Trap4 | Reach::Trap6 => {
                assert_ne!(
                    attempt.failure,
                    Some(FailureKind::BlockedAddress),
                    "{label}"
                );
                let (trap, before) = if case.reach == Reach::Trap4 {
                    (&trap4, before4)
                } else {
                    (&trap6, before6)
                };
                assert!(
                    trap.connections() > before,
                    "the trap must see the connection: {label}"
                );
            }
        }
    }
}
