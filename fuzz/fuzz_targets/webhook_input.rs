//! Webhook input validation: never panics, every error names a field and never echoes the
//! secret, and accepted values print back to input that validates to the same thing.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run webhook_input`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mia_webhooks_model::{EventCatalog, Scope, WebhookInput};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Split the input into fields on a separator byte so each field gets arbitrary text.
    let mut parts = text.split('\u{1f}');
    let mut next = || parts.next().map(str::to_owned);
    let target_url = next();
    let secret = next();
    let events = next().map(|e| e.split(',').map(str::to_owned).collect::<Vec<_>>());
    let ca_certificate = next();
    let proxy_url = next();
    let description = next();
    let scope_text = next().unwrap_or_default();
    let catalog = EventCatalog::built_in();
    let scope = scope_text.parse::<Scope>().unwrap_or(Scope::Instance);
    if let Ok(parsed) = scope_text.parse::<Scope>() {
        assert_eq!(
            parsed
                .to_string()
                .parse::<Scope>()
                .expect("printed scope parses"),
            parsed
        );
    }
    let input = WebhookInput {
        target_url,
        secret: secret.clone(),
        events,
        ca_certificate,
        proxy_url,
        description,
        enabled: None,
    };
    match input.validate(scope, &catalog) {
        Ok(webhook) => {
            let url = webhook.target_url.as_str();
            assert_eq!(
                mia_webhooks_model::TargetUrl::new(url)
                    .expect("normalized URL validates")
                    .as_str(),
                url
            );
            assert!(!webhook.events.is_empty());
            if let Some(proxy) = &webhook.proxy {
                assert!(mia_webhooks_model::ProxyUrl::new(proxy.expose()).is_ok());
            }
            if let Some(ca) = &webhook.ca_certificate {
                assert_eq!(
                    &mia_webhooks_model::CaCertificate::new(ca.as_pem())
                        .expect("stored PEM validates"),
                    ca
                );
            }
        }
        Err(err) => {
            assert!(!err.field().is_empty());
            // Other fields' messages may quote their own text, which could equal the secret by
            // chance; the secret's own error must never quote it.
            if let Some(secret) = secret.filter(|s| s.len() >= 8 && err.field() == "secret") {
                assert!(
                    !err.message().contains(&secret),
                    "an error echoed the secret"
                );
            }
        }
    }
});
