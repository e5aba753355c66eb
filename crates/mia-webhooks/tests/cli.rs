//! The `sign` and `verify` subcommands, run as a user would: the real binary, real files, stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const VECTORS: &str = include_str!("../../mia-webhooks-signature/testdata/signature-vectors.json");

struct Vector {
    name: String,
    payload: Vec<u8>,
    secret: Vec<u8>,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: v["name"].as_str().unwrap().to_owned(),
            payload: STANDARD.decode(v["payload_b64"].as_str().unwrap()).unwrap(),
            secret: STANDARD.decode(v["secret_b64"].as_str().unwrap()).unwrap(),
            signature: v["signature"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mia-webhooks"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A process that fails on its arguments exits before reading: a broken pipe is expected.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn sign_reproduces_every_vector_from_a_file_and_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    for v in vectors() {
        let secret = write(dir.path(), "secret", &v.secret);
        let payload = write(dir.path(), "payload", &v.payload);
        let out = run(&["sign", "--secret-file", &secret, &payload], b"");
        assert!(
            out.status.success(),
            "{}: {}",
            v.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}\n", v.signature),
            "{}",
            v.name
        );

        let out = run(&["sign", "--secret-file", &secret], &v.payload);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}\n", v.signature),
            "{} (stdin)",
            v.name
        );
    }
}

#[test]
fn secret_file_drops_exactly_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let v = &vectors()[0];
    for suffix in [&b"\n"[..], b"\r\n"] {
        let secret = write(
            dir.path(),
            "secret",
            &[v.secret.as_slice(), suffix].concat(),
        );
        let out = run(&["sign", "--secret-file", &secret], &v.payload);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}\n", v.signature)
        );
    }
    let secret = write(
        dir.path(),
        "secret",
        &[v.secret.as_slice(), b"\n\n"].concat(),
    );
    let out = run(&["sign", "--secret-file", &secret], &v.payload);
    assert_ne!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", v.signature)
    );
}

#[test]
fn verify_accepts_every_vector_and_rejects_any_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    for v in vectors() {
        let secret = write(dir.path(), "secret", &v.secret);
        let out = run(
            &[
                "verify",
                "--secret-file",
                &secret,
                "--signature",
                &v.signature,
            ],
            &v.payload,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            v.name,
            String::from_utf8_lossy(&out.stderr)
        );

        // Changing the first, a middle or the last byte of payload, secret or signature fails.
        for at in positions(v.payload.len()) {
            let mut payload = v.payload.clone();
            payload[at] ^= 0x01;
            let out = run(
                &[
                    "verify",
                    "--secret-file",
                    &secret,
                    "--signature",
                    &v.signature,
                ],
                &payload,
            );
            assert_eq!(out.status.code(), Some(1), "{}: payload byte {at}", v.name);
            assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
        }
        for at in positions(v.secret.len()) {
            let mut bad = v.secret.clone();
            bad[at] ^= 0x01;
            let bad_secret = write(dir.path(), "bad-secret", &bad);
            let out = run(
                &[
                    "verify",
                    "--secret-file",
                    &bad_secret,
                    "--signature",
                    &v.signature,
                ],
                &v.payload,
            );
            assert_eq!(out.status.code(), Some(1), "{}: secret byte {at}", v.name);
        }
        for at in positions(v.signature.len()) {
            let mut sig = v.signature.clone().into_bytes();
            sig[at] = if sig[at] == b'0' { b'1' } else { b'0' };
            let sig = String::from_utf8(sig).unwrap();
            let out = run(
                &["verify", "--secret-file", &secret, "--signature", &sig],
                &v.payload,
            );
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}: signature char {at}",
                v.name
            );
        }
    }
}

fn positions(len: usize) -> Vec<usize> {
    let mut p = vec![0, len / 2, len.saturating_sub(1)];
    p.dedup();
    p.retain(|&i| i < len);
    p
}

#[test]
fn verify_takes_header_forms_and_an_inline_secret() {
    let v = &vectors()[0];
    let secret = String::from_utf8(v.secret.clone()).unwrap();
    for header in [
        v.signature.clone(),
        format!("sha256={}", v.signature),
        format!("  {}\t", v.signature.to_uppercase()),
    ] {
        let out = run(
            &["verify", "--secret", &secret, "--signature", &header],
            &v.payload,
        );
        assert_eq!(out.status.code(), Some(0), "{header:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let v = &vectors()[0];
    let cases: [&[&str]; 4] = [
        &["sign"],
        &["verify", "--secret", "s"],
        &["sign", "--secret", "s", "--secret-file", "f"],
        &["sign", "--secret-file", "/nonexistent/secret"],
    ];
    for args in cases {
        let out = run(args, &v.payload);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    let out = run(
        &["verify", "--secret", "s", "--signature", "zz"],
        &v.payload,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a malformed signature is a mismatch, not a usage error"
    );
}

#[test]
fn help_lists_every_subcommand() {
    let out = run(&["--help"], b"");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "migrate", "token", "emit", "sign", "verify"] {
        assert!(help.contains(command), "{command} missing from: {help}");
    }
}

#[test]
fn help_says_how_the_secret_file_is_read() {
    let out = run(&["sign", "--help"], b"");
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("trailing"), "{help}");
}
