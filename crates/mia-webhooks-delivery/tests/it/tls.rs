//! A webhook's CA is trusted for that webhook only.

use mia_webhooks_delivery::Sender;
use mia_webhooks_model::{FailureKind, Timestamp};

use crate::support::{Receiver, Reply, TestPki, claimed, local_config, webhook, with_ca};

#[tokio::test]
async fn a_webhook_ca_is_trusted_for_that_webhook_only() {
    let pki = TestPki::new();
    let receiver = Receiver::start_tls(&pki.server_cert_pem, &pki.server_key_pem, |_| {
        Reply::Status(204)
    })
    .await;
    let url = format!("https://127.0.0.1:{}/hook", receiver.addr.port());
    let sender = Sender::new(&local_config()).unwrap();

    let without_ca = webhook(&url);
    let report = sender
        .send(&claimed(&without_ca, 1), Timestamp::now())
        .await;
    assert_eq!(
        report.attempt.failure,
        Some(FailureKind::Tls),
        "{:?}",
        report.attempt.error
    );
    assert_eq!(
        report.attempt.error.as_deref(),
        Some(format!(
            "TLS handshake with 127.0.0.1:{} failed: the certificate is not trusted (is the webhook's CA certificate set?)",
            receiver.addr.port()
        ))
        .as_deref()
    );

    let with_its_ca = with_ca(webhook(&url), &pki.ca_pem);
    let report = sender
        .send(&claimed(&with_its_ca, 1), Timestamp::now())
        .await;
    assert!(report.attempt.succeeded(), "{:?}", report.attempt.error);
    assert_eq!(report.attempt.status_code, Some(204));

    let another_without_ca = webhook(&format!("https://localhost:{}/other", receiver.addr.port()));
    let report = sender
        .send(&claimed(&another_without_ca, 1), Timestamp::now())
        .await;
    assert_eq!(
        report.attempt.failure,
        Some(FailureKind::Tls),
        "{:?}",
        report.attempt.error
    );

    // The CA webhook still works, on its cached client.
    let report = sender
        .send(&claimed(&with_its_ca, 2), Timestamp::now())
        .await;
    assert!(report.attempt.succeeded(), "{:?}", report.attempt.error);
    assert_eq!(
        sender.cached_clients(),
        1,
        "one client for the one (CA, no proxy) configuration"
    );
    assert_eq!(
        receiver.count(),
        2,
        "only the two trusted attempts got through the handshake"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let pki = TestPki::for_names(&["other.test"], &[]);
    let receiver = Receiver::start_tls(&pki.server_cert_pem, &pki.server_key_pem, |_| {
        Reply::Status(200)
    })
    .await;
    let url = format!("https://127.0.0.1:{}/hook", receiver.addr.port());
    let hook = with_ca(webhook(&url), &pki.ca_pem);
    let report = Sender::new(&local_config())
        .unwrap()
        .send(&claimed(&hook, 1), Timestamp::now())
        .await;
    assert_eq!(
        report.attempt.failure,
        Some(FailureKind::Tls),
        "{:?}",
        report.attempt.error
    );
    let error = report.attempt.error.unwrap();
    assert!(
        error.contains("not valid for the name 127.0.0.1"),
        "{error}"
    );
}
