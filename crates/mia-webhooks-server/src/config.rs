//! Configuration: defaults, then a TOML file, then `MIA_WEBHOOKS_*` environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// Everything an operator can set. Every field has a default; see [`Config::default`].
///
/// Its `Debug` shows neither the tokens and keys nor the database password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`MIA_WEBHOOKS_LISTEN`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `sqlite://PATH`, a plain path, `postgres://...` or `memory:`
    /// (`MIA_WEBHOOKS_DATABASE_URL`, default `sqlite://mia-webhooks.db`).
    pub database_url: String,
    /// An instance-admin token to install at start (`MIA_WEBHOOKS_ADMIN_TOKEN`). Without it, the
    /// first start on an empty database prints a new one once.
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// Address ranges deliveries may reach although the address guard blocks them by default
    /// (`MIA_WEBHOOKS_ALLOWED_CIDRS`, comma separated, such as `127.0.0.0/8,::1/128`).
    #[serde(deserialize_with = "comma_list", serialize_with = "serialize_cidrs")]
    pub allowed_cidrs: Vec<IpNet>,
    /// Operator key for secrets at rest: 32 bytes, base64 (`MIA_WEBHOOKS_SECRET_KEY`).
    #[serde(skip_serializing)]
    pub secret_key: Option<String>,
    /// Older keys still accepted for reading, comma separated (`MIA_WEBHOOKS_OLD_SECRET_KEYS`).
    #[serde(deserialize_with = "comma_list", skip_serializing)]
    pub old_secret_keys: Vec<String>,
    /// Event names added to the built-in catalogue (`MIA_WEBHOOKS_EXTRA_EVENTS`, comma separated).
    #[serde(deserialize_with = "comma_list")]
    pub extra_events: Vec<String>,
    /// Largest accepted request body, in bytes (`MIA_WEBHOOKS_BODY_LIMIT`, default 1 MiB).
    pub body_limit: usize,
    /// The most events `POST /api/events` writes in one transaction: concurrent requests share
    /// a commit (`MIA_WEBHOOKS_INGEST_BATCH`, default 256; 1 gives every request its own).
    pub ingest_batch: usize,
    /// SQLite only: the page cache of the write connection, in MiB
    /// (`MIA_WEBHOOKS_SQLITE_CACHE_MIB`, default 64).
    pub sqlite_cache_mib: u32,
    /// Attempts in flight across all webhooks (`MIA_WEBHOOKS_MAX_IN_FLIGHT`, default 256).
    pub max_in_flight: usize,
    /// Attempts in flight to one webhook (`MIA_WEBHOOKS_PER_WEBHOOK_CAP`, default 8).
    pub per_webhook_cap: usize,
    /// Deliveries claimed in one store call, and claimed ahead of a free slot
    /// (`MIA_WEBHOOKS_CLAIM_BATCH`, default 64).
    pub claim_batch: usize,
    /// Connect timeout in seconds (`MIA_WEBHOOKS_CONNECT_TIMEOUT_SECS`, default 5).
    pub connect_timeout_secs: f64,
    /// Whole-attempt timeout in seconds (`MIA_WEBHOOKS_ATTEMPT_TIMEOUT_SECS`, default 15).
    pub attempt_timeout_secs: f64,
    /// How long a claimed delivery stays leased to this process, in seconds
    /// (`MIA_WEBHOOKS_LEASE_SECS`, default 60). After a crash, the deliveries the process held
    /// are tried again once their leases expire. Must exceed `attempt_timeout_secs` by 5 s.
    pub lease_secs: f64,
    /// Retry delays in seconds, comma separated (`MIA_WEBHOOKS_RETRY_SCHEDULE_SECS`, default
    /// `5,30,120,600,1800,3600,10800,21600,43200,86400`).
    #[serde(deserialize_with = "comma_list")]
    pub retry_schedule_secs: Vec<f64>,
    /// A webhook failing continuously this long is disabled, in seconds
    /// (`MIA_WEBHOOKS_DISABLE_AFTER_SECS`, default 3 days).
    pub disable_after_secs: f64,
    /// Finished deliveries older than this many days are purged (`MIA_WEBHOOKS_RETENTION_DAYS`,
    /// default 30; 0 keeps everything).
    pub retention_days: u32,
    /// Bound on the wait for attempts in flight at shutdown, in seconds
    /// (`MIA_WEBHOOKS_SHUTDOWN_GRACE_SECS`, default 20).
    pub shutdown_grace_secs: f64,
    /// Run the delivery workers in this process (`MIA_WEBHOOKS_WORKERS`, default true).
    pub workers: bool,
    /// Log format: `text` or `json` (`MIA_WEBHOOKS_LOG_FORMAT`).
    pub log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://mia-webhooks.db".to_owned(),
            admin_token: None,
            allowed_cidrs: Vec::new(),
            secret_key: None,
            old_secret_keys: Vec::new(),
            extra_events: Vec::new(),
            body_limit: 1024 * 1024,
            ingest_batch: 256,
            sqlite_cache_mib: 64,
            max_in_flight: 256,
            per_webhook_cap: 8,
            claim_batch: 64,
            connect_timeout_secs: 5.0,
            attempt_timeout_secs: 15.0,
            lease_secs: 60.0,
            retry_schedule_secs: vec![
                5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0, 86400.0,
            ],
            disable_after_secs: 3.0 * 86400.0,
            retention_days: 30,
            shutdown_grace_secs: 20.0,
            workers: true,
            log_format: LogFormat::Text,
        }
    }
}

/// A setting that cannot be used; the message names it as its environment variable and its
/// TOML key, such as `MIA_WEBHOOKS_PER_WEBHOOK_CAP (per_webhook_cap): must be at least 1`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// The setting `key` (its TOML name) has an unusable value.
    fn invalid(key: &str, why: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {why}", setting_names(key)))
    }
}

/// How messages name a setting: `MIA_WEBHOOKS_LISTEN (listen)`.
fn setting_names(key: &str) -> String {
    format!("MIA_WEBHOOKS_{} ({key})", key.to_ascii_uppercase())
}

/// The text of a store error about configuration, without the store's own prefix.
fn store_message(err: mia_webhooks_store::StoreError) -> String {
    match err {
        mia_webhooks_store::StoreError::Config(why) => why,
        other => other.to_string(),
    }
}

/// The environment keys read, without the `MIA_WEBHOOKS_` prefix. Other `MIA_WEBHOOKS_*`
/// variables (such as the test suite's) are ignored.
const ENV_KEYS: &[&str] = &[
    "listen",
    "database_url",
    "admin_token",
    "allowed_cidrs",
    "secret_key",
    "old_secret_keys",
    "extra_events",
    "body_limit",
    "ingest_batch",
    "sqlite_cache_mib",
    "max_in_flight",
    "per_webhook_cap",
    "claim_batch",
    "connect_timeout_secs",
    "attempt_timeout_secs",
    "lease_secs",
    "retry_schedule_secs",
    "disable_after_secs",
    "retention_days",
    "shutdown_grace_secs",
    "workers",
    "log_format",
];

impl Config {
    /// Loads the configuration: defaults, then `file` (TOML) when given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("MIA_WEBHOOKS_").only(ENV_KEYS));
        Self::extract(&figment)
    }

    /// Extracts and validates a configuration from any figment (tests build their own).
    pub fn extract(figment: &Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| ConfigError(describe(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense. Each error names the setting both ways, as
    /// its environment variable and its TOML key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!("must be a positive number of seconds, not {value}"),
                ))
            }
        };
        let at_least_one = |key: &str, value: usize| {
            if value == 0 {
                Err(ConfigError::invalid(key, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("connect_timeout_secs", self.connect_timeout_secs)?;
        positive("attempt_timeout_secs", self.attempt_timeout_secs)?;
        positive("lease_secs", self.lease_secs)?;
        let margin = mia_webhooks_delivery::LEASE_MARGIN.as_secs_f64();
        if self.lease_secs < self.attempt_timeout_secs + margin {
            return Err(ConfigError::invalid(
                "lease_secs",
                format!(
                    "must be at least attempt_timeout_secs ({}) plus {margin} s, so that no lease \
                     expires while its attempt may still run; it is {}",
                    self.attempt_timeout_secs, self.lease_secs
                ),
            ));
        }
        positive("disable_after_secs", self.disable_after_secs)?;
        positive("shutdown_grace_secs", self.shutdown_grace_secs)?;
        if self.retry_schedule_secs.is_empty() {
            return Err(ConfigError::invalid(
                "retry_schedule_secs",
                "must list at least one delay",
            ));
        }
        for delay in &self.retry_schedule_secs {
            positive("retry_schedule_secs", *delay)?;
        }
        at_least_one("max_in_flight", self.max_in_flight)?;
        at_least_one("per_webhook_cap", self.per_webhook_cap)?;
        at_least_one("claim_batch", self.claim_batch)?;
        if self.sqlite_cache_mib == 0 {
            return Err(ConfigError::invalid(
                "sqlite_cache_mib",
                "must be at least 1",
            ));
        }
        at_least_one("ingest_batch", self.ingest_batch)?;
        if self.body_limit < 1024 {
            return Err(ConfigError::invalid(
                "body_limit",
                "must be at least 1024 bytes",
            ));
        }
        self.validate_database_url()?;
        if let Some(token) = &self.admin_token {
            if token.len() < 16 {
                return Err(ConfigError::invalid(
                    "admin_token",
                    "must be at least 16 characters",
                ));
            }
        }
        self.validate_secret_keys()?;
        mia_webhooks_model::EventCatalog::with_extra(self.extra_events.iter().cloned())
            .map_err(|e| ConfigError::invalid("extra_events", e))?;
        Ok(())
    }

    /// The database URL names a backend: a mistyped scheme (`postgress://`) is refused here,
    /// not taken for a SQLite file path. The URL is shown with its password masked.
    fn validate_database_url(&self) -> Result<(), ConfigError> {
        let url = &self.database_url;
        if url.trim().is_empty() {
            return Err(ConfigError::invalid("database_url", "must not be empty"));
        }
        mia_webhooks_store::AnyStore::check_url(url).map_err(|err| {
            // A SQLite location is quoted by the store's message; anything else without `://`
            // cannot be redacted reliably, so it is not shown.
            let shown = if url.contains("://") && !url.starts_with("sqlite:") {
                format!("{:?}: ", redact_url(url))
            } else {
                String::new()
            };
            ConfigError::invalid("database_url", format!("{shown}{}", store_message(err)))
        })
    }

    /// The operator keys decode to 32 bytes each; checked here so that a bad key stops the
    /// start like any other setting. The errors never hold key material.
    fn validate_secret_keys(&self) -> Result<(), ConfigError> {
        const NONE: &[&str] = &[];
        if let Some(key) = &self.secret_key {
            mia_webhooks_store::SecretKeys::parse(key, NONE)
                .map_err(|e| ConfigError::invalid("secret_key", store_message(e)))?;
        }
        for (i, key) in self.old_secret_keys.iter().enumerate() {
            mia_webhooks_store::SecretKeys::parse(key, NONE).map_err(|e| {
                ConfigError::invalid(
                    "old_secret_keys",
                    format!("key #{}: {}", i + 1, store_message(e)),
                )
            })?;
        }
        Ok(())
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs)
    }

    /// The attempt timeout.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.attempt_timeout_secs)
    }

    /// How long a claim lasts.
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.lease_secs)
    }

    /// The retry schedule.
    pub fn retry_schedule(&self) -> Vec<Duration> {
        self.retry_schedule_secs
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect()
    }

    /// How long a webhook may fail before it is disabled.
    pub fn disable_after(&self) -> Duration {
        Duration::from_secs_f64(self.disable_after_secs)
    }

    /// The bound on the wait for attempts in flight at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_secs)
    }
}

/// Turns figment's error into one line naming the setting, as its environment variable and its
/// TOML key, and where the value came from. Values are not echoed: a secret key may be among
/// them.
fn describe(err: &figment::Error) -> String {
    let mut lines = Vec::new();
    for e in err.clone() {
        let origin = match &e.metadata {
            Some(m) => match &m.source {
                Some(figment::Source::File(path)) => format!(" in {}", path.display()),
                _ if m.name.contains("environment") => " in the environment".to_owned(),
                _ => format!(" in {}", m.name),
            },
            None => String::new(),
        };
        let what = match &e.kind {
            figment::error::Kind::InvalidType(_, expected) => format!("expected {expected}"),
            figment::error::Kind::InvalidValue(_, expected) => format!("expected {expected}"),
            figment::error::Kind::UnknownField(field, _) => {
                lines.push(format!("unknown setting {field}{origin}"));
                continue;
            }
            figment::error::Kind::Message(message) => without_source_lines(message),
            other => other.to_string(),
        };
        // Errors inside a list name the list; a file that does not parse names no setting.
        let line = match e.path.first() {
            Some(key) => format!("{}{origin}: {what}", setting_names(key)),
            None => format!("configuration{origin}: {what}"),
        };
        lines.push(line);
    }
    lines.join("; ")
}

/// A TOML parse error quotes the line it failed on, which may hold a secret: only its first
/// line (where) and its last (what) are kept.
fn without_source_lines(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next_back()) {
        (Some(first), Some(last)) => format!("{first}: {last}"),
        (Some(only), None) => only.to_owned(),
        _ => String::new(),
    }
}

/// Reads a list from either a TOML array or a comma-separated string (environment variables).
fn comma_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<figment::value::Value>),
        One(figment::value::Value),
    }
    let items: Vec<String> = match Raw::deserialize(deserializer)? {
        Raw::List(items) => items.iter().map(value_text).collect(),
        Raw::One(value) => value_text(&value)
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    items
        .iter()
        .map(|item| {
            item.parse::<T>()
                .map_err(|e| serde::de::Error::custom(format!("{item:?}: {e}")))
        })
        .collect()
}

fn value_text(value: &figment::value::Value) -> String {
    use figment::value::Value;
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|v| v.to_string())
            .or_else(|| n.to_i128().map(|v| v.to_string()))
            .or_else(|| n.to_f64().map(|v| v.to_string()))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn serialize_cidrs<S: serde::Serializer>(
    cidrs: &[IpNet],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(cidrs.iter().map(ToString::to_string))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serialized form leaves the tokens and keys out; the database URL may hold a
        // password.
        let mut shown = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        shown["database_url"] = redact_url(&self.database_url).into();
        for (name, set) in [
            ("admin_token", self.admin_token.is_some()),
            ("secret_key", self.secret_key.is_some()),
            ("old_secret_keys", !self.old_secret_keys.is_empty()),
        ] {
            shown[name] = if set { "***" } else { "unset" }.into();
        }
        write!(f, "Config {shown}")
    }
}

/// A database URL fit for a log line: a password, in the user part or as a `password`
/// parameter, is replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return redact_unparsed(url);
    };
    if parsed.password().is_none() && url.contains('@') {
        // The `url` crate found no password, but an `@` may end one it read as something else
        // (`app:12#34@db`: host `app`, port 12, fragment `34@db`).
        return redact_unparsed(url);
    }
    let in_query = parsed.query_pairs().any(|(key, _)| key == "password");
    if parsed.password().is_none() && !in_query {
        return url.to_owned();
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if in_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".into()
                } else {
                    value
                };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// The fallback of [`redact_url`] for a URL the `url` crate refuses (a space in the password,
/// say) or reads without a password although it has an `@` (`app:12#34@db`, a `#` in the
/// password): first the value of every `password` parameter is masked, then everything from the
/// first `:` of the part before the last `@` up to that `@`. It may mask more than the password;
/// it never shows it.
fn redact_unparsed(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("password=") {
                        "password=***"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => rest.to_owned(),
    };
    let rest = match rest.rsplit_once('@') {
        Some((user_info, after)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{after}"),
            None => rest,
        },
        None => rest,
    };
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml));
        let mut dict = figment::value::Dict::new();
        for (k, v) in env {
            // Parsed the way the Env provider parses variables: "3" is a number.
            let value: figment::value::Value = v
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(*v));
            dict.insert((*k).to_owned(), value);
        }
        figment = figment.merge(Serialized::defaults(dict));
        Config::extract(&figment)
    }

    #[test]
    fn debug_shows_no_token_key_or_database_password() {
        let config = Config {
            database_url:
                "postgres://app:pa55word@db.example/hooks?sslmode=require&password=pa55query"
                    .to_owned(),
            admin_token: Some("admin-t0ken".to_owned()),
            secret_key: Some("c2VjcmV0LWtleQ==".to_owned()),
            old_secret_keys: vec!["b2xkLWtleQ==".to_owned()],
            ..Config::default()
        };
        let shown = format!("{config:?}");
        for secret in [
            "pa55word",
            "pa55query",
            "admin-t0ken",
            "c2VjcmV0LWtleQ==",
            "b2xkLWtleQ==",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("db.example/hooks?sslmode=require"),
            "{shown}"
        );
        assert!(shown.contains("\"admin_token\":\"***\""), "{shown}");
        assert_eq!(
            redact_url("sqlite://mia-webhooks.db"),
            "sqlite://mia-webhooks.db"
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://mia-webhooks.db");
        assert_eq!(config.per_webhook_cap, 8);
        assert_eq!(config.claim_batch, 64);
        assert_eq!(config.retry_schedule().len(), 10);
        assert_eq!(config.disable_after(), Duration::from_secs(3 * 86400));
        assert_eq!(config.lease(), Duration::from_secs(60));
    }

    #[test]
    fn lists_come_from_arrays_or_comma_strings() {
        let config = load("allowed_cidrs = [\"127.0.0.0/8\"]", &[]).unwrap();
        assert_eq!(config.allowed_cidrs.len(), 1);
        // Whole numbers, in a TOML list or alone, are delays too.
        let config = load("retry_schedule_secs = [5, 30]", &[]).unwrap();
        assert_eq!(
            config.retry_schedule(),
            [Duration::from_secs(5), Duration::from_secs(30)]
        );
        let config = load("retry_schedule_secs = 1", &[]).unwrap();
        assert_eq!(config.retry_schedule(), [Duration::from_secs(1)]);
        let config = load("allowed_cidrs = [\"127.0.0.0/8\"]", &[]).unwrap();
        assert_eq!(config.allowed_cidrs.len(), 1);
        let config = load(
            "",
            &[
                ("allowed_cidrs", "127.0.0.0/8, ::1/128"),
                ("retry_schedule_secs", "1,2.5"),
            ],
        )
        .unwrap();
        assert_eq!(config.allowed_cidrs.len(), 2);
        assert_eq!(
            config.retry_schedule(),
            [Duration::from_secs(1), Duration::from_millis(2500)]
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (toml, setting) in [
            ("listen = \"nowhere\"", "listen"),
            ("allowed_cidrs = \"10.0.0.0/33\"", "allowed_cidrs"),
            ("per_webhook_cap = 0", "per_webhook_cap"),
            ("claim_batch = 0", "claim_batch"),
            ("ingest_batch = 0", "ingest_batch"),
            ("sqlite_cache_mib = 0", "sqlite_cache_mib"),
            ("attempt_timeout_secs = -1", "attempt_timeout_secs"),
            ("retry_schedule_secs = []", "retry_schedule_secs"),
            ("extra_events = \"Not-Snake\"", "extra_events"),
            ("log_format = \"xml\"", "log_format"),
            ("no_such_setting = 1", "no_such_setting"),
            ("admin_token = \"short\"", "admin_token"),
            ("lease_secs = 19.5", "lease_secs"),
            ("attempt_timeout_secs = 60", "lease_secs"),
        ] {
            let err = load(toml, &[]).unwrap_err().to_string();
            if setting == "no_such_setting" {
                assert!(err.contains("unknown setting no_such_setting"), "{err}");
            } else {
                // Both names: the environment variable and the TOML key.
                let names = format!("MIA_WEBHOOKS_{} ({setting})", setting.to_uppercase());
                assert!(err.starts_with(&names), "{toml}: {err}");
            }
        }
        let err = load("per_webhook_cap = 0", &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "MIA_WEBHOOKS_PER_WEBHOOK_CAP (per_webhook_cap): must be at least 1"
        );
    }

    #[test]
    fn database_urls_name_a_known_backend() {
        for url in [
            "sqlite://mia-webhooks.db",
            "sqlite:mia-webhooks.db",
            "mia-webhooks.db",
            "./hooks.db",
            "postgres://app:pw@db/hooks",
            "postgresql://app@db/hooks",
            "memory:",
        ] {
            let toml = format!("database_url = {url:?}");
            assert!(load(&toml, &[]).is_ok(), "{url}");
        }
        for (url, shown) in [
            (
                "postgress://user:pw-s3cret@db/x",
                "\"postgress://user:***@db/x\"",
            ),
            ("mysql://user:pw-s3cret@db/x", "\"mysql://user:***@db/x\""),
            (
                "postgres:user:pw-s3cret@db/x",
                "starts with \"postgres://\"",
            ),
            ("sqlite://", "names no file"),
            (
                "postgresql//user:pw-s3cret@db/x",
                "reads like a URL with credentials",
            ),
            ("mysql://user:pw#s3cret@db/x", "\"mysql://user:***@db/x\""),
            (
                "sqlite:///no/such/directory/hooks.db",
                "the directory /no/such/directory does not exist",
            ),
        ] {
            let err = load("", &[("database_url", url)]).unwrap_err().to_string();
            assert!(
                err.starts_with("MIA_WEBHOOKS_DATABASE_URL (database_url): "),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains(shown), "{url}: {err}");
        }
    }

    #[test]
    fn secret_keys_are_checked_at_load_without_echoing_them() {
        let good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert!(load(&format!("secret_key = {good:?}"), &[]).is_ok());
        for (toml, names) in [
            (
                "secret_key = \"bm90LWEta2V5LXMzY3JldA==\"",
                "MIA_WEBHOOKS_SECRET_KEY (secret_key): ",
            ),
            (
                "secret_key = \"not base64 s3cret!\"",
                "MIA_WEBHOOKS_SECRET_KEY (secret_key): ",
            ),
            (
                "old_secret_keys = \"bm90LWEta2V5LXMzY3JldA==\"",
                "MIA_WEBHOOKS_OLD_SECRET_KEYS (old_secret_keys): key #1",
            ),
        ] {
            let err = load(toml, &[]).unwrap_err().to_string();
            assert!(err.starts_with(names), "{err}");
            assert!(
                !err.contains("s3cret") && !err.contains("bm90LWEta2V5LXMzY3JldA=="),
                "{err}"
            );
        }
    }

    #[test]
    fn an_unparsable_url_keeps_its_password_masked() {
        for (url, redacted) in [
            // A port out of range and a space in the host: the `url` crate refuses both.
            (
                "postgres://app:p@ss@db:99999/hooks",
                "postgres://app:***@db:99999/hooks",
            ),
            (
                "postgress://app:pw@d b/x?password=q&ssl=1",
                "postgress://app:***@d b/x?password=***&ssl=1",
            ),
            (
                "postgres://app@db:99999/hooks",
                "postgres://app@db:99999/hooks",
            ),
            // A `/`, `?` or `#` in the password.
            ("mysql://app:p#ss@db:99999/x", "mysql://app:***@db:99999/x"),
            (
                "postgres://app:p/ss@db:99999/x",
                "postgres://app:***@db:99999/x",
            ),
        ] {
            assert!(url::Url::parse(url).is_err(), "{url}");
            assert_eq!(redact_url(url), redacted, "{url}");
        }
        // Parsed, but not as the operator meant: host `app`, port 12, fragment `34@db/x`.
        for (url, redacted) in [
            ("postgress://app:12#34@db/x", "postgress://app:***@db/x"),
            ("postgres://app:12?34@db/x", "postgres://app:***@db/x"),
            (
                "postgres://app@db/x?password=q",
                "postgres://app@db/x?password=***",
            ),
            // An `@` in a parameter's value is not taken for the end of a user part.
            (
                "postgres://app@db:5432/x?password=p@ss",
                "postgres://app@db:5432/x?password=***",
            ),
        ] {
            assert!(url::Url::parse(url).is_ok(), "{url}");
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[test]
    fn a_short_lease_goes_with_a_short_attempt_timeout() {
        let config = load("", &[("attempt_timeout_secs", "3"), ("lease_secs", "8")]).unwrap();
        assert_eq!(config.lease(), Duration::from_secs(8));
        let err = load("", &[("attempt_timeout_secs", "3"), ("lease_secs", "7.5")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lease_secs"), "{err}");
    }

    #[test]
    fn errors_do_not_echo_secret_values() {
        let err = load("secret_key = 12345", &[]).unwrap_err().to_string();
        assert!(
            err.contains("secret_key") && !err.contains("12345"),
            "{err}"
        );
        // A file that does not parse: where and what, not the line itself.
        let err = load("secret_key = \"s3cret-unterminated\n", &[])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("line 1") && !err.contains('\n'), "{err}");
    }
}
