//! The servers under load: child processes of the `mia-webhooks` binary (the default), the
//! server library inside this process, or a server that is already running; plus the fresh
//! database a run gets and the memory readings of the server processes.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use mia_webhooks_server::{Config, Server};
use rand::RngCore as _;
use sqlx::Connection as _;

use crate::args::Args;

/// The servers of one run.
pub(crate) struct Fleet {
    /// Base URLs (`http://127.0.0.1:PORT`), one per server.
    pub(crate) urls: Vec<String>,
    /// An instance-admin token valid on every server.
    pub(crate) token: String,
    /// `sqlite`, `postgres`, `memory` or `external`.
    pub(crate) database: &'static str,
    /// `child`, `in-process` or `external`.
    pub(crate) mode: &'static str,
    children: Vec<ChildServer>,
    in_process: Option<Server>,
    postgres: Option<FreshDatabase>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts the servers `args` asks for (or connects to `--server`) and waits until each
    /// answers `/readyz`.
    pub(crate) async fn start(args: &Args, client: &reqwest::Client) -> anyhow::Result<Fleet> {
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        if let (Some(url), Some(token)) = (&args.server, &args.token) {
            let url = url.trim_end_matches('/').to_owned();
            wait_ready(client, &url, None).await?;
            return Ok(Fleet {
                urls: vec![url],
                token: token.clone(),
                database: "external",
                mode: "external",
                children: Vec::new(),
                in_process: None,
                postgres: None,
                dir,
            });
        }
        let token = format!("load-admin-{}", uuid::Uuid::new_v4().simple());
        let (database_url, postgres, database) = if args.is_postgres() {
            let admin = args.database_url.as_deref().unwrap_or_default();
            let fresh = FreshDatabase::create(admin).await?;
            (fresh.url.clone(), Some(fresh), "postgres")
        } else {
            let url = match &args.database_url {
                Some(url) => url.clone(),
                None => format!("sqlite://{}", dir.path().join("load.db").display()),
            };
            let kind = if url.starts_with("memory:") {
                "memory"
            } else {
                "sqlite"
            };
            (url, None, kind)
        };
        let mut fleet = Fleet {
            urls: Vec::new(),
            token,
            database,
            mode: if args.in_process {
                "in-process"
            } else {
                "child"
            },
            children: Vec::new(),
            in_process: None,
            postgres,
            dir,
        };
        let settings = Settings {
            database_url,
            token: fleet.token.clone(),
            event: args.event.clone(),
            secret_key: base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>()),
        };
        if args.in_process {
            let server = settings.start_in_process().await?;
            fleet.urls.push(format!("http://{}", server.local_addr()));
            fleet.in_process = Some(server);
            return Ok(fleet);
        }
        let binary = server_binary(args.server_bin.as_deref())?;
        // One after another: the first applies the migrations, the others find them done.
        for i in 0..args.servers {
            let log = fleet.dir.path().join(format!("server-{i}.log"));
            let child = settings.spawn(&binary, &log)?;
            let url = format!("http://{}", child.addr);
            fleet.children.push(child);
            let child = fleet.children.last_mut();
            wait_ready(client, &url, child).await?;
            fleet.urls.push(url);
        }
        Ok(fleet)
    }

    /// Where the memory of each server process is read: `/proc/<pid>/status`, or this
    /// process's when the server runs inside it. Empty for an external server.
    pub(crate) fn status_files(&self) -> Vec<PathBuf> {
        if self.in_process.is_some() {
            return vec![PathBuf::from("/proc/self/status")];
        }
        self.children
            .iter()
            .map(|c| PathBuf::from(format!("/proc/{}/status", c.child.id())))
            .collect()
    }

    /// The last lines of each child server's log (for a failed run).
    pub(crate) fn log_tails(&self) -> Vec<String> {
        self.children.iter().map(ChildServer::log_tail).collect()
    }

    /// Stops the servers (SIGTERM, then SIGKILL after 15 s) and drops the run's database.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(server) = self.in_process.take() {
            server.shutdown().await.context("stopping the server")?;
        }
        for child in &mut self.children {
            child.stop().await;
        }
        if let Some(database) = self.postgres.take() {
            database.drop_database().await?;
        }
        Ok(())
    }
}

/// What every server of a run is started with.
struct Settings {
    database_url: String,
    token: String,
    event: String,
    secret_key: String,
}

impl Settings {
    async fn start_in_process(&self) -> anyhow::Result<Server> {
        // The same sources as the binary (defaults, then MIA_WEBHOOKS_* variables), then what
        // this run needs.
        let mut config = Config::load(None).context("server configuration")?;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.database_url = self.database_url.clone();
        config.admin_token = Some(self.token.clone());
        config.allowed_cidrs = vec!["127.0.0.0/8".parse()?];
        config.extra_events.push(self.event.clone());
        config.secret_key = Some(self.secret_key.clone());
        Server::start(config)
            .await
            .context("cannot start the server in process")
    }

    fn spawn(&self, binary: &Path, log: &Path) -> anyhow::Result<ChildServer> {
        let addr = free_port()?;
        let mut extra = std::env::var("MIA_WEBHOOKS_EXTRA_EVENTS").unwrap_or_default();
        if !extra.is_empty() {
            extra.push(',');
        }
        extra.push_str(&self.event);
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .env("MIA_WEBHOOKS_LISTEN", addr.to_string())
            .env("MIA_WEBHOOKS_DATABASE_URL", &self.database_url)
            .env("MIA_WEBHOOKS_ADMIN_TOKEN", &self.token)
            .env("MIA_WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8")
            .env("MIA_WEBHOOKS_EXTRA_EVENTS", extra)
            .env("MIA_WEBHOOKS_SECRET_KEY", &self.secret_key)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(ChildServer {
            child,
            addr,
            log: log.to_owned(),
            stopped: false,
        })
    }
}

/// A server child process; killed if dropped while running.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    stopped: bool,
}

impl ChildServer {
    /// SIGTERM (a graceful stop), then SIGKILL if it is still running after 15 s.
    async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stopped = true;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("load: the server did not stop within 15 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// The last lines of the server's log, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A database made for one run on the PostgreSQL server of `--database-url`, dropped after.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<FreshDatabase> {
        let name = format!("mia_load_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .context("cannot connect to the PostgreSQL server of --database-url")?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .context("cannot create the run's database")?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(admin_url).context("--database-url")?;
        url.set_path(&format!("/{name}"));
        Ok(FreshDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot drop the run's database {}", self.name))?;
        let _ = conn.close().await;
        Ok(())
    }
}

/// The `mia-webhooks` binary: `--server-bin`, or next to this executable (both are built into
/// the same target directory).
fn server_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("mia-webhooks"))
            .unwrap_or_default(),
    };
    if !path.is_file() {
        bail!(
            "the server binary {} does not exist: build it with `cargo build --release -p mia-webhooks`, \
             pass --server-bin, or use --in-process",
            path.display()
        );
    }
    Ok(path)
}

/// A port free on 127.0.0.1 right now (the child binds it a moment later).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Waits until `url` answers `/readyz` with 200, for at most 60 s; fails at once if the child
/// exits.
async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    mut child: Option<&mut ChildServer>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(child) = child.as_deref_mut() {
            if let Ok(Some(status)) = child.child.try_wait() {
                child.stopped = true;
                bail!(
                    "the server exited ({status}) before it was ready:\n{}",
                    child.log_tail()
                );
            }
        }
        let ready = client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = child.map(|c| c.log_tail()).unwrap_or_default();
            bail!("{url} was not ready within 60 s\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Random bytes from the OS-seeded thread generator.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// The resident set of a process now and at its peak, in bytes, from a `/proc/.../status`
/// file; `None` once the process is gone.
pub(crate) fn read_rss(status_file: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(status_file).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
