//! The command line: subcommands and their arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Webhooks for the Console: signed, reliable event delivery.
#[derive(Debug, Parser)]
#[command(name = "mia-webhooks", version, about, long_about = None)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the X-Mia-Signature of a payload: hex(sha256(payload ++ secret)).
    Sign(SignArgs),
    /// Check an X-Mia-Signature: exit 0 when it matches, 1 when it does not.
    Verify(VerifyArgs),
}

/// Where the secret comes from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct SecretSource {
    /// Read the secret from FILE: its bytes, except that one trailing "\n" or "\r\n" is dropped
    /// (so `echo secret > FILE` works). Prefer this to --secret, which other users can see in
    /// the process list.
    #[arg(long, value_name = "FILE")]
    pub(crate) secret_file: Option<PathBuf>,

    /// The secret itself, as text.
    #[arg(long, value_name = "SECRET")]
    pub(crate) secret: Option<String>,
}

/// Arguments of `sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    pub(crate) secret: SecretSource,

    /// The payload file, signed byte for byte; standard input when absent.
    #[arg(value_name = "PAYLOAD_FILE")]
    pub(crate) payload: Option<PathBuf>,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) secret: SecretSource,

    /// The X-Mia-Signature header value (64 hex digits, optionally prefixed by "sha256=").
    #[arg(long, value_name = "SIG")]
    pub(crate) signature: String,

    /// The payload file, byte for byte; standard input when absent.
    #[arg(value_name = "PAYLOAD_FILE")]
    pub(crate) payload: Option<PathBuf>,
}
