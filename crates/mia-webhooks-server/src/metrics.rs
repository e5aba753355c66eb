//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The handle of the process-wide Prometheus recorder, installed on first use. `None` when
/// another recorder was installed first (an embedding application's own).
pub(crate) fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "mia_webhooks_events_ingested_total",
        "Events accepted by POST /api/events."
    );
    metrics::describe_gauge!(
        "mia_webhooks_deliveries",
        "Deliveries by status, read from the store at scrape time."
    );
    metrics::describe_gauge!(
        "mia_webhooks_queue_depth",
        "Deliveries waiting for an attempt (pending)."
    );
    metrics::describe_gauge!(
        "mia_webhooks_webhooks_disabled",
        "Webhooks that are disabled."
    );
}
