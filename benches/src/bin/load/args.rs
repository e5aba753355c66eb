//! The command line of the load generator, and the checks that keep a run on this machine.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;

/// End-to-end load generator for mia-webhooks: creates webhooks pointing at its own receiver on
/// 127.0.0.1, posts events through `POST /api/events`, checks every delivery's signature and
/// reports throughput, latency, the server's peak memory and anything missing or duplicated.
///
/// By default it starts `mia-webhooks serve` as a child process on a fresh SQLite file.
/// `MIA_WEBHOOKS_*` settings in the environment (such as `MIA_WEBHOOKS_MAX_IN_FLIGHT`) reach the
/// server it starts. The last line of stdout is one JSON object with every figure.
#[derive(Debug, Parser)]
#[command(name = "load")]
pub(crate) struct Args {
    /// Events to post.
    #[arg(long)]
    pub(crate) events: usize,
    /// Webhooks to create, all subscribed to the posted event (instance scope), so every event
    /// makes this many deliveries.
    #[arg(long)]
    pub(crate) webhooks: usize,
    /// Requests in flight at once, for the events and for the raw HTTP loop.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Size of each event envelope in bytes (padded; the unique id is inside).
    #[arg(long, default_value_t = 1024)]
    pub(crate) payload_bytes: usize,
    /// Post at most this many events per second (default: as fast as the concurrency allows).
    /// A low rate measures unloaded latency.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Database of the server(s) started here: `postgres://...` makes a fresh database on that
    /// server for the run and drops it afterwards; `sqlite://PATH` uses that file; `memory:`
    /// the in-memory store. Default: a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Use a running server at this URL instead of starting one (its RSS is then not known).
    /// It must allow deliveries to 127.0.0.0/8 and know the event (`--event`).
    #[arg(long, requires = "token", conflicts_with_all = ["database_url", "in_process", "server_bin", "servers"])]
    pub(crate) server: Option<String>,
    /// An instance-admin token of `--server`.
    #[arg(long, requires = "server")]
    pub(crate) token: Option<String>,
    /// The `mia-webhooks` binary to start (default: next to this executable).
    #[arg(long, conflicts_with = "in_process")]
    pub(crate) server_bin: Option<PathBuf>,
    /// Run the server inside this process (through the server library) instead of a child;
    /// the peak RSS is then that of the whole process, load generator included.
    #[arg(long)]
    pub(crate) in_process: bool,
    /// Server processes to start on the same database (PostgreSQL only); events are spread
    /// over them in turn, and every one runs delivery workers.
    #[arg(long, default_value_t = 1)]
    pub(crate) servers: usize,
    /// Build a backlog: the receiver holds every request until all events are ingested, so
    /// about events × webhooks deliveries are pending at once (keep the ingestion shorter than
    /// the server's attempt timeout, 15 s by default).
    #[arg(long)]
    pub(crate) backlog: bool,
    /// Milliseconds the receiver waits before answering each delivery (after recording its
    /// arrival, so latency figures are unchanged): a receiver that takes its time, as real ones
    /// do, makes the senders' concurrency the limit instead of the CPU.
    #[arg(long, default_value_t = 0)]
    pub(crate) receiver_delay_ms: u64,
    /// Seconds to wait for the deliveries after the last event was accepted.
    #[arg(long, default_value_t = 120.0)]
    pub(crate) timeout_secs: f64,
    /// Seconds of the raw HTTP loop (plain reqwest posts to the receiver at the same
    /// concurrency), run before the events and again after the deliveries; 0 skips it.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) raw_secs: f64,
    /// The event name to post; a server started here adds it to its catalogue.
    #[arg(long, default_value = "load_generated")]
    pub(crate) event: String,
}

impl Args {
    /// Refuses settings that cannot work, and any address that is not this machine's loopback.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.events == 0 || self.webhooks == 0 || self.concurrency == 0 {
            bail!("--events, --webhooks and --concurrency must be at least 1");
        }
        if self.events.saturating_mul(self.webhooks) > 100_000_000 {
            bail!("--events × --webhooks must stay under 100,000,000 deliveries");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of events per second");
            }
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            bail!("--timeout-secs must be positive");
        }
        if !(self.raw_secs.is_finite() && self.raw_secs >= 0.0) {
            bail!("--raw-secs must be zero or positive");
        }
        if self.servers == 0 {
            bail!("--servers must be at least 1");
        }
        if self.servers > 1 && !self.is_postgres() {
            bail!(
                "--servers above 1 needs a shared PostgreSQL database (--database-url postgres://...)"
            );
        }
        if self.servers > 1 && self.in_process {
            bail!("--servers above 1 starts child processes; leave out --in-process");
        }
        if let Some(server) = &self.server {
            require_loopback(server, "--server")?;
        }
        if let Some(url) = &self.database_url {
            if self.is_postgres() {
                require_loopback(url, "--database-url")?;
            }
        }
        Ok(())
    }

    /// Whether the servers started here use PostgreSQL.
    pub(crate) fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }
}

/// Runs only ever talk to this machine: the receiver is on 127.0.0.1, and so must the server
/// and the database be.
fn require_loopback(url: &str, what: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("{what} is not a URL"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{what} must be on this machine (127.0.0.1, ::1 or localhost), not {host:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<(), &str>) {
        let args = Args::try_parse_from(line.split_whitespace()).map_err(|e| e.to_string());
        let result = args.and_then(|a| a.check().map_err(|e| e.to_string()));
        match (result, expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
            (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn command_lines_are_checked() {
        check("load --events 10 --webhooks 2", Ok(()));
        check(
            "load --events 10 --webhooks 2 --server http://127.0.0.1:8080 --token t",
            Ok(()),
        );
        check(
            "load --events 10 --webhooks 2 --server http://10.0.0.1:8080 --token t",
            Err("must be on this machine"),
        );
        check(
            "load --events 10 --webhooks 2 --server http://127.0.0.1:8080",
            Err("--token"),
        );
        check("load --events 0 --webhooks 2", Err("at least 1"));
        check(
            "load --events 10 --webhooks 2 --servers 2",
            Err("PostgreSQL"),
        );
        check(
            "load --events 10 --webhooks 2 --servers 2 --database-url postgres://postgres@127.0.0.1/postgres",
            Ok(()),
        );
        check(
            "load --events 10 --webhooks 2 --database-url postgres://db.example.com/postgres",
            Err("must be on this machine"),
        );
        check("load --events 10 --webhooks 2 --rate 0", Err("--rate"));
    }
}
