//! Webhooks, and the validated inputs that create and edit them.

use std::collections::BTreeSet;
use std::fmt;

use crate::{
    CaCertificate, EventCatalog, EventName, ProxyUrl, Scope, Secret, TargetUrl, Timestamp,
    ValidationError, WebhookId,
};

/// The longest description accepted, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// The most event names one webhook may subscribe to.
pub const MAX_EVENTS: usize = 256;

/// A webhook: where to send which events, and how.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its id (UUID v7).
    pub id: WebhookId,
    /// Where it is installed.
    pub scope: Scope,
    /// Where its POSTs go.
    pub target_url: TargetUrl,
    /// What signs its deliveries. Write-only.
    pub secret: Secret,
    /// The events it subscribes to; never empty.
    pub events: EventSet,
    /// A certificate authority trusted for this webhook only.
    pub ca_certificate: Option<CaCertificate>,
    /// A proxy that carries all of its requests.
    pub proxy: Option<ProxyUrl>,
    /// Free text for people.
    pub description: Option<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled, when the system disabled it.
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A non-empty set of event names, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventSet(BTreeSet<EventName>);

impl EventSet {
    /// Validates names against the catalogue; errors name `events` or `events[i]`.
    pub fn new<S: AsRef<str>>(
        names: &[S],
        catalog: &EventCatalog,
    ) -> Result<Self, ValidationError> {
        if names.is_empty() {
            return Err(ValidationError::invalid(
                "events",
                format!(
                    "events must list at least one event; known events: {}",
                    catalog.known_names()
                ),
            ));
        }
        if names.len() > MAX_EVENTS {
            return Err(ValidationError::invalid(
                "events",
                format!(
                    "events lists {} names; the limit is {MAX_EVENTS}",
                    names.len()
                ),
            ));
        }
        let mut set = BTreeSet::new();
        for (i, name) in names.iter().enumerate() {
            set.insert(catalog.resolve(name.as_ref(), format!("events[{i}]"))?);
        }
        Ok(EventSet(set))
    }

    /// Rebuilds a set read back from storage, where names were validated on the way in.
    ///
    /// Names that are no longer valid are dropped; a set left empty is an error.
    pub fn from_stored<I: IntoIterator<Item = String>>(names: I) -> Result<Self, ValidationError> {
        let set: BTreeSet<EventName> = names
            .into_iter()
            .filter_map(|n| EventName::new(n).ok())
            .collect();
        if set.is_empty() {
            return Err(ValidationError::invalid(
                "events",
                "events must not be empty",
            ));
        }
        Ok(EventSet(set))
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// The names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &EventName> {
        self.0.iter()
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: the set is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything needed to create a webhook, validated.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Where it is installed.
    pub scope: Scope,
    /// Where its POSTs go.
    pub target_url: TargetUrl,
    /// What signs its deliveries.
    pub secret: Secret,
    /// The events it subscribes to.
    pub events: EventSet,
    /// A CA trusted for this webhook only.
    pub ca_certificate: Option<CaCertificate>,
    /// A proxy for all its requests.
    pub proxy: Option<ProxyUrl>,
    /// Free text.
    pub description: Option<String>,
    /// Whether it starts enabled (default true).
    pub enabled: bool,
}

/// A change to a webhook, validated. `None` leaves a field as it is; for optional fields,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    /// A new target URL.
    pub target_url: Option<TargetUrl>,
    /// A new secret; the old one is replaced only when this is given.
    pub secret: Option<Secret>,
    /// A new set of events.
    pub events: Option<EventSet>,
    /// Set or clear the CA.
    pub ca_certificate: Option<Option<CaCertificate>>,
    /// Set or clear the proxy.
    pub proxy: Option<Option<ProxyUrl>>,
    /// Set or clear the description.
    pub description: Option<Option<String>>,
    /// Enable or disable. Enabling clears `disabled_reason`.
    pub enabled: Option<bool>,
}

impl WebhookPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.target_url.is_none()
            && self.secret.is_none()
            && self.events.is_none()
            && self.ca_certificate.is_none()
            && self.proxy.is_none()
            && self.description.is_none()
            && self.enabled.is_none()
    }

    /// Whether the patch may fix what made `webhook` fail, so that its failure clock (since when
    /// every attempt has failed, which disables it after a period) starts over: it re-enables
    /// the webhook, or changes how deliveries reach the receiver (target, secret, CA, proxy).
    /// Results of attempts made before the edit then cannot disable it at once.
    pub fn restarts_failure_clock(&self, webhook: &Webhook) -> bool {
        (self.enabled == Some(true) && !webhook.enabled)
            || self.secret.is_some()
            || self
                .target_url
                .as_ref()
                .is_some_and(|url| *url != webhook.target_url)
            || self
                .ca_certificate
                .as_ref()
                .is_some_and(|ca| *ca != webhook.ca_certificate)
            || self
                .proxy
                .as_ref()
                .is_some_and(|proxy| *proxy != webhook.proxy)
    }

    /// Applies the patch to `webhook` at time `now`.
    pub fn apply(self, webhook: &mut Webhook, now: Timestamp) {
        if let Some(url) = self.target_url {
            webhook.target_url = url;
        }
        if let Some(secret) = self.secret {
            webhook.secret = secret;
        }
        if let Some(events) = self.events {
            webhook.events = events;
        }
        if let Some(ca) = self.ca_certificate {
            webhook.ca_certificate = ca;
        }
        if let Some(proxy) = self.proxy {
            webhook.proxy = proxy;
        }
        if let Some(description) = self.description {
            webhook.description = description;
        }
        if let Some(enabled) = self.enabled {
            webhook.enabled = enabled;
            if enabled {
                webhook.disabled_reason = None;
            }
        }
        webhook.updated_at = now;
    }
}

/// Unvalidated input for creating a webhook, as a form or a JSON body carries it. Its `Debug`
/// shows neither the secret nor the proxy URL (which may hold credentials).
#[derive(Clone, Default)]
pub struct WebhookInput {
    /// `targetUrl`.
    pub target_url: Option<String>,
    /// `secret`.
    pub secret: Option<String>,
    /// `events`.
    pub events: Option<Vec<String>>,
    /// `caCertificate`; empty text counts as absent.
    pub ca_certificate: Option<String>,
    /// `proxy.url`; empty text counts as absent.
    pub proxy_url: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `enabled` (default true).
    pub enabled: Option<bool>,
}

impl fmt::Debug for WebhookInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookInput")
            .field("target_url", &self.target_url)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("events", &self.events)
            .field("ca_certificate", &self.ca_certificate)
            .field("proxy_url", &self.proxy_url.as_ref().map(|_| "***"))
            .field("description", &self.description)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl WebhookInput {
    /// Validates every field, in the order a form shows them, and returns the first problem.
    pub fn validate(
        self,
        scope: Scope,
        catalog: &EventCatalog,
    ) -> Result<NewWebhook, ValidationError> {
        let target_url = TargetUrl::new(
            &self
                .target_url
                .ok_or_else(|| ValidationError::missing("targetUrl"))?,
        )?;
        let secret = new_secret(
            self.secret
                .ok_or_else(|| ValidationError::missing("secret"))?,
        )?;
        let events = EventSet::new(
            &self
                .events
                .ok_or_else(|| ValidationError::missing("events"))?,
            catalog,
        )?;
        Ok(NewWebhook {
            scope,
            target_url,
            secret,
            events,
            ca_certificate: non_empty(self.ca_certificate)
                .map(|c| CaCertificate::new(&c))
                .transpose()?,
            proxy: non_empty(self.proxy_url)
                .map(|p| proxy_input(&p))
                .transpose()?,
            description: validate_description(self.description)?,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// Unvalidated input for editing a webhook. `None` leaves a field alone; for `caCertificate`,
/// `proxy.url` and `description`, `Some(None)` (JSON `null`) or empty text clears it. Its
/// `Debug` shows neither the secret nor the proxy URL.
#[derive(Clone, Default)]
pub struct WebhookPatchInput {
    /// `targetUrl`.
    pub target_url: Option<String>,
    /// `secret`: replaced only when given; empty text counts as not given.
    pub secret: Option<String>,
    /// `events`.
    pub events: Option<Vec<String>>,
    /// `caCertificate`.
    pub ca_certificate: Option<Option<String>>,
    /// `proxy.url`.
    pub proxy_url: Option<Option<String>>,
    /// `description`.
    pub description: Option<Option<String>>,
    /// `enabled`.
    pub enabled: Option<bool>,
}

impl fmt::Debug for WebhookPatchInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPatchInput")
            .field("target_url", &self.target_url)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("events", &self.events)
            .field("ca_certificate", &self.ca_certificate)
            .field(
                "proxy_url",
                &self
                    .proxy_url
                    .as_ref()
                    .map(|url| url.as_ref().map(|_| "***")),
            )
            .field("description", &self.description)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl WebhookPatchInput {
    /// Validates every given field and returns the first problem.
    pub fn validate(self, catalog: &EventCatalog) -> Result<WebhookPatch, ValidationError> {
        Ok(WebhookPatch {
            target_url: self.target_url.map(|u| TargetUrl::new(&u)).transpose()?,
            // Empty text is "keep the current one" (what a form with an empty field sends).
            secret: self
                .secret
                .filter(|s| !s.is_empty())
                .map(new_secret)
                .transpose()?,
            events: self
                .events
                .map(|e| EventSet::new(&e, catalog))
                .transpose()?,
            ca_certificate: self
                .ca_certificate
                .map(|c| non_empty(c).map(|c| CaCertificate::new(&c)).transpose())
                .transpose()?,
            proxy: self
                .proxy_url
                .map(|p| non_empty(p).map(|p| proxy_input(&p)).transpose())
                .transpose()?,
            description: self.description.map(validate_description).transpose()?,
            enabled: self.enabled,
        })
    }
}

/// A proxy URL as sent: one holding the mask of shown credentials (`***`) is a shown URL sent
/// back, and storing it would replace the credentials with the mask.
fn proxy_input(text: &str) -> Result<ProxyUrl, ValidationError> {
    let proxy = ProxyUrl::new(text)?;
    if proxy.holds_mask() {
        return Err(ValidationError::invalid(
            "proxy.url",
            "proxy.url holds ***, the mask of stored credentials: type the credentials again \
             (to keep the stored ones, send the URL exactly as shown)",
        ));
    }
    Ok(proxy)
}

/// A secret as typed: all spaces is a slip, not a secret (refused on create and on edit alike).
fn new_secret(text: String) -> Result<Secret, ValidationError> {
    if !text.is_empty() && text.trim().is_empty() {
        return Err(ValidationError::invalid(
            "secret",
            "secret is only whitespace; type the secret the receiver checks",
        ));
    }
    Secret::new(text)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn validate_description(description: Option<String>) -> Result<Option<String>, ValidationError> {
    let Some(description) = non_empty(description) else {
        return Ok(None);
    };
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::invalid(
            "description",
            format!(
                "description is {} bytes long; the limit is {MAX_DESCRIPTION_LEN}",
                description.len()
            ),
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ValidationError::invalid(
            "description",
            "description must not contain control characters",
        ));
    }
    Ok(Some(description))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> WebhookInput {
        WebhookInput {
            target_url: Some("https://example.com/hook".into()),
            secret: Some("s3cr3t".into()),
            events: Some(vec!["project_created".into(), "tag_created".into()]),
            ..WebhookInput::default()
        }
    }

    #[test]
    fn inputs_debug_without_the_secret_or_the_proxy_credentials() {
        let create = WebhookInput {
            proxy_url: Some("http://tok3n:hunter2@proxy:3128".into()),
            ..input()
        };
        let edit = WebhookPatchInput {
            secret: Some("s3cr3t".into()),
            proxy_url: Some(Some("http://tok3n:hunter2@proxy:3128".into())),
            ..WebhookPatchInput::default()
        };
        for shown in [format!("{create:?}"), format!("{edit:?}")] {
            for secret in ["s3cr3t", "tok3n", "hunter2"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            assert!(shown.contains("secret: Some(\"***\")"), "{shown}");
        }
        assert!(format!("{create:?}").contains("https://example.com/hook"));
    }

    fn check_err(input: WebhookInput, field: &str) {
        let err = input
            .validate(Scope::Instance, &EventCatalog::built_in())
            .unwrap_err();
        assert_eq!(err.field(), field, "{}", err.message());
        assert!(!err.message().contains("s3cr3t"));
    }

    #[test]
    fn valid_input_builds_a_new_webhook() {
        let new = input()
            .validate(Scope::Instance, &EventCatalog::built_in())
            .unwrap();
        assert_eq!(new.events.len(), 2);
        assert!(new.enabled && new.ca_certificate.is_none() && new.proxy.is_none());
        assert!(
            !format!("{new:?}").contains("s3cr3t"),
            "Debug must redact the secret"
        );
    }

    #[test]
    fn empty_optional_text_counts_as_absent() {
        let new = WebhookInput {
            ca_certificate: Some("  ".into()),
            proxy_url: Some(String::new()),
            description: Some(String::new()),
            ..input()
        }
        .validate(Scope::Instance, &EventCatalog::built_in())
        .unwrap();
        assert!(new.ca_certificate.is_none() && new.proxy.is_none() && new.description.is_none());
    }

    #[test]
    fn bad_input_names_the_field() {
        check_err(
            WebhookInput {
                target_url: None,
                ..input()
            },
            "targetUrl",
        );
        check_err(
            WebhookInput {
                target_url: Some("nope".into()),
                ..input()
            },
            "targetUrl",
        );
        check_err(
            WebhookInput {
                secret: None,
                ..input()
            },
            "secret",
        );
        check_err(
            WebhookInput {
                secret: Some(String::new()),
                ..input()
            },
            "secret",
        );
        check_err(
            WebhookInput {
                secret: Some("   ".into()),
                ..input()
            },
            "secret",
        );
        // A shown proxy URL (credentials masked) sent back as new input.
        check_err(
            WebhookInput {
                proxy_url: Some("http://***@proxy:3128/".into()),
                ..input()
            },
            "proxy.url",
        );
        check_err(
            WebhookInput {
                events: None,
                ..input()
            },
            "events",
        );
        check_err(
            WebhookInput {
                events: Some(vec![]),
                ..input()
            },
            "events",
        );
        check_err(
            WebhookInput {
                events: Some(vec!["project_created".into(), "nope_nope".into()]),
                ..input()
            },
            "events[1]",
        );
        check_err(
            WebhookInput {
                events: Some(vec!["NotSnake".into()]),
                ..input()
            },
            "events[0]",
        );
        check_err(
            WebhookInput {
                events: Some(vec!["a_b".into(); MAX_EVENTS + 1]),
                ..input()
            },
            "events",
        );
        check_err(
            WebhookInput {
                ca_certificate: Some("garbage".into()),
                ..input()
            },
            "caCertificate",
        );
        check_err(
            WebhookInput {
                proxy_url: Some("ftp://p".into()),
                ..input()
            },
            "proxy.url",
        );
        check_err(
            WebhookInput {
                description: Some("x".repeat(1025)),
                ..input()
            },
            "description",
        );
        check_err(
            WebhookInput {
                description: Some("bell\u{7}".into()),
                ..input()
            },
            "description",
        );
    }

    #[test]
    fn patch_replaces_only_what_is_given() {
        let catalog = EventCatalog::built_in();
        let new = input().validate(Scope::Instance, &catalog).unwrap();
        let mut webhook = Webhook {
            id: WebhookId::new(),
            scope: new.scope,
            target_url: new.target_url,
            secret: new.secret,
            events: new.events,
            ca_certificate: None,
            proxy: Some(ProxyUrl::new("http://proxy:3128").unwrap()),
            description: Some("d".into()),
            enabled: false,
            disabled_reason: Some("410 Gone".into()),
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(1),
        };
        let patch = WebhookPatchInput {
            target_url: Some("https://example.org/new".into()),
            secret: Some(String::new()),
            proxy_url: Some(None),
            enabled: Some(true),
            ..WebhookPatchInput::default()
        }
        .validate(&catalog)
        .unwrap();
        let blank = WebhookPatchInput {
            secret: Some("  ".into()),
            ..WebhookPatchInput::default()
        }
        .validate(&catalog)
        .unwrap_err();
        assert_eq!(
            blank.field(),
            "secret",
            "a blank secret is refused, not ignored"
        );
        assert!(
            patch.secret.is_none(),
            "an empty secret on edit keeps the old one"
        );
        patch.apply(&mut webhook, Timestamp::from_millis(2));
        assert_eq!(webhook.target_url.as_str(), "https://example.org/new");
        assert_eq!(webhook.secret.expose(), b"s3cr3t");
        assert!(webhook.proxy.is_none());
        assert_eq!(webhook.description.as_deref(), Some("d"));
        assert!(webhook.enabled && webhook.disabled_reason.is_none());
        assert_eq!(webhook.updated_at, Timestamp::from_millis(2));
        assert!(WebhookPatch::default().is_empty());
    }

    #[test]
    fn patch_errors_name_the_field() {
        let catalog = EventCatalog::built_in();
        let bad = |p: WebhookPatchInput| p.validate(&catalog).unwrap_err().field().to_owned();
        assert_eq!(
            bad(WebhookPatchInput {
                target_url: Some(String::new()),
                ..Default::default()
            }),
            "targetUrl"
        );
        assert_eq!(
            bad(WebhookPatchInput {
                secret: Some("x".repeat(2000)),
                ..Default::default()
            }),
            "secret"
        );
        assert_eq!(
            bad(WebhookPatchInput {
                events: Some(vec![]),
                ..Default::default()
            }),
            "events"
        );
        assert_eq!(
            bad(WebhookPatchInput {
                ca_certificate: Some(Some("x".into())),
                ..Default::default()
            }),
            "caCertificate"
        );
        assert_eq!(
            bad(WebhookPatchInput {
                proxy_url: Some(Some("x".into())),
                ..Default::default()
            }),
            "proxy.url"
        );
    }
}
