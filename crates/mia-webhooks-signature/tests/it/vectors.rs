//! Known-answer tests from `testdata/signature-vectors.json`, a copy of the project's shared
//! signature vectors.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mia_webhooks_signature::{Signature, Verifier, VerifyError, sign, verify};
use serde_json::Value;

/// Vectors at most this long get every byte position mutated; longer ones a spread of positions.
const EXHAUSTIVE_LEN: usize = 256;

struct Vector {
    name: String,
    payload: Vec<u8>,
    secret: Vec<u8>,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../../testdata/signature-vectors.json");
    let json: Value = serde_json::from_str(text).expect("vectors are JSON");
    let field = |v: &Value, name: &str| -> String {
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_owned()
    };
    let bytes = |v: &Value, name: &str| STANDARD.decode(field(v, name)).expect("valid base64");
    let vectors: Vec<Vector> = json["vectors"]
        .as_array()
        .expect("a vectors array")
        .iter()
        .map(|v| Vector {
            name: field(v, "name"),
            payload: bytes(v, "payload_b64"),
            secret: bytes(v, "secret_b64"),
            signature: field(v, "signature"),
        })
        .collect();
    assert!(vectors.len() >= 6, "the vector file lost vectors");
    vectors
}

/// Byte positions to mutate: all of them for short inputs, a spread including both ends otherwise.
fn positions(len: usize) -> Vec<usize> {
    if len <= EXHAUSTIVE_LEN {
        (0..len).collect()
    } else {
        (0..len).step_by(len / 64).chain([len - 1]).collect()
    }
}

#[test]
fn sign_reproduces_every_vector() {
    for v in vectors() {
        assert_eq!(
            sign(&v.payload, &v.secret).to_string(),
            v.signature,
            "{}",
            v.name
        );
    }
}

#[test]
fn verify_accepts_every_vector_in_every_header_form() {
    for v in vectors() {
        for header in [
            v.signature.clone(),
            v.signature.to_uppercase(),
            format!("sha256={}", v.signature),
            format!(" \tSHA256={}\r\n", v.signature.to_uppercase()),
        ] {
            assert_eq!(
                verify(&v.payload, &v.secret, &header),
                Ok(()),
                "{}: {header:?}",
                v.name
            );
        }
        let verifier = Verifier::new([b"not it".to_vec(), v.secret.clone()]);
        assert_eq!(
            verifier.verify(&v.payload, &v.signature),
            Ok(()),
            "{}",
            v.name
        );
    }
}

#[test]
fn verify_rejects_any_changed_payload_byte() {
    for v in vectors() {
        for i in positions(v.payload.len()) {
            let mut payload = v.payload.clone();
            payload[i] ^= 0x01;
            assert_eq!(
                verify(&payload, &v.secret, &v.signature),
                Err(VerifyError::Mismatch),
                "{}: payload byte {i}",
                v.name
            );
        }
    }
}

#[test]
fn verify_rejects_any_changed_secret_byte() {
    for v in vectors() {
        for i in positions(v.secret.len()) {
            let mut secret = v.secret.clone();
            secret[i] ^= 0x80;
            assert_eq!(
                verify(&v.payload, &secret, &v.signature),
                Err(VerifyError::Mismatch),
                "{}: secret byte {i}",
                v.name
            );
        }
    }
}

#[test]
fn verify_rejects_any_changed_signature_byte() {
    for v in vectors() {
        let signature: Signature = v.signature.parse().expect("vector signature parses");
        for i in 0..32 {
            let mut bytes = *signature.as_bytes();
            bytes[i] ^= 0x01;
            let header = Signature::from(bytes).to_string();
            assert_eq!(
                verify(&v.payload, &v.secret, &header),
                Err(VerifyError::Mismatch),
                "{}: signature byte {i}",
                v.name
            );
        }
    }
}

#[test]
fn verify_rejects_added_or_removed_bytes() {
    for v in vectors() {
        let mut longer = v.payload.clone();
        longer.push(b' ');
        assert_eq!(
            verify(&longer, &v.secret, &v.signature),
            Err(VerifyError::Mismatch)
        );
        if let Some((_, shorter)) = v.payload.split_last() {
            assert_eq!(
                verify(shorter, &v.secret, &v.signature),
                Err(VerifyError::Mismatch)
            );
        }
        let truncated = &v.signature[..63];
        assert_eq!(
            verify(&v.payload, &v.secret, truncated),
            Err(VerifyError::Malformed)
        );
        let extended = format!("{}0", v.signature);
        assert_eq!(
            verify(&v.payload, &v.secret, &extended),
            Err(VerifyError::Malformed)
        );
    }
}
