//! `serve`, `migrate`, `token create` and `emit`: the server library on the command line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use mia_webhooks_model::Role;
use mia_webhooks_server::{Config, LogFormat, Server};

use crate::cli::{EmitArgs, TokenCreateArgs};

/// Exit code for usage and configuration errors.
const USAGE: u8 = 2;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|err| {
        eprintln!("mia-webhooks: {err}");
        ExitCode::from(USAGE)
    })
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already initialised (never in practice): keep the first subscriber.
    drop(result);
}

fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("mia-webhooks: {err:#}");
    ExitCode::FAILURE
}

pub(crate) fn serve(config_path: Option<&Path>) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_tracing(config.log_format);
    let result = runtime().and_then(|rt| rt.block_on(run_server(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

async fn run_server(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    if let Some(token) = server.bootstrap_token() {
        println!(
            "mia-webhooks: the database had no API token, so an instance-admin token was created."
        );
        println!("It is shown only this once; keep it somewhere safe:");
        println!("{token}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections or claims; finishing attempts in flight");
    server.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

pub(crate) fn migrate(config_path: Option<&Path>) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_tracing(config.log_format);
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            mia_webhooks_server::open_store(&config)
                .await
                .context("cannot open the database")
        })
    });
    match result {
        Ok(_) => {
            println!("mia-webhooks: migrations applied");
            ExitCode::SUCCESS
        }
        Err(err) => report(&err),
    }
}

pub(crate) fn token_create(config_path: Option<&Path>, args: &TokenCreateArgs) -> ExitCode {
    let role = match Role::new(&args.role, args.tenant.as_deref(), args.project.as_deref()) {
        Ok(role) => role,
        Err(err) => {
            eprintln!("mia-webhooks: {err}");
            return ExitCode::from(USAGE);
        }
    };
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let store = mia_webhooks_server::open_store(&config)
                .await
                .context("cannot open the database")?;
            mia_webhooks_server::create_token(&store, role.clone(), &args.label)
                .await
                .context("cannot store the token")
        })
    });
    match result {
        Ok(token) => {
            println!("Created a {role} token. It is shown only this once:");
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => report(&err),
    }
}

pub(crate) fn emit(args: &EmitArgs) -> ExitCode {
    let payload_text = match args.payload.strip_prefix('@') {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("mia-webhooks: cannot read the payload file {path}: {err}");
                return ExitCode::from(USAGE);
            }
        },
        None => args.payload.clone(),
    };
    let payload: serde_json::Value = match serde_json::from_str(&payload_text) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        Ok(_) => {
            eprintln!("mia-webhooks: --payload must be a JSON object");
            return ExitCode::from(USAGE);
        }
        Err(err) => {
            eprintln!("mia-webhooks: --payload is not valid JSON: {err}");
            return ExitCode::from(USAGE);
        }
    };
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| mia_webhooks_model::Timestamp::now().as_millis());
    let envelope = serde_json::json!({"eventName": args.event, "eventTimestamp": timestamp, "payload": payload});
    let url = format!("{}/api/events", args.server.trim_end_matches('/'));
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let response = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&args.token)
                .json(&envelope)
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Ok::<_, anyhow::Error>((status, body))
        })
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("mia-webhooks: the server answered {status}: {body}");
            ExitCode::FAILURE
        }
        Err(err) => report(&err),
    }
}
