//! The worker loop: claims due deliveries, runs their attempts concurrently, records results in
//! batches, sleeps when idle and stops cleanly.
//!
//! The loop itself never waits for the store. Store work (write results, disable webhooks,
//! release leases, claim more) runs as one background [`StoreOp`] at a time, while attempts keep
//! starting from a small buffer of claimed deliveries; so the store's latency overlaps the HTTP
//! work instead of adding to it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mia_webhooks_model::{DeliveryId, Timestamp, WebhookId};
use mia_webhooks_store::{
    AttemptResult, ClaimRequest, ClaimedDelivery, LeaseToken, NextState, RecordOutcome, Store,
};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::Notify;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::intake::{Intake, Reservation};
use crate::store_round::{Pending, StoreOp, StoreOpDone, ToDisable, run_store_op, wait_op};
use crate::{AttemptReport, DeliveryConfig, DeliveryError, Sender};

/// While there is a backlog (the last claim came back full), the loop waits until half a batch
/// of leases is free before claiming again, so that claims stay batched; but never longer than
/// this. Without a backlog it claims as soon as it may find work, for latency.
const MAX_CLAIM_WAIT: Duration = Duration::from_millis(10);

/// The most retry times a loop remembers so as to wake when each is due. Beyond it the latest
/// are forgotten (memory stays bounded with any backlog); `idle_poll` finds those.
const MAX_RETRY_WAKES: usize = 4096;

/// Wakes a [`Dispatcher`] early, or hands it deliveries leased for it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DispatcherHandle {
    notify: Arc<Notify>,
    intake: Arc<Intake>,
}

impl DispatcherHandle {
    /// Tells the loop that deliveries were queued (an event was ingested in this process), so an
    /// idle loop claims now instead of at its next poll. A notification while the loop is busy
    /// is remembered.
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    /// Reserves free slots of the dispatcher for a claim made on its behalf, typically
    /// `Store::ingest_then_claim` by an ingestion in this process; hand the claimed deliveries
    /// over with [`Reservation::hand_over`]. `None` when the dispatcher has no room, is not
    /// running or is stopping: then ingest alone and [`DispatcherHandle::notify`].
    pub fn reserve(&self) -> Option<Reservation> {
        self.intake.reserve()
    }
}

/// Claims due deliveries from a store and makes their attempts.
///
/// - Claims in batches; at most `max_in_flight` attempts run at once, and at most
///   `claim_batch` more wait claimed, ready to start as slots free up. The store applies the per-webhook
///   cap to everything leased, so one slow receiver holds at most `per_webhook_cap` slots and
///   never starves the others.
/// - Writes results in batches: when a batch is full, when its oldest result has waited
///   `record_delay`, when nothing else is in flight, or together with the next claim.
/// - Sleeps when there is nothing to do until notified ([`DispatcherHandle::notify`]), until a
///   retry it scheduled is due, or for at most `idle_poll` (for work queued by other
///   processes, expired leases of crashed workers, and retries scheduled elsewhere).
/// - Disables a webhook whose attempts have all failed for `disable_after` (counted from its
///   last edit at the latest, since re-enabling is an edit), and one that answered 410 Gone.
///
/// Stopping (cancel the token given to [`Dispatcher::run`]): no new claims; deliveries claimed
/// but not started are released; attempts in flight get `shutdown_grace` to finish and are
/// recorded; those still running then are aborted and released, so they are pending again at
/// once (the receiver may have seen such an attempt: delivery is at least once, and receivers
/// deduplicate on `X-Mia-Delivery`). If the process dies instead, leases simply expire.
#[derive(Debug)]
pub struct Dispatcher<S> {
    store: Arc<S>,
    sender: Sender,
    config: DeliveryConfig,
    notify: Arc<Notify>,
    intake: Arc<Intake>,
    rng: StdRng,
    /// Webhooks this loop disabled, with the version (last edit) it disabled.
    disabled: HashMap<WebhookId, Timestamp>,
}

/// Closes a dispatcher's intake when dropped.
struct CloseIntake(Arc<Intake>);

impl Drop for CloseIntake {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A finished attempt, as a task returns it.
#[derive(Debug)]
struct Finished {
    delivery_id: DeliveryId,
    lease: LeaseToken,
    webhook_id: WebhookId,
    webhook_version: Timestamp,
    report: AttemptReport,
}

/// The mutable state of one run of the loop.
#[derive(Debug)]
struct RunState {
    in_flight: JoinSet<Finished>,
    leases: HashMap<Id, (DeliveryId, LeaseToken)>,
    /// Claimed (or handed over), not started.
    ready: VecDeque<ClaimedDelivery>,
    /// The limit of the claim in flight, if any: leases that may come back from it.
    claiming: usize,
    /// Whether the last claim failed: then the intake offers no slots (a claim made with each
    /// ingestion would only fail the same way and make the ingestion write twice).
    claims_failing: bool,
    /// To give back without an attempt.
    to_release: Vec<(DeliveryId, LeaseToken)>,
    pending: Vec<Pending>,
    to_disable: Vec<ToDisable>,
    store_op: Option<JoinHandle<StoreOpDone>>,
    flush_at: Option<Instant>,
    /// Whether a claim may find work; false after a claim came back short, until something
    /// may have changed.
    claim_allowed: bool,
    /// When an idle loop claims again anyway.
    wake_at: Instant,
    last_claim: Instant,
    /// Whether the last claim came back full: there is a backlog, so claims are batched.
    backlog: bool,
    /// No record is tried before this (after a store error).
    record_backoff: Option<Instant>,
    /// Retries this loop scheduled that were not yet due at the last claim, earliest first
    /// (at most [`MAX_RETRY_WAKES`]): the loop wakes when the first is due. Keeping them all,
    /// not only the earliest, makes every retry start on time, not at the next `idle_poll`.
    retries: BTreeSet<Timestamp>,
    /// The `now` of the last claim sent to the store.
    claimed_at: Timestamp,
    /// Set once a stop began: attempts still running then are aborted.
    grace_until: Option<Instant>,
}

impl RunState {
    fn idle(&self) -> bool {
        self.in_flight.is_empty()
            && self.ready.is_empty()
            && self.pending.is_empty()
            && self.to_release.is_empty()
            && self.store_op.is_none()
    }
}

impl<S: Store> Dispatcher<S> {
    /// A dispatcher over `store`, sending with `sender`. Refuses a `config` that fails
    /// [`DeliveryConfig::validate`] (above all, a lease not longer than an attempt plus margin).
    pub fn new(
        store: Arc<S>,
        sender: Sender,
        config: DeliveryConfig,
    ) -> Result<Self, DeliveryError> {
        config.validate()?;
        let intake = Intake::new(
            config.max_in_flight + config.claim_batch,
            config.claim_batch,
            config.lease,
            config.per_webhook_cap,
        );
        Ok(Dispatcher {
            store,
            sender,
            config,
            notify: Arc::new(Notify::new()),
            intake: Arc::new(intake),
            rng: StdRng::from_os_rng(),
            disabled: HashMap::new(),
        })
    }

    /// Uses `rng` for the retry jitter (tests pass a seeded one).
    pub fn with_rng(mut self, rng: StdRng) -> Self {
        self.rng = rng;
        self
    }

    /// A handle that wakes this dispatcher.
    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle {
            notify: Arc::clone(&self.notify),
            intake: Arc::clone(&self.intake),
        }
    }

    /// Runs until `cancel` is cancelled, then stops as described on [`Dispatcher`] and
    /// returns. Store errors while running are logged and retried; the error returned is that
    /// of the last write at the stop, when it failed (the unwritten attempts' leases expire and
    /// their deliveries are tried again).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), DeliveryError> {
        let now = Instant::now();
        let mut state = RunState {
            in_flight: JoinSet::new(),
            leases: HashMap::new(),
            ready: VecDeque::new(),
            claiming: 0,
            claims_failing: false,
            to_release: Vec::new(),
            pending: Vec::new(),
            to_disable: Vec::new(),
            store_op: None,
            flush_at: None,
            claim_allowed: true,
            wake_at: now,
            last_claim: now,
            backlog: false,
            record_backoff: None,
            retries: BTreeSet::new(),
            claimed_at: Timestamp::now(),
            grace_until: None,
        };
        tracing::info!(
            max_in_flight = self.config.max_in_flight,
            "delivery dispatcher started"
        );
        // At most `max_in_flight + claim_batch` leases are held: the attempts in flight and one
        // batch ready (the intake counts them, with what it reserved for claims made for us).
        self.intake.open();
        // Closed however this ends (a panic or a dropped future included), so that nothing is
        // handed over to a loop that is gone; what was handed and not taken then waits for its
        // leases to expire, as after a crash.
        let _close_intake = CloseIntake(Arc::clone(&self.intake));
        let claim_threshold = (self.config.claim_batch / 2).max(1);

        loop {
            while let Some(joined) = state.in_flight.try_join_next_with_id() {
                self.joined(&mut state, joined);
            }
            let stopping = state.grace_until.is_some();
            let room = self.take_intake(&mut state);
            if !stopping {
                while state.in_flight.len() < self.config.max_in_flight {
                    let Some(delivery) = state.ready.pop_front() else {
                        break;
                    };
                    if lease_too_short(
                        delivery.leased_until,
                        Timestamp::now(),
                        self.config.attempt_timeout,
                    ) {
                        // It waited too long for a slot: an attempt begun now could outlive
                        // its lease, and another worker could send it at the same time.
                        state
                            .to_release
                            .push((delivery.delivery_id, delivery.lease));
                        continue;
                    }
                    self.start(&mut state, delivery);
                }
            }
            let now = Instant::now();
            let record_ready = state.record_backoff.is_none_or(|at| at <= now);
            if state.store_op.is_none() {
                let wanted = !stopping
                    && state.claim_allowed
                    && room > 0
                    && (!state.backlog
                        || room >= claim_threshold
                        || now >= state.last_claim + MAX_CLAIM_WAIT);
                // Taken from the intake at once, so that no claim made for this loop meanwhile
                // can use the same slots.
                let limit = if wanted {
                    let held = state.in_flight.len() + state.ready.len();
                    self.intake
                        .take_room(held, room.min(self.config.claim_batch))
                } else {
                    0
                };
                let claim = limit > 0;
                let flush = !state.pending.is_empty()
                    && record_ready
                    && (claim
                        || state.in_flight.is_empty()
                        || state.pending.len() >= self.config.record_batch
                        || state.flush_at.is_some_and(|at| at <= now));
                if claim
                    || flush
                    || !state.to_release.is_empty()
                    || (!state.to_disable.is_empty() && record_ready)
                {
                    let take = if flush {
                        state.pending.len().min(self.config.record_batch)
                    } else {
                        0
                    };
                    let op = StoreOp {
                        results: state.pending.drain(..take).collect(),
                        disables: std::mem::take(&mut state.to_disable),
                        release: std::mem::take(&mut state.to_release),
                        claim: claim.then(|| ClaimRequest {
                            limit,
                            lease: self.config.lease,
                            per_webhook_cap: self.config.per_webhook_cap,
                            now: Timestamp::now(),
                        }),
                    };
                    if let Some(request) = &op.claim {
                        state.last_claim = now;
                        state.claimed_at = request.now;
                        state.claiming = request.limit;
                    }
                    // Results left over (more than a batch) go with the next round at once.
                    state.flush_at = (!state.pending.is_empty()).then_some(now);
                    state.store_op = Some(tokio::spawn(run_store_op(
                        Arc::clone(&self.store),
                        self.config.clone(),
                        op,
                    )));
                }
            }
            if stopping && state.idle() {
                break;
            }
            if stopping
                && state.store_op.is_none()
                && state.in_flight.is_empty()
                && !record_ready
                && state.grace_until.is_some_and(|grace| grace <= now)
            {
                // The store kept failing through the grace period and no attempt is left: one
                // last try after the loop. (Before the grace ends, a failed write is tried
                // again after its backoff: one passing error must not lose the results.)
                break;
            }

            // Whether idle is what the intake sees while the loop sleeps.
            self.take_intake(&mut state);
            // Sleep until the first thing that needs the loop.
            let mut wake = now + self.config.idle_poll;
            if !state.pending.is_empty() {
                let at = state
                    .record_backoff
                    .unwrap_or(now)
                    .max(state.flush_at.unwrap_or(now));
                wake = wake.min(at);
            }
            if let Some(grace) = state.grace_until {
                if !state.in_flight.is_empty() {
                    wake = wake.min(grace);
                }
            } else if state.claim_allowed && state.backlog && room > 0 {
                wake = wake.min(state.last_claim + MAX_CLAIM_WAIT);
            } else if !state.claim_allowed {
                wake = wake.min(state.wake_at);
            }
            tokio::select! {
                biased;
                () = cancel.cancelled(), if !stopping => {
                    tracing::info!(in_flight = state.in_flight.len(), "delivery dispatcher stopping");
                    state.grace_until = Some(Instant::now() + self.config.shutdown_grace);
                    state.to_release.extend(state.ready.drain(..).map(|d| (d.delivery_id, d.lease)));
                    let handed = self.intake.close();
                    state.to_release.extend(handed.iter().map(|d| (d.delivery_id, d.lease)));
                }
                done = wait_op(&mut state.store_op), if state.store_op.is_some() => {
                    state.store_op = None;
                    state.claiming = 0;
                    self.store_op_done(&mut state, done);
                }
                Some(joined) = state.in_flight.join_next_with_id(), if !state.in_flight.is_empty() => {
                    self.joined(&mut state, joined);
                }
                () = self.notify.notified(), if !stopping => {
                    state.claim_allowed = true;
                }
                // Deliveries handed over: the next turn of the loop takes and starts them.
                () = self.intake.arrived.notified(), if !stopping => {}
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if state.grace_until.is_some_and(|grace| grace <= now) {
                        self.abort_in_flight(&mut state).await;
                    } else if !state.claim_allowed && state.wake_at <= now {
                        state.claim_allowed = true;
                    }
                }
            }
        }

        if !state.pending.is_empty() {
            // A last try: the store failed until now.
            let results: Vec<_> = state.pending.iter().map(|p| p.result.clone()).collect();
            if let Err(err) = self.store.record(&results).await {
                tracing::error!(error = %err, unwritten = results.len(), "delivery results could not be written at the stop; their deliveries will be tried again when their leases expire");
                return Err(err.into());
            }
        }
        tracing::info!("delivery dispatcher stopped");
        Ok(())
    }

    /// Takes what was handed over into `ready` and tells the intake what this loop holds and
    /// whether it is idle; returns the room left for a claim.
    fn take_intake(&self, state: &mut RunState) -> usize {
        let held = state.in_flight.len() + state.ready.len() + state.claiming;
        let idle = state.idle() && state.grace_until.is_none() && !state.claims_failing;
        let before = state.ready.len();
        let room = self.intake.exchange(held, idle, &mut state.ready);
        let handed = state.ready.len() - before;
        if handed > 0 {
            metrics::counter!("mia_webhooks_claimed_total").increment(handed as u64);
        }
        room
    }

    fn start(&self, state: &mut RunState, delivery: ClaimedDelivery) {
        let sender = self.sender.clone();
        let (delivery_id, lease) = (delivery.delivery_id, delivery.lease);
        let handle = state.in_flight.spawn(async move {
            let report = sender.send(&delivery, Timestamp::now()).await;
            Finished {
                delivery_id: delivery.delivery_id,
                lease: delivery.lease,
                webhook_id: delivery.webhook.id,
                webhook_version: delivery.webhook.updated_at,
                report,
            }
        });
        state.leases.insert(handle.id(), (delivery_id, lease));
    }

    /// Takes in a finished (or aborted) attempt.
    fn joined(&mut self, state: &mut RunState, joined: Result<(Id, Finished), JoinError>) {
        match joined {
            Ok((id, finished)) => {
                state.leases.remove(&id);
                let now = Timestamp::now();
                let decision = self
                    .config
                    .retry
                    .decide(&finished.report, now, &mut self.rng);
                if state.pending.is_empty() {
                    state.flush_at = Some(Instant::now() + self.config.record_delay);
                }
                state.pending.push(Pending {
                    result: AttemptResult {
                        delivery_id: finished.delivery_id,
                        lease: finished.lease,
                        webhook_id: finished.webhook_id,
                        attempt: finished.report.attempt,
                        next: decision.next,
                        disable_webhook: decision.disable_webhook,
                        now,
                    },
                    webhook_version: finished.webhook_version,
                });
            }
            Err(err) => {
                // Aborted at the stop, or (a bug) panicked: either way there is no result, and
                // the delivery is given back.
                if err.is_panic() {
                    tracing::error!(error = %err, "a delivery attempt panicked");
                }
                if let Some(lease) = state.leases.remove(&err.id()) {
                    state.to_release.push(lease);
                }
            }
        }
        metrics::gauge!("mia_webhooks_attempts_in_flight").set(state.in_flight.len() as f64);
    }

    /// Aborts the attempts still running after the grace period; their deliveries are released.
    async fn abort_in_flight(&mut self, state: &mut RunState) {
        let running = state.in_flight.len();
        if running == 0 {
            return;
        }
        tracing::warn!(
            running,
            "aborting delivery attempts still running after the shutdown grace period"
        );
        state.in_flight.abort_all();
        while let Some(joined) = state.in_flight.join_next_with_id().await {
            self.joined(state, joined);
        }
    }

    fn store_op_done(&mut self, state: &mut RunState, done: StoreOpDone) {
        for item in &done.disabled {
            if self.disabled.len() >= 10_000 {
                self.disabled.clear();
            }
            self.disabled.insert(item.webhook, item.version);
        }
        match done.recorded {
            Ok(outcomes) => {
                let written = !done.results.is_empty();
                for (pending, outcome) in done.results.iter().zip(outcomes) {
                    self.account(pending, outcome, state);
                }
                state.record_backoff = None;
                if written {
                    // Recorded results free per-webhook capacity in the store.
                    state.claim_allowed = true;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, pending = done.results.len(), "writing delivery results failed; trying again");
                let mut results = done.results;
                results.append(&mut state.pending);
                state.pending = results;
                state.record_backoff =
                    Some(Instant::now() + self.config.idle_poll.min(Duration::from_secs(1)));
            }
        }
        let Some((limit, claimed)) = done.claimed else {
            return;
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "claiming deliveries failed; trying again later");
                state.claims_failing = true;
                state.backlog = false;
                self.pause_claims(state, Instant::now() + self.config.idle_poll);
                return;
            }
        };
        state.claims_failing = false;
        state.backlog = claimed.len() >= limit;
        if claimed.len() < limit {
            let mut wake = Instant::now() + self.config.idle_poll;
            // Retries due at the claim's time were claimable by it; the others wake the loop.
            while state
                .retries
                .first()
                .is_some_and(|at| *at <= state.claimed_at)
            {
                state.retries.pop_first();
            }
            if let Some(retry) = state.retries.first() {
                wake = wake.min(Instant::now() + retry.duration_since(Timestamp::now()));
            }
            self.pause_claims(state, wake);
        }
        if claimed.is_empty() {
            return;
        }
        metrics::counter!("mia_webhooks_claimed_total").increment(claimed.len() as u64);
        if state.grace_until.is_some() {
            state
                .to_release
                .extend(claimed.iter().map(|d| (d.delivery_id, d.lease)));
        } else {
            state.ready.extend(claimed);
        }
    }

    fn pause_claims(&self, state: &mut RunState, until: Instant) {
        state.claim_allowed = false;
        state.wake_at = until;
    }

    /// Counts a written result and notes webhooks that have failed for too long.
    fn account(&self, pending: &Pending, outcome: RecordOutcome, state: &mut RunState) {
        let result = &pending.result;
        let failing_since = match outcome {
            RecordOutcome::Recorded { failing_since } => failing_since,
            RecordOutcome::Cancelled { .. } => {
                // Its webhook was disabled meanwhile: no retry to wake for, nothing to disable.
                metrics::counter!("mia_webhooks_deliveries_total", "outcome" => "cancelled")
                    .increment(1);
                return;
            }
            RecordOutcome::LeaseLost => {
                metrics::counter!("mia_webhooks_leases_lost_total").increment(1);
                tracing::warn!(delivery_id = %result.delivery_id, "the lease was lost before the result was written; the attempt is not recorded");
                return;
            }
        };
        let label = match result.next {
            NextState::Succeeded => "succeeded",
            NextState::RetryAt(at) => {
                state.retries.insert(at);
                if state.retries.len() > MAX_RETRY_WAKES {
                    state.retries.pop_last();
                }
                "retry"
            }
            NextState::Failed => "failed",
        };
        metrics::counter!("mia_webhooks_deliveries_total", "outcome" => label).increment(1);
        if let Some(reason) = &result.disable_webhook {
            metrics::counter!("mia_webhooks_webhooks_disabled_total", "reason" => "gone")
                .increment(1);
            tracing::warn!(webhook_id = %result.webhook_id, reason = %reason, "webhook disabled");
            return;
        }
        let Some(since) = failing_since else { return };
        // Re-enabling a webhook is an edit: the failing period starts again from it.
        let since = since.max(pending.webhook_version);
        let already = self
            .disabled
            .get(&result.webhook_id)
            .is_some_and(|v| *v >= pending.webhook_version);
        if !already
            && result.now.duration_since(since) >= self.config.disable_after
            && !state
                .to_disable
                .iter()
                .any(|d| d.webhook == result.webhook_id)
        {
            state.to_disable.push(ToDisable {
                webhook: result.webhook_id,
                since,
                version: pending.webhook_version,
            });
        }
    }
}
/// Whether what is left of a lease at `now` is shorter than an attempt may take (the sender's
/// bound, attempt timeout + 1 s) plus a second to record its result.
fn lease_too_short(leased_until: Timestamp, now: Timestamp, attempt_timeout: Duration) -> bool {
    let left_ms = leased_until.as_millis().saturating_sub(now.as_millis());
    let needed = attempt_timeout + Duration::from_secs(2);
    u128::try_from(left_ms).unwrap_or(0) < needed.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_must_outlast_an_attempt_and_its_record() {
        let now = Timestamp::from_millis(1_000_000);
        let timeout = Duration::from_secs(15);
        let until = |ms| now.saturating_add(Duration::from_millis(ms));
        assert!(
            !lease_too_short(until(60_000), now, timeout),
            "a fresh lease"
        );
        assert!(!lease_too_short(until(17_000), now, timeout), "just enough");
        assert!(
            lease_too_short(until(16_999), now, timeout),
            "a moment short"
        );
        assert!(lease_too_short(now, now, timeout), "ending now");
        assert!(
            lease_too_short(Timestamp::from_millis(0), now, timeout),
            "expired"
        );
    }
}
