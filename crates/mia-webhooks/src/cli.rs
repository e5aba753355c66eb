//! The command line: subcommands and their arguments.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Webhooks for the Console: signed, reliable event delivery.
///
/// With no subcommand, `serve` runs with the default configuration: the REST API, the admin page
/// and the delivery workers on 127.0.0.1:8080, with SQLite at ./mia-webhooks.db.
#[derive(Debug, Parser)]
#[command(name = "mia-webhooks", version, about, long_about)]
pub(crate) struct Cli {
    /// A TOML configuration file; `MIA_WEBHOOKS_*` environment variables override it.
    #[arg(long, global = true, value_name = "FILE", env = "MIA_WEBHOOKS_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server: REST API, admin page and delivery workers (the default).
    Serve,
    /// Apply database migrations and exit (the server also applies them at start).
    Migrate,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Post an event to a running server.
    Emit(EmitArgs),
    /// Print the X-Mia-Signature of a payload: hex(sha256(payload ++ secret)).
    Sign(SignArgs),
    /// Check an X-Mia-Signature: exit 0 when it matches, 1 when it does not.
    Verify(VerifyArgs),
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it once, alone on the last line of standard output.
    Create(TokenCreateArgs),
}

/// Arguments of `token create`.
#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// instance-admin, company-admin, project-admin or emitter.
    #[arg(long, value_name = "ROLE")]
    pub(crate) role: String,
    /// The company, for company-admin and project-admin tokens.
    #[arg(long, value_name = "TENANT_ID")]
    pub(crate) tenant: Option<String>,
    /// The project, for project-admin tokens.
    #[arg(long, value_name = "PROJECT_ID")]
    pub(crate) project: Option<String>,
    /// A label to recognise the token by.
    #[arg(long, default_value = "cli")]
    pub(crate) label: String,
}

/// Arguments of `emit`. (Its `Debug` hides the token.)
#[derive(Args)]
pub(crate) struct EmitArgs {
    /// The server's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) server: String,
    /// An emitter or instance-admin token.
    #[arg(long, value_name = "TOKEN", env = "MIA_WEBHOOKS_TOKEN")]
    pub(crate) token: String,
    /// The event name, such as project_created.
    #[arg(long, value_name = "NAME")]
    pub(crate) event: String,
    /// The payload: a JSON object, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub(crate) payload: String,
    /// The event time in Unix epoch milliseconds (default: now).
    #[arg(long, value_name = "MS")]
    pub(crate) timestamp: Option<i64>,
}

/// Where the secret comes from. (Its `Debug` hides an inline secret.)
#[derive(Args)]
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

impl fmt::Debug for EmitArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitArgs")
            .field("server", &self.server)
            .field("token", &"***")
            .field("event", &self.event)
            .field("payload", &self.payload)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("secret_file", &self.secret_file)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_the_token_nor_an_inline_secret() {
        for line in [
            "mia-webhooks emit --token t0ken-value --event project_created --payload {}",
            "mia-webhooks sign --secret s3cr3t-value",
        ] {
            let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
            let shown = format!("{cli:?}");
            assert!(!shown.contains("t0ken-value"), "{shown}");
            assert!(!shown.contains("s3cr3t-value"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
