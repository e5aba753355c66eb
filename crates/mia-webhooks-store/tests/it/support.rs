//! Builders and helpers the conformance suite shares: webhooks, events, claims, results.

use std::time::Duration;

use mia_webhooks_model::{
    Attempt, CaCertificate, Delivery, Event, EventName, EventSet, FailureKind, ProxyUrl, Scope,
    Secret, TargetUrl, Timestamp, Webhook, WebhookId,
};
use mia_webhooks_store::{
    AttemptResult, ClaimRequest, ClaimedDelivery, DeliveryQuery, NewEvent, NextState, Store,
    StoreError, WebhookQuery,
};
use serde_json::{Map, Value};

/// The time every test starts at.
pub const T0: Timestamp = Timestamp::from_millis(1_764_374_400_000);

/// `T0` plus `secs` seconds.
/// Asserts that `result` failed with the fault a test hook injected, not with anything else.
#[track_caller]
pub fn assert_injected<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Database(source)) => {
            assert!(source.to_string().contains("injected fault"), "{source}");
        }
        Err(other) => panic!("expected the injected fault, got {other:?}"),
        Ok(value) => panic!("expected the injected fault, got {value:?}"),
    }
}

pub fn at(secs: u64) -> Timestamp {
    T0.saturating_add(Duration::from_secs(secs))
}

pub fn scope(text: &str) -> Scope {
    text.parse().expect("test scope")
}

/// An enabled webhook on `scope` subscribed to `events`, with a secret of its own.
pub fn webhook(scope_text: &str, events: &[&str]) -> Webhook {
    let id = WebhookId::new();
    Webhook {
        id,
        scope: scope(scope_text),
        target_url: TargetUrl::new("https://receiver.example/hooks").expect("url"),
        secret: Secret::new(format!("secret-of-{id}")).expect("secret"),
        events: EventSet::from_stored(events.iter().map(|e| (*e).to_owned())).expect("events"),
        ca_certificate: None,
        proxy: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: T0,
        updated_at: T0,
    }
}

/// A webhook with every optional field set.
pub fn full_webhook() -> Webhook {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["ca.example".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    Webhook {
        ca_certificate: Some(CaCertificate::new(&cert.pem()).expect("ca")),
        proxy: Some(ProxyUrl::new("socks5://user:pass@proxy.example:1080").expect("proxy")),
        description: Some("orders to the billing service\nsecond line".to_owned()),
        ..webhook(
            "company/acme/project/shop",
            &["project_created", "tag_created"],
        )
    }
}

/// An event named `name` whose payload belongs to `tenant` and `project` when given.
pub fn event(name: &str, tenant: Option<&str>, project: Option<&str>) -> NewEvent {
    let mut payload = Map::new();
    if let Some(tenant) = tenant {
        payload.insert("tenantId".into(), Value::from(tenant));
    }
    if let Some(project) = project {
        payload.insert("projectId".into(), Value::from(project));
    }
    payload.insert("note".into(), Value::from("é ü \u{1F600} and \"quotes\""));
    let event =
        Event::from_parts(EventName::new(name).expect("name"), T0, &payload).expect("event");
    NewEvent {
        id: mia_webhooks_model::EventId::new(),
        event,
    }
}

/// A claim at `now` for up to `limit` deliveries, leased for a minute, with a cap that does not
/// get in the way.
pub fn claim_at(now: Timestamp, limit: usize) -> ClaimRequest {
    ClaimRequest {
        limit,
        lease: Duration::from_secs(60),
        per_webhook_cap: 1000,
        now,
    }
}

fn attempt(claimed: &ClaimedDelivery, started_at: Timestamp, status: u16) -> Attempt {
    let ok = (200..300).contains(&status);
    Attempt {
        number: claimed.attempt,
        started_at,
        duration_ms: 42,
        status_code: Some(status),
        failure: if ok {
            None
        } else {
            Some(FailureKind::HttpStatus)
        },
        error: if ok {
            None
        } else {
            Some(format!("the receiver answered {status}"))
        },
        response_excerpt: Some(format!("body of a {status}")),
    }
}

/// A successful attempt (200) of a claimed delivery, started and recorded at `now`.
pub fn success(claimed: &ClaimedDelivery, now: Timestamp) -> AttemptResult {
    AttemptResult {
        delivery_id: claimed.delivery_id,
        lease: claimed.lease,
        webhook_id: claimed.webhook.id,
        attempt: attempt(claimed, now, 200),
        next: NextState::Succeeded,
        disable_webhook: None,
        now,
    }
}

/// A failed attempt (500) of a claimed delivery, started and recorded at `now`, then `next`.
pub fn failure(claimed: &ClaimedDelivery, now: Timestamp, next: NextState) -> AttemptResult {
    AttemptResult {
        attempt: attempt(claimed, now, 500),
        next,
        ..success(claimed, now)
    }
}

/// One instance webhook on `tag_created`, one such event ingested at `T0`, and its delivery
/// claimed at `at(1)` (lease 60 s).
pub async fn one_claimed<S: Store>(store: &S) -> (Webhook, ClaimedDelivery) {
    let hook = webhook("instance", &["tag_created"]);
    store.create_webhook(&hook).await.unwrap();
    store
        .ingest(&[event("tag_created", None, None)], T0)
        .await
        .unwrap();
    let mut claimed = store.claim(&claim_at(at(1), 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    (hook, claimed.remove(0))
}

/// Every delivery of a webhook, newest first, read page by page.
pub async fn deliveries_of<S: Store>(store: &S, webhook: WebhookId) -> Vec<Delivery> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_deliveries(&DeliveryQuery {
                webhook,
                status: None,
                limit: 100,
                before,
            })
            .await
            .expect("list deliveries");
        all.extend(page.items);
        if !page.has_more {
            return all;
        }
        before = all.last().map(|d| d.id);
    }
}

/// The ids of the webhooks on `scope`, read page by page.
pub async fn webhook_ids_on<S: Store>(store: &S, scope_text: &str) -> Vec<WebhookId> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_webhooks(&WebhookQuery {
                scope: scope(scope_text),
                events: Vec::new(),
                limit: 100,
                after,
            })
            .await
            .expect("list webhooks");
        ids.extend(page.items.iter().map(|w| w.id));
        if !page.has_more {
            return ids;
        }
        after = ids.last().copied();
    }
}

/// Asserts two webhooks are equal field by field, the secret included.
pub fn assert_same_webhook(got: &Webhook, want: &Webhook) {
    assert_eq!(got.id, want.id);
    assert_eq!(got.scope, want.scope);
    assert_eq!(got.target_url, want.target_url);
    assert_eq!(
        got.secret.expose(),
        want.secret.expose(),
        "secret of {}",
        want.id
    );
    assert_eq!(got.events, want.events);
    assert_eq!(
        got.ca_certificate.as_ref().map(|c| c.as_pem()),
        want.ca_certificate.as_ref().map(|c| c.as_pem())
    );
    assert_eq!(
        got.proxy.as_ref().map(|p| p.expose()),
        want.proxy.as_ref().map(|p| p.expose())
    );
    assert_eq!(got.description, want.description);
    assert_eq!(got.enabled, want.enabled);
    assert_eq!(got.disabled_reason, want.disabled_reason);
    assert_eq!(got.created_at, want.created_at);
    assert_eq!(got.updated_at, want.updated_at);
}
