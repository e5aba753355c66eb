//! What a running server's output shows at the default level: never a webhook secret, a
//! token or an event's payload.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Options, Proc, SECRET, collect, create_webhook, receiver, wait_for};

/// A receiver that fails every delivery with a 500 whose body echoes the payload back.
async fn echoing_failure() -> String {
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        (StatusCode::INTERNAL_SERVER_ERROR, body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Webhooks with a secret are created (and one refused), an event is delivered to one and
/// fails at another that echoes the payload in its error answer, and the server stops: its
/// standard output and its logs hold none of the secret, the admin token or the payload.
#[tokio::test(flavor = "multi_thread")]
async fn logs_show_neither_secrets_nor_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let token = "log-test-admin-token-0123456789";
    let marker = "payload-marker-5d1c9e";
    let (proc, stdout, stderr) = Proc::start_with(
        dir.path(),
        &[
            ("MIA_WEBHOOKS_ADMIN_TOKEN", token.to_owned()),
            ("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8".to_owned()),
        ],
        Options {
            logs: true,
            ..Options::default()
        },
    );
    let stdout = collect(stdout);
    let stderr = collect(stderr.unwrap());

    let (target, seen) = receiver().await;
    create_webhook(&proc.base, token, &target, &["project_created"]).await;
    let failing = create_webhook(
        &proc.base,
        token,
        &echoing_failure().await,
        &["project_created"],
    )
    .await;
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/api/webhooks", proc.base))
        .bearer_auth(token)
        .json(&json!({"targetUrl": "not a url", "secret": SECRET, "events": ["project_created"]}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());

    let event = json!({
        "eventName": "project_created",
        "eventTimestamp": 1_764_374_400_000_i64,
        "payload": {"tenantId": "acme", "projectId": "p1", "note": marker},
    });
    let response = client
        .post(format!("{}/api/events", proc.base))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_for(&seen, 1, Duration::from_secs(20)).await;
    assert!(
        String::from_utf8_lossy(&seen.lock().unwrap()[0].1).contains(marker),
        "the payload was delivered"
    );

    // The failed attempt is recorded (and logged) before the server stops.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log: Value = client
            .get(format!("{}/api/webhooks/{failing}/deliveries", proc.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["items"][0]["attemptCount"].as_u64() >= Some(1) {
            assert_eq!(log["items"][0]["lastAttempt"]["statusCode"], 500, "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "no attempt recorded: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(proc.terminate().success());
    let stdout = stdout.join().unwrap();
    let logs = stderr.join().unwrap();
    assert!(
        logs.contains("mia-webhooks listening") && logs.contains("mia-webhooks stopped"),
        "the logs were captured ({} bytes)",
        logs.len()
    );
    assert!(
        logs.contains("attempt failed"),
        "the failed attempt is logged at the default level"
    );
    for (what, text) in [("stdout", &stdout), ("logs", &logs)] {
        for secret in [SECRET, token, marker] {
            assert!(!text.contains(secret), "{what} show {secret:?}");
        }
    }
}
