//! `serve`, `migrate`, `token create` and `emit`: the server library on the command line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use mia_webhooks_model::Role;
use mia_webhooks_server::{Config, LogFormat, Server, ServerError};

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

/// Prints `err` on one line; a setting found unusable only at start is a configuration error
/// (exit 2) like those found while loading, anything else a failure at run time (exit 1).
fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("mia-webhooks: {}", one_line(err));
    match err.downcast_ref::<ServerError>() {
        Some(ServerError::Config(_)) => ExitCode::from(USAGE),
        _ => ExitCode::FAILURE,
    }
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
            eprintln!(
                "mia-webhooks: the server answered {status}: {}",
                error_summary(&body)
            );
            ExitCode::FAILURE
        }
        Err(err) => report(&err),
    }
}

/// `err` and its causes, joined by `: `, leaving out a cause whose text is already shown (an
/// error that prints its source would otherwise show it twice).
fn one_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        // A wrapper often ends with its source's text ("store: X" over "X"): that is said once.
        if !text.ends_with(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// One line for an error answer: the API's `{"error": {"code", "message", "field"}}` as
/// `code: message (field F)`, anything else with its whitespace folded and cut to 200 characters.
fn error_summary(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let error = &value["error"];
        if let (Some(code), Some(message)) = (error["code"].as_str(), error["message"].as_str()) {
            let field = match error["field"].as_str() {
                Some(field) => format!(" (field {field})"),
                None => String::new(),
            };
            return format!("{code}: {message}{field}");
        }
    }
    let folded = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match folded.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &folded[..cut]),
        None => folded,
    }
}

#[cfg(test)]
mod tests {
    use super::{error_summary, one_line};

    #[test]
    fn a_cause_already_shown_is_not_repeated() {
        let inner = std::io::Error::other("the directory /x does not exist");
        let shown = anyhow::Error::new(inner)
            .context("store: the directory /x does not exist")
            .context("cannot open the database");
        assert_eq!(
            one_line(&shown),
            "cannot open the database: store: the directory /x does not exist"
        );
        let chained = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(one_line(&chained), "outer: root cause");
        // A cause whose words merely appear earlier is still said.
        let inside = anyhow::anyhow!("denied").context("access denied by policy");
        assert_eq!(one_line(&inside), "access denied by policy: denied");
    }

    #[test]
    fn error_answers_are_summed_up_on_one_line() {
        for (body, expected) in [
            (
                r#"{"error":{"code":"unauthorized","message":"a valid bearer token is required","field":null}}"#,
                "unauthorized: a valid bearer token is required",
            ),
            (
                r#"{"error":{"code":"invalid","message":"unknown event","field":"eventName"}}"#,
                "invalid: unknown event (field eventName)",
            ),
            ("Bad\ngateway\n\n", "Bad gateway"),
            ("", ""),
        ] {
            assert_eq!(error_summary(body), expected);
        }
        let long = "x ".repeat(300);
        let summary = error_summary(&long);
        assert!(
            summary.len() == 203 && summary.ends_with("..."),
            "{}",
            summary.len()
        );
    }
}
