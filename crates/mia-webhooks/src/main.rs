//! The `mia-webhooks` binary: glue between the command line and the libraries.
//!
//! Exit codes: 0 success; 1 a failure at run time (or a signature that does not match);
//! 2 a usage or configuration error.

mod cli;
mod server_cmd;
mod signature_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Sign(args)) => signature_cmd::sign(&args),
        Some(cli::Command::Verify(args)) => signature_cmd::verify(&args),
        Some(cli::Command::Emit(args)) => server_cmd::emit(&args),
        Some(cli::Command::Migrate) => server_cmd::migrate(cli.config.as_deref()),
        Some(cli::Command::Token(cli::TokenCommand::Create(args))) => {
            server_cmd::token_create(cli.config.as_deref(), &args)
        }
        Some(cli::Command::Serve) | None => server_cmd::serve(cli.config.as_deref()),
    }
}
