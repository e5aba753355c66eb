//! The `mia-webhooks` binary: glue between the command line and the libraries.
//!
//! Exit codes: 0 success, 1 a signature that does not match (or a failure at run time), 2 a usage
//! error (clap's own convention).

mod cli;
mod signature_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        None => {
            // Until the server exists, a bare run shows what the binary can do.
            let mut command = <cli::Cli as clap::CommandFactory>::command();
            match command.print_help() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Some(cli::Command::Sign(args)) => signature_cmd::sign(&args),
        Some(cli::Command::Verify(args)) => signature_cmd::verify(&args),
    }
}
