//! Configuration as an operator gives it: a TOML file (`--config`) under `MIA_WEBHOOKS_*`
//! environment variables, and settings that stop the start with exit code 2 and a message
//! naming them.

use std::path::Path;

use serde_json::Value;

use super::{Options, Proc, run};

const ADMIN_TOKEN: &str = "config-file-admin-token-0123456789";

/// A TOML file sets the address, the database, the admin token and an extra event; the
/// environment overrides the address. The server listens where the environment says, and
/// the file's other settings apply.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_applies_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("from-file.db");
    // The file's port stays taken by this test: a server that listened where the file says
    // would fail to start.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file_port = held.local_addr().unwrap().port();
    let config = dir.path().join("mia-webhooks.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\n\
             database_url = \"sqlite://{}\"\n\
             admin_token = \"{ADMIN_TOKEN}\"\n\
             extra_events = [\"invoice_paid\"]\n",
            database.display()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    // `Proc` sets MIA_WEBHOOKS_LISTEN to a port of its own and waits for it.
    let (proc, stdout, _) = Proc::start_with(
        dir.path(),
        &[],
        Options {
            args: &["--config", config_arg],
            ..Options::default()
        },
    );
    assert_ne!(
        proc.port, file_port,
        "the file's address is overridden by the environment's"
    );
    assert!(database.exists(), "the database is the file's");
    assert!(
        !dir.path().join("mia-webhooks.db").exists(),
        "not the default database"
    );

    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/api/events/catalog", proc.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "the file's admin token");
    let catalog: Value = response.json().await.unwrap();
    assert!(
        catalog.to_string().contains("\"invoice_paid\""),
        "the file's extra event is in the catalogue"
    );
    assert!(proc.terminate().success());
    drop(held);
    let printed = super::collect(stdout).join().unwrap();
    assert!(
        !printed.contains("mwh_"),
        "with the file's admin token installed, no bootstrap token is made"
    );
}

/// What one bad start prints and how it exits.
fn check_refused(dir: &Path, args: &[&str], env: &[(&str, &str)], names: &str, hidden: &[&str]) {
    let out = run(dir, args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} {env:?}: a configuration error exits 2: {stderr}"
    );
    assert!(stderr.contains(names), "{args:?} {env:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for secret in hidden {
        assert!(!stderr.contains(secret), "{secret} shown: {stderr}");
    }
}

/// Every kind of bad setting, from the environment or the file, for every subcommand that
/// reads the configuration: exit 2, one line naming the environment variable and the TOML key,
/// never a secret, and no database created.
#[test]
fn config_errors_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    // The environment, what the message must say, and what it must not show.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            &[("MIA_WEBHOOKS_PER_WEBHOOK_CAP", "zero")],
            "MIA_WEBHOOKS_PER_WEBHOOK_CAP (per_webhook_cap) in the environment: expected",
            &[],
        ),
        (
            &[("MIA_WEBHOOKS_PER_WEBHOOK_CAP", "0")],
            "MIA_WEBHOOKS_PER_WEBHOOK_CAP (per_webhook_cap): must be at least 1",
            &[],
        ),
        (
            &[("MIA_WEBHOOKS_LISTEN", "nowhere")],
            "MIA_WEBHOOKS_LISTEN (listen) in the environment",
            &[],
        ),
        (
            &[(
                "MIA_WEBHOOKS_DATABASE_URL",
                "postgress://user:pw-s3cret@db/x",
            )],
            "MIA_WEBHOOKS_DATABASE_URL (database_url): \"postgress://user:***@db/x\": \
             unknown database URL scheme \"postgress://\"",
            &["pw-s3cret"],
        ),
        (
            &[(
                "MIA_WEBHOOKS_DATABASE_URL",
                "sqlite:///no/such/directory/x.db",
            )],
            "MIA_WEBHOOKS_DATABASE_URL (database_url): cannot create the SQLite database \
             /no/such/directory/x.db: the directory /no/such/directory does not exist",
            &[],
        ),
        (
            // Before the secret key was checked with the other settings, this one exited 1
            // after opening the database.
            &[("MIA_WEBHOOKS_SECRET_KEY", "bm90LWEta2V5LXMzY3JldA==")],
            "MIA_WEBHOOKS_SECRET_KEY (secret_key): ",
            &["bm90LWEta2V5LXMzY3JldA==", "s3cret"],
        ),
        (
            &[("MIA_WEBHOOKS_ADMIN_TOKEN", "short-s3cret")],
            "MIA_WEBHOOKS_ADMIN_TOKEN (admin_token): must be at least 16 characters",
            &["short-s3cret"],
        ),
    ];
    for subcommand in [
        &[][..],
        &["migrate"],
        &["token", "create", "--role", "emitter"],
    ] {
        for (env, names, hidden) in cases {
            check_refused(dir.path(), subcommand, env, names, hidden);
        }
    }

    // The same from a file, which the message names.
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "per_webhook_cap = \"eight\"\n").unwrap();
    let config_arg = config.to_str().unwrap();
    check_refused(
        dir.path(),
        &["--config", config_arg],
        &[],
        &format!(
            "MIA_WEBHOOKS_PER_WEBHOOK_CAP (per_webhook_cap) in {}: expected",
            config.display()
        ),
        &[],
    );
    std::fs::write(&config, "no_such_setting = 1\n").unwrap();
    check_refused(
        dir.path(),
        &["--config", config_arg],
        &[],
        "unknown setting no_such_setting",
        &[],
    );
    // A valid file, and the environment's value is the bad one.
    std::fs::write(&config, "per_webhook_cap = 4\n").unwrap();
    check_refused(
        dir.path(),
        &["--config", config_arg],
        &[("MIA_WEBHOOKS_PER_WEBHOOK_CAP", "0")],
        "MIA_WEBHOOKS_PER_WEBHOOK_CAP (per_webhook_cap): must be at least 1",
        &[],
    );
    let missing = dir.path().join("missing.toml");
    check_refused(
        dir.path(),
        &["--config", missing.to_str().unwrap()],
        &[],
        "does not exist",
        &[],
    );

    let created: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != "bad.toml")
        .collect();
    assert!(
        created.is_empty(),
        "nothing is created on a bad start: {created:?}"
    );
}

/// Every accepted form of a SQLite or in-memory database URL still opens a database
/// (PostgreSQL URLs: the two-process test and the store's unit tests).
#[test]
fn every_known_database_url_form_opens() {
    let dir = tempfile::tempdir().unwrap();
    let absolute = dir.path().join("absolute.db");
    for (url, file) in [
        (format!("sqlite://{}", absolute.display()), "absolute.db"),
        ("sqlite://relative.db".to_owned(), "relative.db"),
        ("sqlite:short.db".to_owned(), "short.db"),
        ("plain.db".to_owned(), "plain.db"),
        ("memory:".to_owned(), ""),
    ] {
        let out = run(
            dir.path(),
            &["migrate"],
            &[("MIA_WEBHOOKS_DATABASE_URL", &url)],
        );
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !file.is_empty() {
            assert!(dir.path().join(file).exists(), "{url} makes {file}");
        }
    }
}
