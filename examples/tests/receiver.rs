//! The receiver example on a real listener on 127.0.0.1, driven over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use mia_webhooks_examples::{WEBHOOK_PATH, receiver_router};
use mia_webhooks_signature::{HEADER_NAME, ReplayPolicy, Verifier, sign};
use reqwest::StatusCode;

const NOW: u64 = 1_764_374_400_000;
const TOLERANCE: Duration = Duration::from_secs(300);

fn fixed_clock() -> u64 {
    NOW
}

/// Starts a receiver that knows `secrets` on 127.0.0.1 and returns the URL to post to.
async fn start_receiver(secrets: &[&str]) -> String {
    let router = receiver_router(
        Verifier::new(secrets.iter().copied()),
        ReplayPolicy::Window {
            tolerance: TOLERANCE,
        },
        fixed_clock,
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}{WEBHOOK_PATH}")
}

fn envelope(event_timestamp: u64, tenant: &str) -> Vec<u8> {
    format!(
        r#"{{"eventName":"project_created","eventTimestamp":{event_timestamp},"payload":{{"tenantId":"{tenant}"}}}}"#
    )
    .into_bytes()
}

/// Posts `body` with `signature` as `X-Mia-Signature` (none if `None`).
async fn post(url: &str, body: &[u8], signature: Option<&str>) -> StatusCode {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-mia-delivery", "0190f3a0-0000-7000-8000-000000000001")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header(HEADER_NAME, signature);
    }
    request.send().await.expect("request sent").status()
}

#[tokio::test]
async fn accepts_a_good_delivery_once_and_rejects_its_replay() {
    let url = start_receiver(&["s3cr3t"]).await;
    let body = envelope(NOW - 1_000, "t1");
    let signature = sign(&body, b"s3cr3t").to_string();
    assert_eq!(
        post(&url, &body, Some(&signature)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post(&url, &body, Some(&signature)).await,
        StatusCode::CONFLICT
    );
    // The same replay in another accepted header form is still the same signature.
    let prefixed = format!("sha256={}", signature.to_uppercase());
    assert_eq!(
        post(&url, &body, Some(&prefixed)).await,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn rejects_a_tampered_payload() {
    let url = start_receiver(&["s3cr3t"]).await;
    let body = envelope(NOW, "t1");
    let signature = sign(&body, b"s3cr3t").to_string();
    for i in [0, body.len() / 2, body.len() - 1] {
        let mut tampered = body.clone();
        tampered[i] ^= 0x01;
        assert_eq!(
            post(&url, &tampered, Some(&signature)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // The untouched delivery is still accepted: rejected requests leave no trace.
    assert_eq!(
        post(&url, &body, Some(&signature)).await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn rejects_bad_malformed_and_missing_signatures() {
    let url = start_receiver(&["s3cr3t"]).await;
    let body = envelope(NOW, "t1");
    let wrong_secret = sign(&body, b"guess").to_string();
    assert_eq!(
        post(&url, &body, Some(&wrong_secret)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&url, &body, Some("not a signature")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(&url, &body, Some("")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&url, &body, None).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn accepts_every_configured_secret() {
    let url = start_receiver(&["old", "new"]).await;
    for (i, secret) in ["old", "new"].into_iter().enumerate() {
        let body = envelope(NOW, &format!("t{i}"));
        let signature = sign(&body, secret.as_bytes()).to_string();
        assert_eq!(
            post(&url, &body, Some(&signature)).await,
            StatusCode::NO_CONTENT
        );
    }
}

#[tokio::test]
async fn rejects_a_signed_body_that_is_not_an_envelope() {
    let url = start_receiver(&["s3cr3t"]).await;
    for body in [&b"not json"[..], br#"{"eventName":"project_created"}"#] {
        let signature = sign(body, b"s3cr3t").to_string();
        assert_eq!(
            post(&url, body, Some(&signature)).await,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn accepts_out_of_order_events_and_rejects_ones_outside_the_window() {
    let url = start_receiver(&["s3cr3t"]).await;
    let window_ms = u64::try_from(TOLERANCE.as_millis()).expect("small");
    for (timestamp, expected) in [
        (NOW - 1_000, StatusCode::NO_CONTENT),
        (NOW - 2_000, StatusCode::NO_CONTENT),
        (NOW - window_ms - 1, StatusCode::CONFLICT),
        (NOW + window_ms + 1, StatusCode::CONFLICT),
    ] {
        let body = envelope(timestamp, "t1");
        let signature = sign(&body, b"s3cr3t").to_string();
        assert_eq!(
            post(&url, &body, Some(&signature)).await,
            expected,
            "at {timestamp}"
        );
    }
}

/// The `receiver` program itself: started as a user starts it, it prints one line per
/// delivery, naming the event and the `X-Mia-Delivery` id when it accepts one and the reason
/// when it rejects one, and never the secret or the payload.
#[tokio::test(flavor = "multi_thread")]
async fn the_receiver_program_prints_one_line_per_delivery() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .arg("127.0.0.1:0")
        .env("MIA_WEBHOOKS_SECRET", "s3cr3t-program")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the receiver");
    let stdout = child.stdout.take().expect("stdout");
    let _child = Killed(child);
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the receiver prints a line")
    };

    let started = next_line();
    let url = started
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {started:?}"))
        .to_owned();
    let now = mia_webhooks_examples::system_clock_ms();
    let body = format!(
        r#"{{"eventName":"project_created","eventTimestamp":{now},"payload":{{"marker":"payload-marker-7f3a"}}}}"#
    )
    .into_bytes();
    let signature = sign(&body, b"s3cr3t-program").to_string();
    let delivery = "0190f3a0-0000-7000-8000-000000000001";

    let mut printed = vec![started];
    for (signature, status, line) in [
        (
            Some(signature.as_str()),
            StatusCode::NO_CONTENT,
            format!("204 accepted project_created, delivery {delivery}"),
        ),
        (
            Some(signature.as_str()),
            StatusCode::CONFLICT,
            format!("409 rejected: replayed event, delivery {delivery}"),
        ),
        (
            Some("0".repeat(64).as_str()),
            StatusCode::UNAUTHORIZED,
            format!("401 rejected: invalid signature, delivery {delivery}"),
        ),
        (
            None,
            StatusCode::UNAUTHORIZED,
            format!("401 rejected: invalid signature, delivery {delivery}"),
        ),
    ] {
        assert_eq!(post(&url, &body, signature).await, status);
        let got = next_line();
        assert_eq!(got, line);
        printed.push(got);
    }
    for line in &printed {
        assert!(
            !line.contains("s3cr3t") && !line.contains("payload-marker"),
            "{line}"
        );
    }
}
