//! Replay protection: remembering which authenticated events a receiver has already accepted.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use crate::Signature;

/// How a [`ReplayGuard`] decides that an event was replayed.
///
/// See the crate documentation for a side-by-side comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayPolicy {
    /// Accept an event only if its `eventTimestamp` is strictly newer than the last accepted one
    /// from the same source. This is what the Console documentation recommends.
    ///
    /// It keeps one timestamp per source. It rejects a retry of an event that was already
    /// accepted and an older event that arrives after a newer one (deliveries have no ordering
    /// promise), and it accepts the first event of a source however old it is.
    Monotonic,
    /// Accept an event whose `eventTimestamp` lies within `now ± tolerance` and whose signature was
    /// not already accepted from the same source within that window.
    ///
    /// It survives out-of-order delivery, and a retry whose first try never reached the receiver.
    /// It rejects an exact duplicate (same bytes, same secret) while that is inside the window, and
    /// everything outside the window. It keeps one digest per event accepted in the window and
    /// forgets digests as they leave it, so memory stays bounded by the event rate.
    Window {
        /// How far `eventTimestamp` may be from the receiver's clock, in either direction.
        tolerance: Duration,
    },
}

/// Why a [`ReplayGuard`] rejected an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// [`ReplayPolicy::Monotonic`]: the event is not newer than the last accepted one.
    NotNewer,
    /// [`ReplayPolicy::Window`]: the event is older than the window.
    TooOld,
    /// [`ReplayPolicy::Window`]: the event is newer than the window (the clocks disagree).
    TooNew,
    /// [`ReplayPolicy::Window`]: the same signature was already accepted within the window.
    Duplicate,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotNewer => "event not newer than the last accepted one",
            Self::TooOld => "event too old",
            Self::TooNew => "event too far in the future",
            Self::Duplicate => "event already accepted",
        })
    }
}

impl Error for ReplayError {}

/// Remembers accepted events per source and rejects replays, following a [`ReplayPolicy`].
///
/// Check an event only **after** its signature verified, with the `eventTimestamp` read from the
/// verified body and the signature from its header: the guard trusts what it is given, and an
/// unauthenticated request must not be able to fill its memory or move its timestamps.
///
/// `K` names a source: a webhook, a sender, or one fixed value when there is only one. The clock
/// is passed in (`now_ms`, Unix epoch milliseconds) so that tests control it.
///
/// The guard needs `&mut self`; to share it between request handlers, wrap it in a
/// [`Mutex`](std::sync::Mutex) and hold the lock only for the call to [`check`](Self::check).
///
/// ```
/// use std::time::Duration;
/// use mia_webhooks_signature::{ReplayError, ReplayGuard, ReplayPolicy, sign};
///
/// let mut guard: ReplayGuard = ReplayGuard::new(ReplayPolicy::Window {
///     tolerance: Duration::from_secs(300),
/// });
/// let now = 1_764_374_400_000;
/// let signature = sign(b"body", b"secret");
/// assert_eq!(guard.check("console", now - 1_000, &signature, now), Ok(()));
/// assert_eq!(
///     guard.check("console", now - 1_000, &signature, now + 10),
///     Err(ReplayError::Duplicate)
/// );
/// ```
pub struct ReplayGuard<K = String> {
    policy: ReplayPolicy,
    /// `Monotonic`: the last accepted timestamp of each source.
    latest: HashMap<K, u64>,
    /// `Window`: the signatures accepted from each source whose timestamp is still in the window.
    seen: HashMap<K, HashSet<Signature>>,
    /// `Window`: the same signatures ordered by timestamp, so they can be forgotten in order.
    expiry: BTreeMap<u64, Vec<(K, Signature)>>,
    /// `Window`: the oldest timestamp still accepted. It never moves back, even if the clock
    /// passed in does, so a forgotten signature can never be accepted again.
    floor: u64,
}

impl<K> ReplayGuard<K>
where
    K: Hash + Eq + Clone,
{
    /// Creates an empty guard.
    #[must_use]
    pub fn new(policy: ReplayPolicy) -> Self {
        Self {
            policy,
            latest: HashMap::new(),
            seen: HashMap::new(),
            expiry: BTreeMap::new(),
            floor: 0,
        }
    }

    /// The policy this guard follows.
    #[must_use]
    pub fn policy(&self) -> ReplayPolicy {
        self.policy
    }

    /// Checks an authenticated event and, if it is accepted, remembers it.
    ///
    /// `event_timestamp_ms` is the envelope's `eventTimestamp` and `now_ms` the receiver's clock,
    /// both in Unix epoch milliseconds; `signature` is the verified signature of the body.
    /// With [`ReplayPolicy::Window`], digests that have left the window are forgotten first.
    ///
    /// # Errors
    ///
    /// A [`ReplayError`] saying why the event is rejected; a rejected event is not remembered.
    pub fn check<Q>(
        &mut self,
        source: &Q,
        event_timestamp_ms: u64,
        signature: &Signature,
        now_ms: u64,
    ) -> Result<(), ReplayError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.policy {
            ReplayPolicy::Monotonic => self.check_monotonic(source, event_timestamp_ms),
            ReplayPolicy::Window { tolerance } => {
                let tolerance_ms = u64::try_from(tolerance.as_millis()).unwrap_or(u64::MAX);
                self.check_window(source, event_timestamp_ms, signature, now_ms, tolerance_ms)
            }
        }
    }

    /// How many entries the guard remembers: sources for [`ReplayPolicy::Monotonic`], signatures
    /// in the window for [`ReplayPolicy::Window`].
    #[must_use]
    pub fn len(&self) -> usize {
        self.latest.len() + self.seen.values().map(HashSet::len).sum::<usize>()
    }

    /// Whether the guard remembers nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty() && self.seen.is_empty()
    }

    fn check_monotonic<Q>(&mut self, source: &Q, timestamp: u64) -> Result<(), ReplayError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.latest.get_mut(source) {
            Some(latest) if timestamp <= *latest => Err(ReplayError::NotNewer),
            Some(latest) => {
                *latest = timestamp;
                Ok(())
            }
            None => {
                self.latest.insert(source.to_owned(), timestamp);
                Ok(())
            }
        }
    }

    fn check_window<Q>(
        &mut self,
        source: &Q,
        timestamp: u64,
        signature: &Signature,
        now: u64,
        tolerance: u64,
    ) -> Result<(), ReplayError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.floor = self.floor.max(now.saturating_sub(tolerance));
        self.forget_expired();
        if timestamp < self.floor {
            return Err(ReplayError::TooOld);
        }
        if timestamp > now.saturating_add(tolerance) {
            return Err(ReplayError::TooNew);
        }
        if let Some(seen) = self.seen.get_mut(source) {
            if !seen.insert(*signature) {
                return Err(ReplayError::Duplicate);
            }
        } else {
            self.seen
                .insert(source.to_owned(), HashSet::from([*signature]));
        }
        self.expiry
            .entry(timestamp)
            .or_default()
            .push((source.to_owned(), *signature));
        Ok(())
    }

    /// Forgets the signatures whose timestamp is below the floor: they can never be accepted
    /// again, since their timestamp is rejected as too old.
    fn forget_expired(&mut self) {
        let live = self.expiry.split_off(&self.floor);
        let expired = std::mem::replace(&mut self.expiry, live);
        for (source, signature) in expired.into_values().flatten() {
            if let Entry::Occupied(mut seen) = self.seen.entry(source) {
                seen.get_mut().remove(&signature);
                if seen.get().is_empty() {
                    seen.remove();
                }
            }
        }
    }
}

impl<K> fmt::Debug for ReplayGuard<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("policy", &self.policy)
            .field("sources", &(self.latest.len() + self.seen.len()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign;

    const NOW: u64 = 1_764_374_400_000;
    const TOLERANCE: Duration = Duration::from_secs(300);
    const TOLERANCE_MS: u64 = 300_000;

    fn window() -> ReplayGuard {
        ReplayGuard::new(ReplayPolicy::Window {
            tolerance: TOLERANCE,
        })
    }

    /// A distinct, valid signature per (timestamp, body) pair, as a sender would produce.
    fn event(timestamp: u64, body: &str) -> (u64, Signature) {
        let payload = format!(r#"{{"eventTimestamp":{timestamp},"payload":{body}}}"#);
        (timestamp, sign(payload.as_bytes(), b"secret"))
    }

    /// One call to `check`: source, event (timestamp and signature), now, expected outcome.
    type Step<'a> = (&'a str, (u64, Signature), u64, Result<(), ReplayError>);

    /// Feeds the steps to `guard` in order and compares every outcome.
    #[track_caller]
    fn check(guard: &mut ReplayGuard, steps: &[Step<'_>]) {
        for (i, (source, (timestamp, signature), now, expected)) in steps.iter().enumerate() {
            let outcome = guard.check(*source, *timestamp, signature, *now);
            assert_eq!(
                outcome, *expected,
                "step {i}: {source} at {timestamp}, now {now}"
            );
        }
    }

    #[test]
    fn monotonic_accepts_only_strictly_newer_events_per_source() {
        let mut guard = ReplayGuard::new(ReplayPolicy::Monotonic);
        let (first, second, third) = (event(NOW, "1"), event(NOW + 1, "2"), event(NOW + 2, "3"));
        check(
            &mut guard,
            &[
                ("a", first, NOW, Ok(())),
                ("a", second, NOW, Ok(())),
                // A retry of an accepted event has the same timestamp: rejected.
                ("a", second, NOW, Err(ReplayError::NotNewer)),
                // Out of order: the older event arrives late and is rejected.
                ("a", third, NOW, Ok(())),
                ("a", event(NOW + 1, "late"), NOW, Err(ReplayError::NotNewer)),
                // A different event with the same timestamp is rejected too.
                (
                    "a",
                    event(NOW + 2, "same ms"),
                    NOW,
                    Err(ReplayError::NotNewer),
                ),
                // Sources are independent.
                ("b", first, NOW, Ok(())),
            ],
        );
    }

    #[test]
    fn monotonic_ignores_the_clock_and_accepts_any_first_event() {
        let mut guard = ReplayGuard::new(ReplayPolicy::Monotonic);
        check(
            &mut guard,
            &[
                ("a", event(0, "ancient"), NOW, Ok(())),
                ("a", event(NOW * 2, "future"), NOW, Ok(())),
            ],
        );
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn window_accepts_retries_and_out_of_order_events() {
        let mut guard = window();
        let (older, newer) = (event(NOW - 10_000, "older"), event(NOW - 5_000, "newer"));
        check(
            &mut guard,
            &[
                ("a", newer, NOW, Ok(())),
                // Out of order: still inside the window, not seen before.
                ("a", older, NOW, Ok(())),
                // Two different events with the same timestamp.
                ("a", event(NOW - 5_000, "sibling"), NOW, Ok(())),
                // The same event from another source.
                ("b", older, NOW, Ok(())),
            ],
        );
    }

    #[test]
    fn window_rejects_duplicates_while_they_are_in_the_window() {
        let mut guard = window();
        let delivery = event(NOW, "x");
        check(
            &mut guard,
            &[
                ("a", delivery, NOW, Ok(())),
                ("a", delivery, NOW + 1_000, Err(ReplayError::Duplicate)),
                (
                    "a",
                    delivery,
                    NOW + TOLERANCE_MS,
                    Err(ReplayError::Duplicate),
                ),
                // Once out of the window, it is too old rather than a duplicate.
                (
                    "a",
                    delivery,
                    NOW + TOLERANCE_MS + 1,
                    Err(ReplayError::TooOld),
                ),
            ],
        );
    }

    #[test]
    fn window_rejects_events_outside_now_plus_or_minus_tolerance() {
        let mut guard = window();
        check(
            &mut guard,
            &[
                (
                    "a",
                    event(NOW - TOLERANCE_MS - 1, "old"),
                    NOW,
                    Err(ReplayError::TooOld),
                ),
                ("a", event(NOW - TOLERANCE_MS, "edge old"), NOW, Ok(())),
                ("a", event(NOW + TOLERANCE_MS, "edge new"), NOW, Ok(())),
                (
                    "a",
                    event(NOW + TOLERANCE_MS + 1, "new"),
                    NOW,
                    Err(ReplayError::TooNew),
                ),
            ],
        );
        assert_eq!(guard.len(), 2, "rejected events are not remembered");
    }

    #[test]
    fn window_floor_never_moves_back_with_the_clock() {
        let mut guard = window();
        let delivery = event(NOW, "x");
        check(
            &mut guard,
            &[
                ("a", delivery, NOW, Ok(())),
                // The clock jumps forward: the digest is forgotten.
                (
                    "a",
                    event(NOW + 2 * TOLERANCE_MS, "y"),
                    NOW + 2 * TOLERANCE_MS,
                    Ok(()),
                ),
                // The clock jumps back: the forgotten event must not be accepted again.
                ("a", delivery, NOW, Err(ReplayError::TooOld)),
            ],
        );
    }

    #[test]
    fn window_memory_is_bounded_by_the_events_in_the_window() {
        let mut guard = window();
        let step = 1_000;
        let per_window = usize::try_from(TOLERANCE_MS / step).expect("small number");
        for i in 0..10 * per_window as u64 {
            let now = NOW + i * step;
            // A new source each time, so emptied sources must be dropped too.
            let source = format!("source-{i}");
            let (timestamp, signature) = event(now, &i.to_string());
            assert_eq!(guard.check(&source, timestamp, &signature, now), Ok(()));
            assert!(
                guard.len() <= per_window + 1,
                "{} entries at step {i}",
                guard.len()
            );
        }
        assert_eq!(guard.len(), per_window + 1);
        assert_eq!(guard.seen.len(), per_window + 1);
        assert_eq!(guard.expiry.len(), per_window + 1);
        // Far in the future, everything is forgotten.
        let later = NOW + 100 * TOLERANCE_MS;
        let (timestamp, signature) = event(later, "last");
        assert_eq!(guard.check("z", timestamp, &signature, later), Ok(()));
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn huge_tolerance_does_not_overflow() {
        let mut guard: ReplayGuard = ReplayGuard::new(ReplayPolicy::Window {
            tolerance: Duration::MAX,
        });
        let (timestamp, signature) = event(u64::MAX, "max");
        assert_eq!(guard.check("a", timestamp, &signature, 0), Ok(()));
        assert_eq!(
            guard.check("a", 0, &signature, u64::MAX),
            Err(ReplayError::Duplicate)
        );
    }

    #[test]
    fn debug_and_errors_are_terse() {
        let guard = window();
        assert_eq!(
            format!("{guard:?}"),
            "ReplayGuard { policy: Window { tolerance: 300s }, sources: 0, .. }"
        );
        assert_eq!(ReplayError::Duplicate.to_string(), "event already accepted");
        assert!(guard.is_empty());
        assert_eq!(
            guard.policy(),
            ReplayPolicy::Window {
                tolerance: TOLERANCE
            }
        );
    }
}
