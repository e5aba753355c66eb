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

/// One `verify` run: its arguments, its standard input and the exit code it must give.
struct Case {
    label: String,
    args: Vec<String>,
    stdin: Vec<u8>,
    code: i32,
}

impl Case {
    fn verify(
        label: String,
        secret_file: &str,
        signature: &str,
        payload: Payload,
        code: i32,
    ) -> Self {
        let mut args = [
            "verify",
            "--secret-file",
            secret_file,
            "--signature",
            signature,
        ]
        .map(str::to_owned)
        .to_vec();
        let stdin = match payload {
            Payload::Stdin(bytes) => bytes,
            Payload::File(path) => {
                args.push(path);
                Vec::new()
            }
        };
        Case {
            label,
            args,
            stdin,
            code,
        }
    }
}

enum Payload {
    Stdin(Vec<u8>),
    File(String),
}

#[test]
fn verify_accepts_every_vector_and_rejects_any_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (i, v) in vectors().into_iter().enumerate() {
        let secret = write(dir.path(), &format!("secret-{i}"), &v.secret);
        let payload_file = write(dir.path(), &format!("payload-{i}"), &v.payload);
        let name = &v.name;
        cases.push(Case::verify(
            format!("{name} (stdin)"),
            &secret,
            &v.signature,
            Payload::Stdin(v.payload.clone()),
            0,
        ));
        cases.push(Case::verify(
            format!("{name} (file)"),
            &secret,
            &v.signature,
            Payload::File(payload_file),
            0,
        ));

        // Every byte of the payload, the secret and the signature, changed in turn, fails.
        for at in 0..v.payload.len() {
            let mut payload = v.payload.clone();
            payload[at] ^= 0x01;
            let payload = if at == 0 {
                Payload::File(write(dir.path(), &format!("payload-{i}-{at}"), &payload))
            } else {
                Payload::Stdin(payload)
            };
            cases.push(Case::verify(
                format!("{name}: payload byte {at}"),
                &secret,
                &v.signature,
                payload,
                1,
            ));
        }
        for at in 0..v.secret.len() {
            let mut bad = v.secret.clone();
            bad[at] ^= 0x01;
            let bad = write(dir.path(), &format!("secret-{i}-{at}"), &bad);
            let payload = Payload::Stdin(v.payload.clone());
            cases.push(Case::verify(
                format!("{name}: secret byte {at}"),
                &bad,
                &v.signature,
                payload,
                1,
            ));
        }
        for at in 0..v.signature.len() {
            let mut sig = v.signature.clone().into_bytes();
            sig[at] = if sig[at] == b'0' { b'1' } else { b'0' };
            let sig = String::from_utf8(sig).unwrap();
            let payload = Payload::Stdin(v.payload.clone());
            cases.push(Case::verify(
                format!("{name}: signature char {at}"),
                &secret,
                &sig,
                payload,
                1,
            ));
        }
    }
    assert!(cases.len() > 800, "{} cases", cases.len());

    // About 850 processes: four at a time.
    let chunk = cases.len().div_ceil(4);
    std::thread::scope(|s| {
        for part in cases.chunks(chunk) {
            s.spawn(move || {
                for case in part {
                    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
                    let out = run(&args, &case.stdin);
                    let stderr = String::from_utf8(out.stderr).unwrap();
                    assert_eq!(
                        out.status.code(),
                        Some(case.code),
                        "{}: {stderr}",
                        case.label
                    );
                    let lines = if case.code == 0 { 0 } else { 1 };
                    assert_eq!(stderr.lines().count(), lines, "{}: {stderr}", case.label);
                }
            });
        }
    });
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
