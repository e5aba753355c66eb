//! Constant-time verification of a signature against one secret or a set of secrets.

use std::error::Error;
use std::fmt;

use subtle::{Choice, ConstantTimeEq};

use crate::{Signature, sign};

/// Why a signature was rejected.
///
/// The messages are deliberately terse: a receiver should answer every variant the same way
/// (for example `401 Unauthorized`) and tell the sender nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header is not a signature: not 64 hex digits after trimming whitespace and an
    /// optional `sha256=` prefix.
    Malformed,
    /// The header is a well-formed signature, but not the one of this payload under any of the
    /// secrets.
    Mismatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed signature",
            Self::Mismatch => "signature mismatch",
        })
    }
}

impl Error for VerifyError {}

/// Verifies the `X-Mia-Signature` header value of a delivery whose body is `payload`.
///
/// The header may carry surrounding ASCII whitespace, a `sha256=` prefix in any case and hex
/// digits in any case. The expected digest is computed from `payload` and `secret` and compared
/// with the header in constant time. Nothing is allocated.
///
/// # Errors
///
/// [`VerifyError::Malformed`] if the header is not a signature, [`VerifyError::Mismatch`] if it
/// is not the signature of `payload` under `secret`.
pub fn verify(payload: &[u8], secret: &[u8], header: &str) -> Result<(), VerifyError> {
    verify_signature(payload, secret, &Signature::parse_header(header)?)
}

/// Verifies an already parsed signature; see [`verify`].
///
/// # Errors
///
/// [`VerifyError::Mismatch`] if `signature` is not the signature of `payload` under `secret`.
pub fn verify_signature(
    payload: &[u8],
    secret: &[u8],
    signature: &Signature,
) -> Result<(), VerifyError> {
    into_result(ct_eq(&sign(payload, secret), signature))
}

/// Compares two signatures in constant time.
///
/// The comparison runs on four 64-bit words rather than 32 bytes: `subtle` guards each element
/// with an optimization barrier, and eight times fewer barriers keep verification close to the
/// cost of the hash alone.
fn ct_eq(a: &Signature, b: &Signature) -> Choice {
    words(a).as_slice().ct_eq(words(b).as_slice())
}

/// The signature as four native-endian 64-bit words.
fn words(signature: &Signature) -> [u64; 4] {
    let mut words = [0_u64; 4];
    for (word, chunk) in words.iter_mut().zip(signature.as_bytes().chunks_exact(8)) {
        let mut bytes = [0_u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_ne_bytes(bytes);
    }
    words
}

fn into_result(matched: Choice) -> Result<(), VerifyError> {
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Verifies signatures against several secrets, so a secret can be rotated without downtime.
///
/// During a rotation, configure the receiver with both the old and the new secret, change the
/// webhook's secret, wait until deliveries signed with the old one have drained (retries included),
/// then drop the old secret.
///
/// Every secret is tried on every call, whether or not an earlier one matched, and the results are
/// combined in constant time, so timing does not reveal which secret matched. The time does grow
/// with the number of secrets, which is not secret.
///
/// `Debug` prints how many secrets there are, never the secrets.
///
/// ```
/// use mia_webhooks_signature::{Verifier, sign};
///
/// let verifier = Verifier::new(["old-secret", "new-secret"]);
/// let body = br#"{"eventName":"project_created"}"#;
/// let header = sign(body, b"new-secret").to_string();
/// assert!(verifier.verify(body, &header).is_ok());
/// assert_eq!(format!("{verifier:?}"), "Verifier { secrets: 2, .. }");
/// ```
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Box<[u8]>>,
}

impl Verifier {
    /// Creates a verifier that accepts a signature made with any of `secrets`.
    ///
    /// With no secrets at all, every well-formed signature is a [`VerifyError::Mismatch`].
    pub fn new<S>(secrets: impl IntoIterator<Item = S>) -> Self
    where
        S: Into<Vec<u8>>,
    {
        Self {
            secrets: secrets
                .into_iter()
                .map(|secret| secret.into().into_boxed_slice())
                .collect(),
        }
    }

    /// Verifies a header value against every secret; see [`verify`](crate::verify()) for the
    /// accepted header forms. Nothing is allocated.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Malformed`] if the header is not a signature, [`VerifyError::Mismatch`] if it
    /// is not the signature of `payload` under any of the secrets.
    pub fn verify(&self, payload: &[u8], header: &str) -> Result<(), VerifyError> {
        self.verify_signature(payload, &Signature::parse_header(header)?)
    }

    /// Verifies an already parsed signature against every secret.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Mismatch`] if `signature` is not the signature of `payload` under any of the
    /// secrets.
    pub fn verify_signature(
        &self,
        payload: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        let matched = self
            .secrets
            .iter()
            .fold(Choice::from(0), |matched, secret| {
                matched | ct_eq(&sign(payload, secret), signature)
            });
        into_result(matched)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"eventName":"project_created","eventTimestamp":1}"#;

    #[track_caller]
    fn check(secret: &[u8], header: &str, expected: Result<(), VerifyError>) {
        assert_eq!(verify(BODY, secret, header), expected, "header {header:?}");
    }

    #[test]
    fn verify_accepts_every_tolerated_form_of_a_good_signature() {
        let good = sign(BODY, b"s3cr3t").to_string();
        check(b"s3cr3t", &good, Ok(()));
        check(b"s3cr3t", &good.to_uppercase(), Ok(()));
        check(b"s3cr3t", &format!("sha256={good}"), Ok(()));
        check(
            b"s3cr3t",
            &format!("SHA256={}", good.to_uppercase()),
            Ok(()),
        );
        check(b"s3cr3t", &format!("\t sha256={good} \r\n"), Ok(()));
    }

    #[test]
    fn verify_tells_malformed_from_mismatch() {
        let good = sign(BODY, b"s3cr3t").to_string();
        check(b"other", &good, Err(VerifyError::Mismatch));
        check(b"s3cr3t", &"0".repeat(64), Err(VerifyError::Mismatch));
        check(b"s3cr3t", "", Err(VerifyError::Malformed));
        check(b"s3cr3t", &good[..63], Err(VerifyError::Malformed));
        check(b"s3cr3t", &format!("{good}0"), Err(VerifyError::Malformed));
        check(
            b"s3cr3t",
            &format!("{}z", &good[..63]),
            Err(VerifyError::Malformed),
        );
        check(b"s3cr3t", &"ü".repeat(32), Err(VerifyError::Malformed));
    }

    #[test]
    fn errors_are_terse() {
        assert_eq!(VerifyError::Malformed.to_string(), "malformed signature");
        assert_eq!(VerifyError::Mismatch.to_string(), "signature mismatch");
    }

    #[test]
    fn verifier_accepts_any_of_its_secrets() {
        let verifier = Verifier::new([b"old".to_vec(), b"new".to_vec()]);
        for secret in [&b"old"[..], b"new"] {
            assert_eq!(
                verifier.verify(BODY, &sign(BODY, secret).to_string()),
                Ok(())
            );
        }
        assert_eq!(
            verifier.verify(BODY, &sign(BODY, b"older").to_string()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verifier.verify(BODY, "nope"), Err(VerifyError::Malformed));
    }

    #[test]
    fn verifier_without_secrets_accepts_nothing() {
        let verifier = Verifier::new(Vec::<Vec<u8>>::new());
        assert_eq!(
            verifier.verify(BODY, &sign(BODY, b"").to_string()),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn verifier_debug_hides_secrets() {
        let verifier = Verifier::new([String::from("hunter2"), String::from("hunter3")]);
        let debug = format!("{verifier:?}");
        assert_eq!(debug, "Verifier { secrets: 2, .. }");
        assert!(!debug.contains("hunter"));
    }
}
