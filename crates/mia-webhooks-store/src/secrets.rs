//! Webhook secrets at rest: sealed with XChaCha20-Poly1305 under an operator key, or kept as
//! given when no key is configured.
//!
//! A stored secret is text in one of two forms:
//!
//! - `plain:<secret>`: no operator key was configured when it was written;
//! - `sealed:v1:<key id>:<base64 of nonce ++ ciphertext>`: sealed under the key whose id is
//!   given (the first 4 bytes of the SHA-256 of the key, in hex), with a random 24-byte nonce
//!   and the webhook id as associated data, so a sealed value copied onto another webhook does
//!   not open.
//!
//! Keys rotate: [`SecretKeys`] holds the current key, which seals every new write, and older
//! keys, which still open what they sealed. Updating a webhook re-seals its secret with the
//! current key. Values stored in plain text stay readable after a key is configured and are
//! sealed on their next update.
//!
//! Opening fails with [`StoreError::SecretKey`] naming the key id, never with garbage and never
//! with the secret in the message.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use mia_webhooks_model::{Secret, WebhookId};
use sha2::{Digest as _, Sha256};

use crate::{Result, StoreError};

/// The length of an operator key, in bytes.
pub const KEY_LEN: usize = 32;

const NONCE_LEN: usize = 24;
const PLAIN_PREFIX: &str = "plain:";
const SEALED_PREFIX: &str = "sealed:v1:";
/// Associated data prefix: binds a sealed value to this purpose and format.
const AAD_PREFIX: &[u8] = b"mia-webhooks/webhook-secret/v1/";

/// The operator keys that seal webhook secrets at rest: the current key and older ones.
///
/// `Debug` shows key ids only, never key material.
#[derive(Clone)]
pub struct SecretKeys {
    /// The key new writes use; first.
    keys: Vec<OperatorKey>,
}

#[derive(Clone)]
struct OperatorKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SecretKeys {
    /// Parses the current key and older keys, each 32 bytes in standard base64 (as printed by
    /// `openssl rand -base64 32`). Surrounding whitespace is ignored. Errors say which key is
    /// wrong and how, and never contain key material.
    pub fn parse<S: AsRef<str>>(current_b64: &str, old_b64s: &[S]) -> Result<Self> {
        let mut keys = vec![OperatorKey::parse(current_b64, "the current secret key")?];
        for (i, old) in old_b64s.iter().enumerate() {
            let key = OperatorKey::parse(old.as_ref(), &format!("old secret key #{}", i + 1))?;
            // The same key given twice (say, as current and as old) is kept once.
            if keys.iter().all(|k| k.id != key.id) {
                keys.push(key);
            }
        }
        Ok(SecretKeys { keys })
    }

    /// Builds keys from raw bytes: `current` first, then older keys.
    pub fn from_bytes(current: [u8; KEY_LEN], old: &[[u8; KEY_LEN]]) -> Self {
        let mut keys = vec![OperatorKey::new(&current)];
        for key in old {
            let key = OperatorKey::new(key);
            if keys.iter().all(|k| k.id != key.id) {
                keys.push(key);
            }
        }
        SecretKeys { keys }
    }

    /// The id of the key that seals new writes.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The ids of all keys, the current one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    fn current(&self) -> &OperatorKey {
        &self.keys[0]
    }

    fn find(&self, id: &str) -> Option<&OperatorKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

impl OperatorKey {
    fn parse(b64: &str, what: &str) -> Result<Self> {
        let bytes = BASE64.decode(b64.trim()).map_err(|_| {
            StoreError::Config(format!(
                "{what} is not valid base64 (generate a key with `openssl rand -base64 32`)"
            ))
        })?;
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            StoreError::Config(format!(
                "{what} decodes to {} bytes; a key must be exactly {KEY_LEN} bytes \
                 (generate one with `openssl rand -base64 32`)",
                bytes.len()
            ))
        })?;
        Ok(OperatorKey::new(&key))
    }

    fn new(key: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(key);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        OperatorKey {
            id,
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }
}

fn aad(webhook: WebhookId) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(webhook.as_uuid().as_bytes());
    aad
}

/// The stored form of a webhook's secret: sealed under the current key when `keys` is set,
/// plain otherwise.
pub(crate) fn seal_secret(
    keys: Option<&SecretKeys>,
    webhook: WebhookId,
    secret: &Secret,
) -> Result<String> {
    let Some(keys) = keys else {
        return Ok(format!("{PLAIN_PREFIX}{}", secret.expose_str()));
    };
    let key = keys.current();
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = aad(webhook);
    let ciphertext = key
        .cipher
        .encrypt(
            &nonce,
            Payload {
                msg: secret.expose(),
                aad: &aad,
            },
        )
        .map_err(|_| {
            StoreError::SecretKey(format!(
                "cannot seal the secret of webhook {webhook} with key {}",
                key.id
            ))
        })?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(format!(
        "{SEALED_PREFIX}{}:{}",
        key.id,
        BASE64.encode(sealed)
    ))
}

/// Says, at error level, that a claim set aside the deliveries of a webhook whose secret it
/// could not open. `why` is a [`StoreError::SecretKey`] message: it names the webhook and the
/// key id, never key material or the secret.
pub(crate) fn log_unreadable(webhook: uuid::Uuid, why: &str) {
    tracing::error!(
        %webhook,
        backoff_secs = crate::UNREADABLE_SECRET_BACKOFF.as_secs(),
        "{why}: its deliveries wait, pending, while every other webhook's are claimed; \
         configure the key that sealed it (MIA_WEBHOOKS_OLD_SECRET_KEYS) or set a new secret"
    );
}

/// The secret of `webhook` from its stored form.
///
/// Fails with [`StoreError::SecretKey`] when it is sealed under a key that is not configured or
/// does not open it, and with [`StoreError::Corrupt`] when the stored text is in no known form.
pub(crate) fn open_secret(
    keys: Option<&SecretKeys>,
    webhook: WebhookId,
    stored: &str,
) -> Result<Secret> {
    if let Some(plain) = stored.strip_prefix(PLAIN_PREFIX) {
        return Secret::new(plain).map_err(|_| {
            StoreError::Corrupt(format!(
                "the stored secret of webhook {webhook} is not a valid secret"
            ))
        });
    }
    let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
        return Err(StoreError::Corrupt(format!(
            "the stored secret of webhook {webhook} is in an unknown format"
        )));
    };
    let corrupt = || {
        StoreError::Corrupt(format!(
            "the sealed secret of webhook {webhook} is malformed"
        ))
    };
    let (key_id, b64) = rest.split_once(':').ok_or_else(corrupt)?;
    let sealed = BASE64.decode(b64).map_err(|_| corrupt())?;
    if sealed.len() < NONCE_LEN {
        return Err(corrupt());
    }
    let Some(keys) = keys else {
        return Err(StoreError::SecretKey(format!(
            "the secret of webhook {webhook} is sealed with key {key_id}, but no secret key is configured"
        )));
    };
    let Some(key) = keys.find(key_id) else {
        return Err(StoreError::SecretKey(format!(
            "the secret of webhook {webhook} is sealed with key {key_id}, which is not among the configured keys ({})",
            keys.key_ids().collect::<Vec<_>>().join(", ")
        )));
    };
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let aad = aad(webhook);
    let plain = key
        .cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
        .map_err(|_| {
            StoreError::SecretKey(format!(
                "the secret of webhook {webhook} does not open with key {key_id} (a different key with the same id, \
                 or the stored value was altered)"
            ))
        })?;
    let text = String::from_utf8(plain).map_err(|_| corrupt())?;
    Secret::new(text).map_err(|_| corrupt())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: [u8; 32] = [7; 32];
    const KEY_B: [u8; 32] = [9; 32];

    fn b64(key: &[u8]) -> String {
        BASE64.encode(key)
    }

    fn secret() -> Secret {
        Secret::new("hunter2-the-secret").unwrap()
    }

    fn check_parse_error(current: &str, old: &[&str], expected: &str) {
        match SecretKeys::parse(current, old) {
            Err(StoreError::Config(message)) => {
                assert!(
                    message.contains(expected),
                    "{message:?} should contain {expected:?}"
                );
                assert!(
                    !message.contains(current.trim()) || current.trim().is_empty(),
                    "{message:?} leaks the key"
                );
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn parse_errors_say_which_key_and_why() {
        check_parse_error(
            "not base64!!",
            &[],
            "the current secret key is not valid base64",
        );
        check_parse_error(&b64(&[1; 31]), &[], "decodes to 31 bytes");
        check_parse_error(&b64(&[1; 33]), &[], "exactly 32 bytes");
        check_parse_error(
            &b64(&KEY_A),
            &["%%%"],
            "old secret key #1 is not valid base64",
        );
        check_parse_error(
            &b64(&KEY_A),
            &[&b64(&KEY_B), &b64(&[0; 16])],
            "old secret key #2 decodes to 16 bytes",
        );
    }

    #[test]
    fn key_id_is_the_first_four_bytes_of_the_sha256() {
        let keys = SecretKeys::parse(&format!("  {}\n", b64(&KEY_A)), &[b64(&KEY_B), b64(&KEY_A)])
            .unwrap();
        let expected: String = Sha256::digest(KEY_A)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(keys.current_key_id(), expected);
        assert_eq!(keys.key_ids().count(), 2, "a repeated key is kept once");
        assert!(!format!("{keys:?}").contains(&b64(&KEY_A)));
    }

    #[test]
    fn sealed_secrets_open_and_do_not_show_the_secret() {
        let keys = SecretKeys::from_bytes(KEY_A, &[]);
        let id = WebhookId::new();
        let sealed = seal_secret(Some(&keys), id, &secret()).unwrap();
        assert!(
            sealed.starts_with(&format!("sealed:v1:{}:", keys.current_key_id())),
            "{sealed}"
        );
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            open_secret(Some(&keys), id, &sealed).unwrap().expose(),
            secret().expose()
        );
        let again = seal_secret(Some(&keys), id, &secret()).unwrap();
        assert_ne!(sealed, again, "every seal takes a fresh nonce");
    }

    #[test]
    fn plain_secrets_without_a_key_and_readable_with_one() {
        let id = WebhookId::new();
        let stored = seal_secret(None, id, &secret()).unwrap();
        assert_eq!(stored, "plain:hunter2-the-secret");
        let keys = SecretKeys::from_bytes(KEY_A, &[]);
        assert_eq!(
            open_secret(Some(&keys), id, &stored).unwrap().expose(),
            secret().expose()
        );
        assert_eq!(
            open_secret(None, id, &stored).unwrap().expose(),
            secret().expose()
        );
    }

    #[test]
    fn old_keys_open_what_they_sealed_and_new_writes_use_the_current_key() {
        let id = WebhookId::new();
        let old = SecretKeys::from_bytes(KEY_A, &[]);
        let sealed_old = seal_secret(Some(&old), id, &secret()).unwrap();
        let rotated = SecretKeys::from_bytes(KEY_B, &[KEY_A]);
        assert_eq!(
            open_secret(Some(&rotated), id, &sealed_old)
                .unwrap()
                .expose(),
            secret().expose()
        );
        let sealed_new = seal_secret(Some(&rotated), id, &secret()).unwrap();
        assert!(sealed_new.contains(rotated.current_key_id()));
        assert_ne!(rotated.current_key_id(), old.current_key_id());
    }

    fn secret_key_error(result: Result<Secret>) -> String {
        match result {
            Err(StoreError::SecretKey(message)) => {
                assert!(!message.contains("hunter2"), "{message:?} leaks the secret");
                message
            }
            Err(other) => panic!("expected a secret key error, got {other:?}"),
            Ok(_) => panic!("expected a secret key error, got a secret"),
        }
    }

    #[test]
    fn wrong_or_missing_keys_are_clear_errors_naming_the_key_id() {
        let id = WebhookId::new();
        let keys = SecretKeys::from_bytes(KEY_A, &[]);
        let sealed = seal_secret(Some(&keys), id, &secret()).unwrap();
        let key_id = keys.current_key_id();
        let message = secret_key_error(open_secret(None, id, &sealed));
        assert!(
            message.contains(key_id) && message.contains("no secret key is configured"),
            "{message}"
        );
        let other = SecretKeys::from_bytes(KEY_B, &[]);
        let message = secret_key_error(open_secret(Some(&other), id, &sealed));
        assert!(
            message.contains(key_id) && message.contains("not among the configured keys"),
            "{message}"
        );
    }

    #[test]
    fn a_sealed_secret_does_not_open_on_another_webhook_or_when_altered() {
        let keys = SecretKeys::from_bytes(KEY_A, &[]);
        let id = WebhookId::new();
        let sealed = seal_secret(Some(&keys), id, &secret()).unwrap();
        secret_key_error(open_secret(Some(&keys), WebhookId::new(), &sealed));
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = BASE64.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{head}:{}", BASE64.encode(bytes));
        secret_key_error(open_secret(Some(&keys), id, &altered));
    }

    #[test]
    fn unknown_forms_are_corrupt() {
        for stored in [
            "hunter2",
            "sealed:v1:abcd",
            "sealed:v1:abcd:!!!",
            "sealed:v2:abcd:AAAA",
        ] {
            let keys = SecretKeys::from_bytes(KEY_A, &[]);
            match open_secret(Some(&keys), WebhookId::new(), stored) {
                Err(StoreError::Corrupt(message)) => assert!(!message.contains("hunter2")),
                other => panic!("{stored}: expected corrupt, got {other:?}"),
            }
        }
    }
}
