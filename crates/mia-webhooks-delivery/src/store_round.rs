//! One round of store work for the worker loop, run in the background: write results, disable
//! webhooks that failed too long, release leases, claim more.

use std::sync::Arc;
use std::time::Duration;

use mia_webhooks_model::{DeliveryId, Timestamp, WebhookId};
use mia_webhooks_store::{
    AttemptResult, ClaimRequest, ClaimedDelivery, LeaseToken, RecordOutcome, Store, StoreError,
};
use tokio::task::JoinHandle;

use crate::DeliveryConfig;

/// A result waiting to be written.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) result: AttemptResult,
    /// The webhook's `updated_at` when the delivery was claimed.
    pub(crate) webhook_version: Timestamp,
}

/// A webhook to disable for failing too long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToDisable {
    pub(crate) webhook: WebhookId,
    pub(crate) since: Timestamp,
    pub(crate) version: Timestamp,
}

/// One round of store work, run in the background.
#[derive(Debug, Default)]
pub(crate) struct StoreOp {
    pub(crate) results: Vec<Pending>,
    pub(crate) disables: Vec<ToDisable>,
    pub(crate) release: Vec<(DeliveryId, LeaseToken)>,
    pub(crate) claim: Option<ClaimRequest>,
}

/// What a [`StoreOp`] did.
#[derive(Debug)]
pub(crate) struct StoreOpDone {
    pub(crate) results: Vec<Pending>,
    /// One outcome per result, or the error that left them unwritten.
    pub(crate) recorded: Result<Vec<RecordOutcome>, StoreError>,
    pub(crate) disabled: Vec<ToDisable>,
    /// The limit asked for and what came back.
    pub(crate) claimed: Option<(usize, Result<Vec<ClaimedDelivery>, StoreError>)>,
}

/// Waits for the running store op; only polled while there is one.
pub(crate) async fn wait_op(op: &mut Option<JoinHandle<StoreOpDone>>) -> StoreOpDone {
    let Some(handle) = op.as_mut() else {
        return std::future::pending().await;
    };
    match handle.await {
        Ok(done) => done,
        Err(err) => {
            // A panic in store code: nothing is known to be written; leases will expire.
            tracing::error!(error = %err, "a delivery store operation panicked");
            StoreOpDone {
                results: Vec::new(),
                recorded: Ok(Vec::new()),
                disabled: Vec::new(),
                claimed: None,
            }
        }
    }
}

/// Writes results, disables webhooks, releases leases and claims, in that order: results first,
/// because they free per-webhook capacity for the claim.
pub(crate) async fn run_store_op<S: Store>(
    store: Arc<S>,
    config: DeliveryConfig,
    op: StoreOp,
) -> StoreOpDone {
    // The common round: results and a claim, nothing in between. One store call, so a backend
    // can write both in one transaction.
    if let Some(request) = op
        .claim
        .as_ref()
        .filter(|_| !op.results.is_empty() && op.disables.is_empty() && op.release.is_empty())
    {
        let results: Vec<AttemptResult> = op.results.iter().map(|p| p.result.clone()).collect();
        let (recorded, claimed) = store.record_then_claim(&results, request).await;
        return StoreOpDone {
            results: op.results,
            recorded,
            disabled: Vec::new(),
            claimed: Some((request.limit, claimed)),
        };
    }
    let recorded = if op.results.is_empty() {
        Ok(Vec::new())
    } else {
        let results: Vec<AttemptResult> = op.results.iter().map(|p| p.result.clone()).collect();
        store.record(&results).await
    };
    let mut disabled = Vec::new();
    for item in op.disables {
        if disable_failing(&*store, &config, item).await {
            disabled.push(item);
        }
    }
    if !op.release.is_empty() {
        if let Err(err) = store.release(&op.release).await {
            tracing::warn!(error = %err, count = op.release.len(), "releasing deliveries failed; their leases will expire");
        }
    }
    let claimed = match op.claim {
        Some(request) => Some((request.limit, store.claim(&request).await)),
        None => None,
    };
    StoreOpDone {
        results: op.results,
        recorded,
        disabled,
        claimed,
    }
}

/// A period in the largest unit that fits it ("3 days", "1.5 hours", "20 seconds").
fn human_period(period: Duration) -> String {
    let secs = period.as_secs_f64();
    let (amount, unit) = [(86_400.0, "day"), (3_600.0, "hour"), (60.0, "minute")]
        .into_iter()
        .find(|(size, _)| secs >= *size)
        .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
    // One decimal at most, none when whole.
    let rounded = (amount * 10.0).round() / 10.0;
    let plural = if rounded == 1.0 { "" } else { "s" };
    format!("{rounded} {unit}{plural}")
}

/// Disables a webhook that has failed for `disable_after`; whether it was done.
pub(crate) async fn disable_failing<S: Store>(
    store: &S,
    config: &DeliveryConfig,
    item: ToDisable,
) -> bool {
    let period = human_period(config.disable_after);
    let since_text = u64::try_from(item.since.as_millis())
        .ok()
        .and_then(|millis| std::time::UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
        .map_or_else(
            || item.since.as_millis().to_string(),
            httpdate::fmt_http_date,
        );
    let reason = format!(
        "every delivery attempt has failed since {since_text}; webhooks failing for {period} \
         are disabled; edit the webhook to enable it again"
    );
    match store
        .disable_webhook(item.webhook, &reason, Timestamp::now())
        .await
    {
        Ok(_) => {
            metrics::counter!("mia_webhooks_webhooks_disabled_total", "reason" => "failing")
                .increment(1);
            tracing::warn!(webhook_id = %item.webhook, reason = %reason, "webhook disabled");
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, webhook_id = %item.webhook, "disabling a failing webhook failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::human_period;

    #[test]
    fn periods_read_in_the_largest_unit_that_fits() {
        for (secs, text) in [
            (3.0 * 86_400.0, "3 days"),
            (86_400.0, "1 day"),
            (1.5 * 3_600.0, "1.5 hours"),
            (120.0, "2 minutes"),
            (20.0, "20 seconds"),
            (1.0, "1 second"),
            (0.25, "0.3 seconds"),
        ] {
            assert_eq!(
                human_period(Duration::from_secs_f64(secs)),
                text,
                "{secs} s"
            );
        }
    }
}
