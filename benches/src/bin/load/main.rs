//! End-to-end load generator of mia-webhooks (issue 7).
//!
//! `cargo build --release -p mia-webhooks && cargo run --release -p mia-webhooks-benches --bin load -- --events 20000 --webhooks 10`
//!
//! It starts the server (a child process on a fresh SQLite file by default; see `--help`),
//! creates webhooks that point at its own receiver on 127.0.0.1, measures the raw local HTTP
//! rate, posts the events, waits for every delivery, and prints a summary and, as the last line
//! of stdout, one JSON object. It exits with 1 when a delivery is missing or badly signed, and
//! with 2 when the run could not be made. Everything it talks to is on 127.0.0.1.

mod args;
mod emit;
mod fleet;
mod receiver;
mod report;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser as _;
use tokio_util::sync::CancellationToken;

use crate::args::Args;
use crate::emit::Emitter;
use crate::fleet::Fleet;
use crate::receiver::Tally;
use crate::report::{Context, Report};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(err) = args.check() {
        eprintln!("load: {err:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("load: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!(
                "load: FAILED: {} missing, {} badly signed",
                report.missing, report.bad_signature
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("load: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let base = Instant::now();
    let load_average_start = load_average();
    let secrets: Vec<Vec<u8>> = (0..args.webhooks).map(|_| random_secret()).collect();
    let raw_secret = random_secret();
    let gate = args.backlog.then(CancellationToken::new);
    let tally = Arc::new(Tally::new(
        base,
        args.events,
        secrets.clone(),
        raw_secret.clone(),
        gate.clone(),
        Duration::from_millis(args.receiver_delay_ms),
    ));
    let receiver = receiver::start(Arc::clone(&tally)).await?;
    let client = emit::client(args.concurrency)?;

    eprintln!("load: starting the server");
    let fleet = Fleet::start(&args, &client).await?;
    let result = drive(&args, &fleet, &client, &tally, receiver, gate, &secrets).await;
    let incomplete = tally.received.load(Ordering::SeqCst) < args.events * args.webhooks
        || tally.bad_signature.load(Ordering::SeqCst) > 0;
    if result.is_err() || incomplete {
        for (i, tail) in fleet.log_tails().iter().enumerate() {
            eprintln!("load: the last lines of server {i}'s log:\n{tail}");
        }
    }
    let stopped = fleet.stop().await;
    let (emitter, ingest, mut ctx) = result?;
    stopped?;
    ctx.load_average_start = load_average_start;
    ctx.load_average_end = load_average();
    let report = Report::new(&tally, &emitter, &ingest, &ctx);
    report.print(ingest.first_error.as_deref());
    let _ = std::io::stdout().flush();
    Ok(report)
}

/// Creates the webhooks, measures the raw rate, posts the events and waits for the deliveries.
async fn drive(
    args: &Args,
    fleet: &Fleet,
    client: &reqwest::Client,
    tally: &Arc<Tally>,
    receiver: std::net::SocketAddr,
    gate: Option<CancellationToken>,
    secrets: &[Vec<u8>],
) -> anyhow::Result<(Arc<Emitter>, emit::IngestOutcome, Context)> {
    let mut ctx = Context {
        webhooks: args.webhooks,
        concurrency: args.concurrency,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
        database: fleet.database,
        mode: fleet.mode,
        servers: fleet.urls.len(),
        backlog: args.backlog,
        receiver_delay_ms: args.receiver_delay_ms,
        ..Context::default()
    };
    let webhook_ids = emit::create_webhooks(
        client,
        &fleet.urls[0],
        &fleet.token,
        receiver,
        secrets,
        &args.event,
    )
    .await?;

    let raw = || async {
        if args.raw_secs <= 0.0 {
            return Ok(None);
        }
        eprintln!(
            "load: measuring the raw local HTTP rate for {} s",
            args.raw_secs
        );
        let rate = emit::raw_rate(
            receiver,
            tally.raw_secret(),
            args.concurrency,
            args.payload_bytes,
            args.raw_secs,
        )
        .await?;
        anyhow::Ok(Some(rate))
    };
    ctx.raw_http_before = raw().await?;

    let emitter = Arc::new(Emitter::new(
        client.clone(),
        fleet.urls.clone(),
        fleet.token.clone(),
        args.event.clone(),
        args.events,
        args.payload_bytes,
        args.rate,
        tally.base,
    ));
    let monitor = Monitor::start(
        fleet.status_files(),
        Arc::clone(tally),
        Arc::clone(&emitter),
    );
    let expected = args.events * args.webhooks;
    tally.expect(expected);
    eprintln!(
        "load: posting {} events ({} deliveries expected)",
        args.events, expected
    );
    let ingest = emitter.run(args.concurrency).await;
    if ingest.errors > 0 {
        // Wait only for what was acknowledged; the rest counts as missing.
        tally.expect(ingest.accepted * args.webhooks);
    }
    if let Some(gate) = gate {
        ctx.pending_at_gate = pending_deliveries(client, &fleet.urls[0]).await;
        ctx.rss_at_gate = monitor.current_rss();
        gate.cancel();
    }
    let timeout = Duration::from_secs_f64(args.timeout_secs);
    ctx.timed_out = tokio::time::timeout(timeout, tally.reached.notified())
        .await
        .is_err();
    if !ctx.timed_out {
        // Duplicates would arrive just after the last first arrival.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ctx.peak_rss = monitor.stop().await;
    // Measured again once the server is idle: the machine's load moves during a run, and the
    // mean of both is what the run's rates are compared with.
    ctx.raw_http_after = raw().await?;
    if fleet.mode == "external" {
        emit::delete_webhooks(client, &fleet.urls[0], &fleet.token, &webhook_ids).await;
    }
    Ok((emitter, ingest, ctx))
}

/// The queue depth a server reports at `/metrics` (`mia_webhooks_queue_depth`).
async fn pending_deliveries(client: &reqwest::Client, base: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("mia_webhooks_queue_depth "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A webhook secret: 32 random bytes as hex.
fn random_secret() -> Vec<u8> {
    let bytes: [u8; 16] = fleet::random_bytes();
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes()
}

/// The one-minute load average of the machine.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples the servers' memory every 100 ms and draws the progress line on stderr.
struct Monitor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
    current: Arc<AtomicU64>,
}

impl Monitor {
    fn start(files: Vec<PathBuf>, tally: Arc<Tally>, emitter: Arc<Emitter>) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(AtomicU64::new(0));
        let (stop_flag, current_rss) = (Arc::clone(&stop), Arc::clone(&current));
        let task = tokio::spawn(async move {
            let terminal = std::io::stderr().is_terminal();
            let started = Instant::now();
            let mut peaks = vec![0u64; files.len()];
            let mut last_line = Instant::now();
            let expected = tally.events * tally.webhooks;
            loop {
                let stopping = stop_flag.load(Ordering::SeqCst);
                let mut total = 0;
                for (file, peak) in files.iter().zip(&mut peaks) {
                    if let Some((rss, hwm)) = fleet::read_rss(file) {
                        *peak = (*peak).max(rss).max(hwm);
                        total += rss;
                    }
                }
                current_rss.store(total, Ordering::SeqCst);
                let every = if terminal {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(5)
                };
                if stopping || last_line.elapsed() >= every {
                    last_line = Instant::now();
                    let line = format!(
                        "load: {:>6.1} s | events {}/{} | deliveries {}/{} | server RSS {:.1} MiB",
                        started.elapsed().as_secs_f64(),
                        emitter.answered.load(Ordering::Relaxed),
                        tally.events,
                        tally.received.load(Ordering::Relaxed),
                        expected,
                        total as f64 / (1024.0 * 1024.0),
                    );
                    if terminal {
                        eprint!("\r{line}\x1b[K");
                        if stopping {
                            eprintln!();
                        }
                    } else {
                        eprintln!("{line}");
                    }
                }
                if stopping {
                    return peaks;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Monitor {
            stop,
            task,
            current,
        }
    }

    /// The servers' resident memory at the last sample, in bytes.
    fn current_rss(&self) -> Option<u64> {
        Some(self.current.load(Ordering::SeqCst)).filter(|b| *b > 0)
    }

    /// Takes a last sample and returns each server's peak (including the kernel's high-water
    /// mark), in bytes.
    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_load_average_is_read() {
        assert!(super::load_average().is_some_and(|l| l >= 0.0));
    }

    #[test]
    fn secrets_are_hex_and_differ() {
        let (a, b) = (super::random_secret(), super::random_secret());
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }
}
