//! Property laws of signing, verifying and printing signatures.

use mia_webhooks_signature::{Signature, Verifier, VerifyError, sign, verify};
use proptest::prelude::*;

/// Payloads and secrets: usually small, sometimes empty.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..512)
}

proptest! {
    #[test]
    fn verify_accepts_what_sign_produces(payload in bytes(), secret in bytes()) {
        let header = sign(&payload, &secret).to_string();
        prop_assert_eq!(verify(&payload, &secret, &header), Ok(()));
        prop_assert_eq!(Verifier::new([secret]).verify(&payload, &header), Ok(()));
    }

    #[test]
    fn any_flipped_payload_byte_fails(
        payload in proptest::collection::vec(any::<u8>(), 1..512),
        secret in bytes(),
        index in any::<prop::sample::Index>(),
        flip in 1..=u8::MAX,
    ) {
        let header = sign(&payload, &secret).to_string();
        let i = index.index(payload.len());
        let mut tampered = payload;
        tampered[i] ^= flip;
        prop_assert_eq!(verify(&tampered, &secret, &header), Err(VerifyError::Mismatch));
    }

    #[test]
    fn any_flipped_secret_byte_fails(
        payload in bytes(),
        secret in proptest::collection::vec(any::<u8>(), 1..256),
        index in any::<prop::sample::Index>(),
        flip in 1..=u8::MAX,
    ) {
        let header = sign(&payload, &secret).to_string();
        let i = index.index(secret.len());
        let mut wrong = secret;
        wrong[i] ^= flip;
        prop_assert_eq!(verify(&payload, &wrong, &header), Err(VerifyError::Mismatch));
    }

    #[test]
    fn any_changed_signature_hex_digit_fails(
        payload in bytes(),
        secret in bytes(),
        index in 0..64_usize,
        digit in "[0-9a-fA-F]",
    ) {
        let header = sign(&payload, &secret).to_string();
        let mut tampered = header.clone().into_bytes();
        tampered[index] = digit.as_bytes()[0];
        let tampered = String::from_utf8(tampered).expect("ASCII");
        let expected = if tampered.eq_ignore_ascii_case(&header) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        };
        prop_assert_eq!(verify(&payload, &secret, &tampered), expected);
    }

    #[test]
    fn display_and_from_str_round_trip(bytes in any::<[u8; 32]>()) {
        let signature = Signature::from(bytes);
        let printed = signature.to_string();
        prop_assert_eq!(printed.len(), 64);
        prop_assert!(printed.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(printed.parse::<Signature>(), Ok(signature));
        prop_assert_eq!(format!("sha256={}", printed.to_uppercase()).parse::<Signature>(), Ok(signature));
    }

    #[test]
    fn arbitrary_headers_never_panic_and_agree_with_from_str(
        payload in bytes(),
        secret in bytes(),
        header in any::<String>(),
    ) {
        let outcome = verify(&payload, &secret, &header);
        match header.parse::<Signature>() {
            Ok(_) => prop_assert_ne!(outcome, Err(VerifyError::Malformed)),
            Err(error) => {
                prop_assert_eq!(error, VerifyError::Malformed);
                prop_assert_eq!(outcome, Err(VerifyError::Malformed));
            }
        }
    }

    #[test]
    fn verifier_accepts_exactly_its_secrets(
        payload in bytes(),
        secrets in proptest::collection::vec(bytes(), 0..4),
        signer in bytes(),
    ) {
        let header = sign(&payload, &signer).to_string();
        let expected = if secrets.contains(&signer) { Ok(()) } else { Err(VerifyError::Mismatch) };
        prop_assert_eq!(Verifier::new(secrets).verify(&payload, &header), expected);
    }
}
