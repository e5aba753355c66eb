//! Fuzzes header parsing and verification of `X-Mia-Signature`.
//!
//! `cargo fuzz run signature_header` (nightly). The input is split into payload, secret and header;
//! the target asserts that verification never panics, that a parsed signature prints back to an
//! equivalent header, and that signing then verifying always succeeds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mia_webhooks_signature::{Signature, VerifyError, sign, verify};

fuzz_target!(|data: &[u8]| {
    // The first two bytes give the payload and secret lengths; the rest is split accordingly.
    let [a, b, rest @ ..] = data else { return };
    let (payload, rest) = rest.split_at(usize::from(*a).min(rest.len()));
    let (secret, header) = rest.split_at(usize::from(*b).min(rest.len()));
    let header = String::from_utf8_lossy(header);

    let outcome = verify(payload, secret, &header);
    match header.parse::<Signature>() {
        Ok(signature) => {
            assert_ne!(outcome, Err(VerifyError::Malformed));
            assert_eq!(verify(payload, secret, &signature.to_string()), outcome);
        }
        Err(error) => {
            assert_eq!(error, VerifyError::Malformed);
            assert_eq!(outcome, Err(VerifyError::Malformed));
        }
    }
    assert_eq!(
        verify(payload, secret, &sign(payload, secret).to_string()),
        Ok(())
    );
});
