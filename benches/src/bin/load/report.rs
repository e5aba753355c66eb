//! The figures of a run: computed from what the receiver and the emitter recorded, printed for
//! people and as one JSON line.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::emit::{Emitter, IngestOutcome};
use crate::receiver::Tally;

/// Everything measured besides the receiver's tally and the emitter's timings.
#[derive(Debug, Default)]
pub(crate) struct Context {
    pub(crate) webhooks: usize,
    pub(crate) concurrency: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) database: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) servers: usize,
    pub(crate) backlog: bool,
    pub(crate) receiver_delay_ms: u64,
    /// The raw local HTTP rate before the events and after the deliveries.
    pub(crate) raw_http_before: Option<f64>,
    pub(crate) raw_http_after: Option<f64>,
    /// Peak resident memory per server process, bytes (none for an external server).
    pub(crate) peak_rss: Vec<u64>,
    /// Pending deliveries and server memory when the backlog gate opened.
    pub(crate) pending_at_gate: Option<u64>,
    pub(crate) rss_at_gate: Option<u64>,
    pub(crate) load_average_start: Option<f64>,
    pub(crate) load_average_end: Option<f64>,
    pub(crate) timed_out: bool,
}

/// The figures.
#[derive(Debug)]
pub(crate) struct Report {
    json: Value,
    pub(crate) missing: usize,
    pub(crate) bad_signature: usize,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    pub(crate) fn new(
        tally: &Tally,
        emitter: &Emitter,
        ingest: &IngestOutcome,
        ctx: &Context,
    ) -> Report {
        let mut latencies = Vec::with_capacity(tally.events * tally.webhooks);
        let mut last_arrival = 0;
        for seq in 0..tally.events {
            let sent = emitter.sent_ns[seq].load(Ordering::Relaxed);
            for webhook in 0..tally.webhooks {
                if let Some(at) = tally.arrival(seq, webhook) {
                    latencies.push(at.saturating_sub(sent));
                    last_arrival = last_arrival.max(at);
                }
            }
        }
        latencies.sort_unstable();
        let expected = tally.events * tally.webhooks;
        let received = tally.received.load(Ordering::SeqCst);
        let missing = expected.saturating_sub(received);
        let bad_signature = tally.bad_signature.load(Ordering::SeqCst);
        let first = ingest.first_sent_ns;
        let per_sec = |count: usize, until: u64| {
            let secs = until.saturating_sub(first) as f64 / 1e9;
            (count > 0 && secs > 0.0).then(|| round(count as f64 / secs, 1))
        };
        let ingest_per_sec = per_sec(ingest.accepted, ingest.last_answer_ns);
        let deliveries_per_sec = per_sec(received, last_arrival);
        let raw_http_per_sec = match (ctx.raw_http_before, ctx.raw_http_after) {
            (Some(before), Some(after)) => Some((before + after) / 2.0),
            (one, other) => one.or(other),
        };
        let ratio = |rate: Option<f64>| match (rate, raw_http_per_sec) {
            (Some(rate), Some(raw)) if raw > 0.0 => Some(round(rate / raw, 3)),
            _ => None,
        };
        let ms = |ns: Option<u64>| ns.map(|ns| round(ns as f64 / 1e6, 3));
        let peak_rss_mib = ctx.peak_rss.iter().max().map(|b| round(*b as f64 / MIB, 1));
        let json = json!({
            "events": tally.events,
            "webhooks": ctx.webhooks,
            "expected": expected,
            "deliveries": received,
            "ingest_per_sec": ingest_per_sec,
            "deliveries_per_sec": deliveries_per_sec,
            "p50_ms": ms(percentile(&latencies, 50.0)),
            "p90_ms": ms(percentile(&latencies, 90.0)),
            "p99_ms": ms(percentile(&latencies, 99.0)),
            "max_ms": ms(latencies.last().copied()),
            "missing": missing,
            "duplicates": tally.duplicates.load(Ordering::SeqCst),
            "bad_signature": bad_signature,
            "unexpected": tally.unexpected.load(Ordering::SeqCst),
            "ingest_errors": ingest.errors,
            "queued": ingest.queued,
            "peak_rss_mib": peak_rss_mib,
            "peak_rss_mib_each": ctx.peak_rss.iter().map(|b| round(*b as f64 / MIB, 1)).collect::<Vec<_>>(),
            "pending_at_gate": ctx.pending_at_gate,
            "rss_at_gate_mib": ctx.rss_at_gate.map(|b| round(b as f64 / MIB, 1)),
            "raw_http_per_sec": raw_http_per_sec.map(|r| round(r, 1)),
            "raw_http_before": ctx.raw_http_before.map(|r| round(r, 1)),
            "raw_http_after": ctx.raw_http_after.map(|r| round(r, 1)),
            "deliveries_vs_raw": ratio(deliveries_per_sec),
            "ingest_vs_raw": ratio(ingest_per_sec),
            "concurrency": ctx.concurrency,
            "payload_bytes": ctx.payload_bytes,
            "rate": ctx.rate,
            "backlog": ctx.backlog,
            "receiver_delay_ms": ctx.receiver_delay_ms,
            "database": ctx.database,
            "mode": ctx.mode,
            "servers": ctx.servers,
            "timed_out": ctx.timed_out,
            "load_average_start": ctx.load_average_start,
            "load_average_end": ctx.load_average_end,
        });
        Report {
            json,
            missing,
            bad_signature,
        }
    }

    /// Whether nothing is missing and every signature held.
    pub(crate) fn passed(&self) -> bool {
        self.missing == 0 && self.bad_signature == 0
    }

    /// The human summary, then the JSON line (last line of stdout).
    pub(crate) fn print(&self, first_error: Option<&str>) {
        let j = &self.json;
        let num = |key: &str| match &j[key] {
            Value::Null => "n/a".to_owned(),
            v => v.to_string(),
        };
        println!(
            "mia-webhooks load: {} events × {} webhooks = {} deliveries expected ({}, {}, {} server(s), concurrency {}, {} B events{})",
            num("events"),
            num("webhooks"),
            num("expected"),
            j["database"].as_str().unwrap_or_default(),
            j["mode"].as_str().unwrap_or_default(),
            num("servers"),
            num("concurrency"),
            num("payload_bytes"),
            if self.json["backlog"] == true {
                ", backlog"
            } else {
                ""
            },
        );
        println!(
            "  ingest:     {} events/s ({} of raw HTTP), {} errors",
            num("ingest_per_sec"),
            num("ingest_vs_raw"),
            num("ingest_errors")
        );
        println!(
            "  deliveries: {} /s ({} of raw HTTP {} /s: {} before, {} after)",
            num("deliveries_per_sec"),
            num("deliveries_vs_raw"),
            num("raw_http_per_sec"),
            num("raw_http_before"),
            num("raw_http_after")
        );
        println!(
            "  latency ingest→arrival: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            num("p50_ms"),
            num("p90_ms"),
            num("p99_ms"),
            num("max_ms")
        );
        println!(
            "  server peak RSS: {} MiB {}",
            num("peak_rss_mib"),
            num("peak_rss_mib_each")
        );
        if j["backlog"] == true {
            println!(
                "  at the backlog's peak: {} pending, server RSS {} MiB",
                num("pending_at_gate"),
                num("rss_at_gate_mib")
            );
        }
        println!(
            "  received {}; missing {}, duplicated {}, badly signed {}, unexpected {}",
            num("deliveries"),
            num("missing"),
            num("duplicates"),
            num("bad_signature"),
            num("unexpected")
        );
        if let Some(error) = first_error {
            println!("  first ingest error: {error}");
        }
        println!("{}", self.json);
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], pct: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 1.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
