//! Deliveries leased on a dispatcher's behalf by someone else in its process.
//!
//! An ingestion in the same process can lease the deliveries it creates in its own transaction
//! (`Store::ingest_then_claim`) and hand them straight to the dispatcher, which then starts
//! their attempts without a claim of its own: on SQLite that saves a transaction and a wake-up
//! on the way from ingestion to first attempt. The dispatcher stays the only judge of how much
//! it holds: a claim made for it first reserves slots it has free ([`DispatcherHandle::reserve`]),
//! so the two never lease more together than the dispatcher would alone.
//!
//! Slots are offered only while the dispatcher is idle (nothing in flight, nothing to record,
//! no store work running): that is when new deliveries would cost it a claim transaction of
//! their own. A busy dispatcher claims them with its next round of store work anyway, in the
//! transaction that records its results, and claims made with each ingestion would only
//! lengthen the ingestion's transactions.
//!
//! [`DispatcherHandle::reserve`]: crate::DispatcherHandle::reserve

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mia_webhooks_model::Timestamp;
use mia_webhooks_store::{ClaimRequest, ClaimedDelivery};
use tokio::sync::Notify;

/// The meeting point of a dispatcher and the claims made for it.
#[derive(Debug)]
pub(crate) struct Intake {
    state: Mutex<IntakeState>,
    /// Signalled when deliveries are handed over.
    pub(crate) arrived: Notify,
    capacity: usize,
    claim_batch: usize,
    lease: Duration,
    per_webhook_cap: usize,
}

#[derive(Debug, Default)]
struct IntakeState {
    /// Whether the dispatcher takes deliveries (running, not stopping).
    open: bool,
    /// Whether the dispatcher was idle at its last look: only then are slots offered.
    idle: bool,
    /// Leases the dispatcher holds or is claiming, as of its last look.
    held: usize,
    /// Slots reserved by claims made for the dispatcher, not yet handed over.
    reserved: usize,
    /// Handed over, not yet taken by the dispatcher.
    handed: Vec<ClaimedDelivery>,
}

impl Intake {
    /// An intake for a dispatcher that holds at most `capacity` leases and claims at most
    /// `claim_batch` at a time, with these lease terms. Closed until the dispatcher runs.
    pub(crate) fn new(
        capacity: usize,
        claim_batch: usize,
        lease: Duration,
        per_webhook_cap: usize,
    ) -> Intake {
        Intake {
            state: Mutex::new(IntakeState::default()),
            arrived: Notify::new(),
            capacity,
            claim_batch,
            lease,
            per_webhook_cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, IntakeState> {
        // Nothing here panics while holding the lock; a poisoned lock still holds sound counts.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The dispatcher's side, on start: opens the intake ([`Intake::close`] closes it).
    pub(crate) fn open(&self) {
        self.lock().open = true;
    }

    /// The dispatcher's side: tells how many leases it holds or is claiming (`held`) and whether
    /// it is idle, moves what was handed over into `into`, and returns the room left for its own
    /// claims.
    pub(crate) fn exchange(
        &self,
        held: usize,
        idle: bool,
        into: &mut impl Extend<ClaimedDelivery>,
    ) -> usize {
        let mut state = self.lock();
        let handed = state.handed.len();
        into.extend(state.handed.drain(..));
        state.held = held + handed;
        state.idle = idle && handed == 0;
        self.capacity
            .saturating_sub(state.held.saturating_add(state.reserved))
    }

    /// The dispatcher's side, starting a claim of its own: takes up to `wanted` free slots for
    /// it, counting `held` (its leases; what was handed over and not yet taken counts too), and
    /// returns how many. The next [`Intake::exchange`] must count the claim in `held`.
    pub(crate) fn take_room(&self, held: usize, wanted: usize) -> usize {
        let mut state = self.lock();
        let held = held + state.handed.len();
        let free = self
            .capacity
            .saturating_sub(held.saturating_add(state.reserved));
        let slots = free.min(wanted);
        state.held = held + slots;
        state.idle = false;
        slots
    }

    /// The dispatcher's side at its stop: closes the intake and returns what was handed over
    /// and not taken, to be released.
    pub(crate) fn close(&self) -> Vec<ClaimedDelivery> {
        let mut state = self.lock();
        state.open = false;
        std::mem::take(&mut state.handed)
    }

    /// The claimer's side: reserves up to a claim batch of free slots of an idle dispatcher.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        let mut state = self.lock();
        if !state.open || !state.idle {
            return None;
        }
        let free = self
            .capacity
            .saturating_sub(state.held.saturating_add(state.reserved));
        let slots = free.min(self.claim_batch);
        if slots == 0 {
            return None;
        }
        state.reserved += slots;
        Some(Reservation {
            intake: Arc::clone(self),
            slots,
        })
    }
}

/// Slots a dispatcher set aside for a claim made on its behalf. Dropped without
/// [`Reservation::hand_over`], the slots go back to the dispatcher.
#[derive(Debug)]
#[must_use = "a reservation holds the dispatcher's slots until handed over or dropped"]
pub struct Reservation {
    intake: Arc<Intake>,
    slots: usize,
}

impl Reservation {
    /// How many deliveries the claim may lease.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The claim to make: at most [`Reservation::slots`] deliveries, on the dispatcher's lease
    /// terms, at `now`.
    pub fn request(&self, now: Timestamp) -> ClaimRequest {
        ClaimRequest {
            limit: self.slots,
            lease: self.intake.lease,
            per_webhook_cap: self.intake.per_webhook_cap,
            now,
        }
    }

    /// Gives the claimed deliveries to the dispatcher, which starts their attempts as it would
    /// for its own claims. When the dispatcher has stopped meanwhile they come back as the
    /// error: the caller must release them (`Store::release`), or they wait for their leases to
    /// expire.
    pub fn hand_over(mut self, claimed: Vec<ClaimedDelivery>) -> Result<(), Vec<ClaimedDelivery>> {
        debug_assert!(
            claimed.len() <= self.slots,
            "a claim took more than its reservation"
        );
        if claimed.is_empty() {
            return Ok(());
        }
        {
            let mut state = self.intake.lock();
            if !state.open {
                return Err(claimed);
            }
            // Counted as held from now on, in the same step as the reservation ends, so that
            // the dispatcher never counts them twice; its next look recounts them.
            state.held += claimed.len();
            state.reserved = state.reserved.saturating_sub(self.slots);
            self.slots = 0;
            state.idle = false;
            state.handed.extend(claimed);
        }
        self.intake.arrived.notify_one();
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.slots == 0 {
            return;
        }
        {
            let mut state = self.intake.lock();
            state.reserved = state.reserved.saturating_sub(self.slots);
        }
        // The slots are free again: a dispatcher that found no room for its own claim while
        // they were reserved looks again.
        self.intake.arrived.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mia_webhooks_model::{
        DeliveryId, EventCatalog, EventId, EventName, EventSet, Scope, Secret, TargetUrl, Webhook,
        WebhookId,
    };
    use mia_webhooks_store::LeaseToken;

    /// An open intake whose dispatcher is idle and holds nothing.
    fn intake(capacity: usize, claim_batch: usize) -> Arc<Intake> {
        let intake = Intake::new(capacity, claim_batch, Duration::from_secs(60), 8);
        intake.open();
        intake.exchange(0, true, &mut Vec::new());
        Arc::new(intake)
    }

    fn delivery() -> ClaimedDelivery {
        let catalog = EventCatalog::built_in();
        let now = Timestamp::now();
        ClaimedDelivery {
            delivery_id: DeliveryId::new(),
            lease: LeaseToken::new(),
            leased_until: now,
            event_id: EventId::new(),
            event_name: EventName::new("project_created").unwrap(),
            attempt: 1,
            created_at: now,
            webhook: Arc::new(Webhook {
                id: WebhookId::new(),
                scope: Scope::Instance,
                target_url: TargetUrl::new("http://127.0.0.1:9/hook").unwrap(),
                secret: Secret::new("s").unwrap(),
                events: EventSet::new(&["project_created"], &catalog).unwrap(),
                ca_certificate: None,
                proxy: None,
                description: None,
                enabled: true,
                disabled_reason: None,
                created_at: now,
                updated_at: now,
            }),
            payload: Arc::from(&b"{}"[..]),
        }
    }

    #[test]
    fn reservations_share_the_room_with_the_dispatcher_and_come_back_when_dropped() {
        let intake = intake(10, 4);
        let mut ready = Vec::new();
        assert_eq!(intake.exchange(3, true, &mut ready), 7);
        let first = intake.reserve().unwrap();
        assert_eq!(first.slots(), 4, "at most a claim batch");
        let second = intake.reserve().unwrap();
        assert_eq!(second.slots(), 3, "what is left");
        assert!(intake.reserve().is_none(), "no room left");
        assert_eq!(
            intake.exchange(3, true, &mut ready),
            0,
            "the dispatcher sees none"
        );
        drop(first);
        assert_eq!(intake.exchange(3, true, &mut ready), 4);
        assert_eq!(second.request(Timestamp::now()).limit, 3);
        // The dispatcher's own claim takes what the reservations left, no more.
        assert_eq!(intake.take_room(3, 8), 4);
        assert!(
            intake.reserve().is_none(),
            "claiming: neither idle nor any room"
        );
        assert_eq!(intake.exchange(3 + 4, true, &mut ready), 0);
        drop(second);
        assert_eq!(intake.exchange(3 + 4, true, &mut ready), 3);
        assert_eq!(intake.reserve().unwrap().slots(), 3);
    }

    #[test]
    fn handed_deliveries_count_as_held_until_taken_and_unused_slots_return() {
        let intake = intake(10, 8);
        let mut ready = Vec::new();
        assert_eq!(intake.exchange(0, true, &mut ready), 10);
        let reservation = intake.reserve().unwrap();
        assert_eq!(reservation.slots(), 8);
        reservation
            .hand_over(vec![delivery(), delivery(), delivery()])
            .unwrap();
        assert!(
            intake.reserve().is_none(),
            "busy with what it was handed, it offers nothing"
        );
        // Three held (handed), five slots back.
        assert_eq!(intake.exchange(0, false, &mut ready), 7);
        assert_eq!(ready.len(), 3, "the dispatcher took them");
        assert!(intake.reserve().is_none(), "not idle");
        // Taken: the dispatcher now counts them itself; idle again later, it offers slots.
        assert_eq!(intake.exchange(3, true, &mut ready), 7);
        assert_eq!(ready.len(), 3);
        assert_eq!(intake.reserve().unwrap().slots(), 7);
    }

    #[tokio::test]
    async fn slots_coming_back_unused_wake_the_dispatcher() {
        let intake = intake(10, 8);
        let reservation = intake.reserve().unwrap();
        let wake = intake.arrived.notified();
        drop(reservation);
        tokio::time::timeout(Duration::from_secs(5), wake)
            .await
            .expect("a dropped reservation wakes the dispatcher");
        let reservation = intake.reserve().unwrap();
        let wake = intake.arrived.notified();
        reservation.hand_over(Vec::new()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake)
            .await
            .expect("an empty hand-over gives the slots back and wakes the dispatcher");
        assert_eq!(intake.reserve().unwrap().slots(), 8);
    }

    #[test]
    fn a_closed_intake_reserves_nothing_and_gives_deliveries_back() {
        let intake = intake(10, 8);
        let early = intake.reserve().unwrap();
        let waiting = intake.reserve().unwrap();
        waiting.hand_over(vec![delivery()]).unwrap();
        let left = intake.close();
        assert_eq!(left.len(), 1, "handed, never taken: to release");
        assert!(intake.reserve().is_none());
        let back = early.hand_over(vec![delivery(), delivery()]).unwrap_err();
        assert_eq!(back.len(), 2);
        let empty = Intake::new(10, 8, Duration::from_secs(60), 8);
        assert!(
            Arc::new(empty).reserve().is_none(),
            "closed until the dispatcher runs"
        );
    }
}
