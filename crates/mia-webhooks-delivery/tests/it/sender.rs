//! One attempt against receivers that answer in every way the issue lists.

use std::time::Duration;

use mia_webhooks_delivery::{DeliveryConfig, Sender, USER_AGENT};
use mia_webhooks_model::{FailureKind, Timestamp};

use crate::support::{Receiver, Reply, SECRET, chunked_receiver, claimed, local_config, webhook};

fn sender(config: &DeliveryConfig) -> Sender {
    Sender::new(config).unwrap()
}

#[tokio::test]
async fn a_2xx_answer_succeeds_and_carries_the_signed_headers() {
    let receiver = Receiver::start(|_| Reply::Full(202, vec![], b"thanks".to_vec())).await;
    let hook = webhook(&receiver.url());
    let delivery = claimed(&hook, 1);
    let now = Timestamp::now();

    let report = sender(&local_config()).send(&delivery, now).await;

    let attempt = &report.attempt;
    assert!(attempt.succeeded(), "{attempt:?}");
    assert_eq!(attempt.status_code, Some(202));
    assert_eq!(attempt.number, 1);
    assert_eq!(attempt.started_at, now);
    assert_eq!(attempt.error, None);
    assert_eq!(attempt.response_excerpt.as_deref(), Some("thanks"));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(
        &request.body[..],
        &delivery.payload[..],
        "the event's exact bytes"
    );
    assert_eq!(request.uri.path(), "/hook");
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("user-agent"), USER_AGENT);
    assert!(USER_AGENT.starts_with("mia-webhooks/0."), "{USER_AGENT}");
    assert_eq!(header("x-mia-event"), "project_created");
    assert_eq!(header("x-mia-delivery"), delivery.delivery_id.to_string());
    let signature = header("x-mia-signature");
    assert_eq!(
        signature,
        mia_webhooks_signature::sign(&delivery.payload, SECRET.as_bytes()).to_string()
    );
    mia_webhooks_signature::verify(&delivery.payload, SECRET.as_bytes(), &signature).unwrap();
}

#[tokio::test]
async fn a_server_error_is_an_http_status_failure() {
    let receiver = Receiver::start(|_| Reply::Full(500, vec![], b"database down".to_vec())).await;
    let report = sender(&local_config())
        .send(&claimed(&webhook(&receiver.url()), 3), Timestamp::now())
        .await;
    let attempt = report.attempt;
    assert_eq!(attempt.number, 3);
    assert_eq!(attempt.status_code, Some(500));
    assert_eq!(attempt.failure, Some(FailureKind::HttpStatus));
    assert_eq!(
        attempt.error.as_deref(),
        Some("the receiver answered 500 Internal Server Error")
    );
    assert_eq!(attempt.response_excerpt.as_deref(), Some("database down"));
}

#[tokio::test]
async fn a_hanging_receiver_times_out() {
    let receiver = Receiver::start(|_| Reply::Hang).await;
    let config = DeliveryConfig {
        attempt_timeout: Duration::from_millis(300),
        ..local_config()
    };
    let report = sender(&config)
        .send(&claimed(&webhook(&receiver.url()), 1), Timestamp::now())
        .await;
    let attempt = report.attempt;
    assert_eq!(attempt.failure, Some(FailureKind::Timeout), "{attempt:?}");
    assert_eq!(attempt.status_code, None);
    let error = attempt.error.unwrap();
    assert!(
        error.contains("within 300ms (the attempt timeout)"),
        "{error}"
    );
    assert!(
        attempt.duration_ms >= 300,
        "the attempt lasted until the timeout: {}",
        attempt.duration_ms
    );
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn retry_after_is_reported_with_a_429() {
    let receiver =
        Receiver::start(|_| Reply::Full(429, vec![("retry-after", "120".into())], Vec::new()))
            .await;
    let report = sender(&local_config())
        .send(&claimed(&webhook(&receiver.url()), 1), Timestamp::now())
        .await;
    assert_eq!(report.attempt.status_code, Some(429));
    assert_eq!(report.attempt.failure, Some(FailureKind::HttpStatus));
    assert_eq!(report.retry_after, Some(Duration::from_secs(120)));
    assert_eq!(
        report.attempt.error.as_deref(),
        Some("the receiver answered 429 Too Many Requests")
    );
}

#[tokio::test]
async fn a_redirect_is_recorded_and_not_followed() {
    let elsewhere = Receiver::start(|_| Reply::Status(200)).await;
    let location = elsewhere.url();
    let receiver = Receiver::start(move |_| {
        Reply::Full(302, vec![("location", location.clone())], Vec::new())
    })
    .await;

    let report = sender(&local_config())
        .send(&claimed(&webhook(&receiver.url()), 1), Timestamp::now())
        .await;

    let attempt = report.attempt;
    assert_eq!(attempt.failure, Some(FailureKind::Redirect));
    assert_eq!(attempt.status_code, Some(302));
    assert_eq!(
        attempt.error.unwrap(),
        format!(
            "the receiver answered 302 Found with Location {}; redirects are not followed",
            elsewhere.url()
        )
    );
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        elsewhere.count(),
        0,
        "the redirect target must see no request"
    );
}

#[tokio::test]
async fn a_huge_body_is_read_no_further_than_the_limit_and_the_status_decides() {
    let announced = Receiver::start(|_| Reply::Full(200, vec![], vec![b'z'; 1 << 20])).await;
    let streamed = chunked_receiver(1 << 20).await;
    let refused = Receiver::start(|_| Reply::Full(500, vec![], vec![b'z'; 1 << 20])).await;
    let sender = sender(&local_config());
    for (url, succeeded) in [
        (announced.url(), true),
        (format!("http://{streamed}/"), true),
        (refused.url(), false),
    ] {
        let report = sender
            .send(&claimed(&webhook(&url), 1), Timestamp::now())
            .await;
        let attempt = report.attempt;
        if succeeded {
            // SPEC: success is any 2xx. Counting it failed would send the event again.
            assert_eq!(attempt.failure, None, "{url}: {:?}", attempt.error);
            assert_eq!(attempt.status_code, Some(200), "{url}");
        } else {
            assert_eq!(attempt.failure, Some(FailureKind::HttpStatus), "{url}");
            assert_eq!(attempt.status_code, Some(500), "{url}");
        }
        let excerpt = attempt.response_excerpt.unwrap();
        assert_eq!(excerpt.len(), 4096, "{url}: the first 4 KiB are kept");
        assert!(excerpt.chars().all(|c| c == 'z' || c == 'a'), "{url}");
    }
}

#[tokio::test]
async fn nul_bytes_in_an_answer_do_not_reach_the_excerpt() {
    // PostgreSQL's text cannot hold NUL: one such answer would fail every batch it is in.
    let receiver = Receiver::start(|_| Reply::Full(200, vec![], b"ok\0\xffdone".to_vec())).await;
    let report = sender(&local_config())
        .send(&claimed(&webhook(&receiver.url()), 1), Timestamp::now())
        .await;
    assert_eq!(report.attempt.failure, None);
    assert_eq!(
        report.attempt.response_excerpt.unwrap(),
        "ok\u{FFFD}\u{FFFD}done"
    );
}

#[tokio::test]
async fn the_excerpt_keeps_the_first_4_kib_as_text() {
    let mut body = "é".repeat(3000).into_bytes();
    body.extend_from_slice(&[0xff, 0xfe]);
    let receiver = Receiver::start(move |_| Reply::Full(400, vec![], body.clone())).await;
    let report = sender(&local_config())
        .send(&claimed(&webhook(&receiver.url()), 1), Timestamp::now())
        .await;
    let excerpt = report.attempt.response_excerpt.unwrap();
    assert_eq!(excerpt, "é".repeat(2048), "4096 bytes of 2-byte characters");
    assert_eq!(
        report.attempt.error.as_deref(),
        Some("the receiver answered 400 Bad Request")
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/hook");
    let report = sender(&local_config())
        .send(&claimed(&webhook(&url), 1), Timestamp::now())
        .await;
    assert_eq!(report.attempt.failure, Some(FailureKind::Connect));
    assert_eq!(
        report.attempt.error.unwrap(),
        format!("connection refused by 127.0.0.1:{port}")
    );
}

#[tokio::test]
async fn a_receiver_closing_without_answering_is_a_connect_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            drop(stream);
        }
    });
    let url = format!("http://{addr}/hook");
    let report = sender(&local_config())
        .send(&claimed(&webhook(&url), 1), Timestamp::now())
        .await;
    assert_eq!(
        report.attempt.failure,
        Some(FailureKind::Connect),
        "{:?}",
        report.attempt.error
    );
    let error = report.attempt.error.unwrap();
    assert!(error.contains(&addr.to_string()), "{error}");
}

#[tokio::test]
async fn clients_are_shared_when_webhooks_have_neither_ca_nor_proxy() {
    let receiver = Receiver::start(|_| Reply::Status(200)).await;
    let sender = sender(&local_config());
    for _ in 0..5 {
        let report = sender
            .send(&claimed(&webhook(&receiver.url()), 1), Timestamp::now())
            .await;
        assert!(report.attempt.succeeded());
    }
    assert_eq!(
        sender.cached_clients(),
        0,
        "the default client serves them all"
    );
    let peers: std::collections::HashSet<_> = receiver.seen().iter().map(|s| s.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "one pooled connection carried all five requests"
    );
}
