//! A webhook's proxy carries all of its requests: forwarded for http, CONNECT for https.

use std::collections::HashSet;

use mia_webhooks_delivery::Sender;
use mia_webhooks_model::{FailureKind, Timestamp};

use crate::support::{
    Proxy, Receiver, Reply, TestPki, claimed, local_config, webhook, with_ca, with_proxy,
};

#[tokio::test]
async fn an_http_target_is_reached_through_the_forward_proxy() {
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let proxy = Proxy::start().await;
    // Only the proxy knows receiver.test: a direct attempt could not resolve it.
    let url = format!("http://receiver.test:{}/hook", receiver.addr.port());
    let hook = with_proxy(webhook(&url), &proxy.url());
    let sender = Sender::new(&local_config()).unwrap();

    for number in 1..=3 {
        let report = sender.send(&claimed(&hook, number), Timestamp::now()).await;
        assert!(report.attempt.succeeded(), "{:?}", report.attempt.error);
    }

    assert_eq!(proxy.forwarded(), 3, "the proxy carried every request");
    assert_eq!(proxy.tunnels(), 0);
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(
            request.uri.to_string(),
            url,
            "the request came in absolute form, as proxies get it"
        );
        assert!(request.headers.contains_key("x-mia-signature"));
    }
    assert_eq!(sender.cached_clients(), 1);
}

#[tokio::test]
async fn an_https_target_is_reached_through_a_connect_tunnel() {
    let pki = TestPki::new();
    let receiver = Receiver::start_tls(&pki.server_cert_pem, &pki.server_key_pem, |_| {
        Reply::Status(200)
    })
    .await;
    let proxy = Proxy::start().await;
    let url = format!("https://receiver.test:{}/hook", receiver.addr.port());
    let hook = with_ca(with_proxy(webhook(&url), &proxy.url()), &pki.ca_pem);
    let sender = Sender::new(&local_config()).unwrap();

    for number in 1..=3 {
        let report = sender.send(&claimed(&hook, number), Timestamp::now()).await;
        assert!(report.attempt.succeeded(), "{:?}", report.attempt.error);
    }

    assert!(proxy.tunnels() >= 1, "at least one CONNECT tunnel");
    assert_eq!(proxy.forwarded(), 0);
    assert_eq!(receiver.count(), 3);
    let upstream: HashSet<_> = proxy
        .counts
        .upstream_addrs
        .lock()
        .unwrap()
        .iter()
        .copied()
        .collect();
    for request in receiver.seen() {
        assert!(
            upstream.contains(&request.peer),
            "every request arrived from the proxy's side of a tunnel"
        );
    }
}

#[tokio::test]
async fn a_proxy_that_refuses_the_tunnel_is_a_proxy_failure() {
    let proxy = Proxy::start().await;
    // The test proxy refuses (403) any target but loopback names.
    let hook = with_proxy(webhook("https://elsewhere.invalid/hook"), &proxy.url());
    let report = Sender::new(&local_config())
        .unwrap()
        .send(&claimed(&hook, 1), Timestamp::now())
        .await;
    assert_eq!(
        report.attempt.failure,
        Some(FailureKind::Proxy),
        "{:?}",
        report.attempt.error
    );
    let error = report.attempt.error.unwrap();
    assert!(
        error.contains(&format!("through the proxy {}", proxy.url())),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_proxy_failure_with_its_credentials_hidden() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let hook = with_proxy(
        webhook("http://receiver.test/hook"),
        &format!("http://user:hunter2@127.0.0.1:{port}"),
    );
    let report = Sender::new(&local_config())
        .unwrap()
        .send(&claimed(&hook, 1), Timestamp::now())
        .await;
    assert_eq!(
        report.attempt.failure,
        Some(FailureKind::Proxy),
        "{:?}",
        report.attempt.error
    );
    let error = report.attempt.error.unwrap();
    assert!(error.contains("connection refused"), "{error}");
    assert!(error.contains("***@127.0.0.1"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(
        !error.contains("user:"),
        "the user may be a token too: {error}"
    );
}
