//! `sign` and `verify`: the signature crate on the command line.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{SecretSource, SignArgs, VerifyArgs};

/// Exit code for usage errors (unreadable files and the like), as clap uses.
const USAGE: u8 = 2;

pub(crate) fn sign(args: &SignArgs) -> ExitCode {
    let (payload, secret) = match inputs(&args.secret, args.payload.as_deref()) {
        Ok(inputs) => inputs,
        Err(err) => return usage_error(&err),
    };
    println!("{}", mia_webhooks_signature::sign(&payload, &secret));
    ExitCode::SUCCESS
}

pub(crate) fn verify(args: &VerifyArgs) -> ExitCode {
    let (payload, secret) = match inputs(&args.secret, args.payload.as_deref()) {
        Ok(inputs) => inputs,
        Err(err) => return usage_error(&err),
    };
    match mia_webhooks_signature::verify(&payload, &secret, &args.signature) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mia-webhooks: signature does not verify: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(err: &anyhow::Error) -> ExitCode {
    eprintln!("mia-webhooks: {err:#}");
    ExitCode::from(USAGE)
}

fn inputs(secret: &SecretSource, payload: Option<&Path>) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let secret = match (&secret.secret_file, &secret.secret) {
        (Some(path), _) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?;
            strip_one_newline(bytes)
        }
        (None, Some(text)) => text.clone().into_bytes(),
        (None, None) => anyhow::bail!("give the secret with --secret-file FILE or --secret SECRET"),
    };
    let payload = match payload {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read the payload file {}", path.display()))?,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the payload from standard input")?;
            bytes
        }
    };
    Ok((payload, secret))
}

/// Drops one trailing `\n` or `\r\n`: what `echo` and editors add to a secret file.
fn strip_one_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::strip_one_newline;

    fn check(input: &[u8], expected: &[u8]) {
        assert_eq!(strip_one_newline(input.to_vec()), expected, "{input:?}");
    }

    #[test]
    fn strips_exactly_one_trailing_newline() {
        check(b"secret\n", b"secret");
        check(b"secret\r\n", b"secret");
        check(b"secret\n\n", b"secret\n");
        check(b"secret", b"secret");
        check(b"secret\r", b"secret\r");
        check(b"\n", b"");
        check(b"", b"");
    }
}
