//! When a failed attempt is tried again, when a delivery gives up, and when a webhook is
//! disabled.
//!
//! Randomness (the jitter) is passed in, so tests control it.

use std::time::{Duration, SystemTime};

use mia_webhooks_model::{FailureKind, Timestamp};
use mia_webhooks_store::NextState;
use rand::Rng;

use crate::{AttemptReport, DeliveryError, config::invalid};

/// The SPEC §5 schedule: the wait after the first, second, ... failed attempt.
pub const DEFAULT_SCHEDULE: [Duration; 10] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(24 * 3600),
];

/// The retry schedule with its jitter.
///
/// After failed attempt `n` (1 for the first), the next attempt waits `schedule[n - 1]`, moved
/// by a random fraction of up to `±jitter`, so that deliveries that failed together do not all
/// come back together. When `schedule` is exhausted the delivery fails. A `Retry-After` from the
/// receiver (on 429 and 503 only) is honoured within `[scheduled, 2 × scheduled]`: a receiver can
/// slow retries down, but neither speed them up nor stall them indefinitely.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The waits after each failed attempt; its length is the number of retries.
    pub schedule: Vec<Duration>,
    /// The largest relative change jitter makes, in `[0, 1)`. Default 0.2 (±20%).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: DEFAULT_SCHEDULE.to_vec(),
            jitter: 0.2,
        }
    }
}

/// What happens to a delivery after an attempt, and to its webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The delivery's next state.
    pub next: NextState,
    /// Disable the webhook at once, with this reason (410 Gone).
    pub disable_webhook: Option<String>,
}

impl RetryPolicy {
    /// A policy without jitter (for tests and for reasoning).
    pub fn fixed(schedule: Vec<Duration>) -> Self {
        RetryPolicy {
            schedule,
            jitter: 0.0,
        }
    }

    /// The most attempts a delivery gets: the first and one per entry of the schedule.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).map_or(u32::MAX, |n| n.saturating_add(1))
    }

    /// The longest wait [`RetryPolicy::next`] can return.
    pub fn max_delay(&self) -> Duration {
        let longest = self.schedule.iter().max().copied().unwrap_or_default();
        longest.mul_f64(1.0 + self.jitter).saturating_mul(2)
    }

    /// The wait before the attempt after failed attempt `attempt` (1 for the first), or `None`
    /// when it was the last. `retry_after` is the receiver's wish, already limited to 429 and 503
    /// by the caller; it is clamped to `[scheduled, 2 × scheduled]`.
    pub fn next<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        let index = usize::try_from(attempt.max(1) - 1).ok()?;
        let base = *self.schedule.get(index)?;
        let scheduled = if self.jitter > 0.0 {
            base.mul_f64(1.0 + rng.random_range(-self.jitter..=self.jitter))
        } else {
            base
        };
        Some(match retry_after {
            Some(wish) => wish.clamp(scheduled, scheduled.saturating_mul(2)),
            None => scheduled,
        })
    }

    /// Decides what follows an attempt: success, a retry at a time, or failure; and whether its
    /// webhook is disabled at once (the receiver answered 410 Gone).
    pub fn decide<R: Rng + ?Sized>(
        &self,
        report: &AttemptReport,
        now: Timestamp,
        rng: &mut R,
    ) -> Decision {
        let attempt = &report.attempt;
        if attempt.succeeded() {
            return Decision {
                next: NextState::Succeeded,
                disable_webhook: None,
            };
        }
        if attempt.failure == Some(FailureKind::HttpStatus) && attempt.status_code == Some(410) {
            return Decision {
                next: NextState::Failed,
                disable_webhook: Some(
                    "the receiver answered 410 Gone, which says the endpoint no longer exists; \
                     edit the webhook to enable it again"
                        .to_owned(),
                ),
            };
        }
        let retry_after = match attempt.status_code {
            Some(429 | 503) => report.retry_after,
            _ => None,
        };
        let next = match self.next(attempt.number, retry_after, rng) {
            Some(wait) => NextState::RetryAt(now.saturating_add(wait)),
            None => NextState::Failed,
        };
        Decision {
            next,
            disable_webhook: None,
        }
    }

    /// Checks the policy; errors name the setting.
    pub fn validate(&self) -> Result<(), DeliveryError> {
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(invalid(
                "retry.jitter",
                format!("is {} but must be in [0, 1)", self.jitter),
            ));
        }
        if self.schedule.iter().any(Duration::is_zero) {
            return Err(invalid(
                "retry.schedule",
                "every wait must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// Parses a `Retry-After` header: a number of seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mia_webhooks_model::Attempt;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn report(
        number: u32,
        status: Option<u16>,
        failure: Option<FailureKind>,
        retry_after: Option<Duration>,
    ) -> AttemptReport {
        AttemptReport {
            attempt: Attempt {
                number,
                started_at: Timestamp::from_millis(0),
                duration_ms: 1,
                status_code: status,
                failure,
                error: failure.map(|f| f.to_string()),
                response_excerpt: None,
            },
            retry_after,
        }
    }

    fn check(policy: &RetryPolicy, report: AttemptReport, expected: NextState, disables: bool) {
        let now = Timestamp::from_millis(1_000_000);
        let decision = policy.decide(&report, now, &mut StdRng::seed_from_u64(7));
        assert_eq!(decision.next, expected, "{report:?}");
        assert_eq!(decision.disable_webhook.is_some(), disables, "{report:?}");
    }

    #[test]
    fn decisions() {
        let policy = RetryPolicy::fixed(vec![secs(5), secs(30)]);
        let at =
            |s: u64| NextState::RetryAt(Timestamp::from_millis(1_000_000).saturating_add(secs(s)));
        let status = Some(FailureKind::HttpStatus);
        check(
            &policy,
            report(1, Some(200), None, None),
            NextState::Succeeded,
            false,
        );
        check(&policy, report(1, Some(500), status, None), at(5), false);
        check(&policy, report(2, Some(500), status, None), at(30), false);
        check(
            &policy,
            report(3, Some(500), status, None),
            NextState::Failed,
            false,
        );
        check(
            &policy,
            report(1, None, Some(FailureKind::Timeout), None),
            at(5),
            false,
        );
        check(
            &policy,
            report(1, Some(410), status, None),
            NextState::Failed,
            true,
        );
        // Retry-After counts on 429 and 503 only, clamped to [scheduled, 2 x scheduled].
        check(
            &policy,
            report(1, Some(429), status, Some(secs(8))),
            at(8),
            false,
        );
        check(
            &policy,
            report(1, Some(503), status, Some(secs(3600))),
            at(10),
            false,
        );
        check(
            &policy,
            report(1, Some(429), status, Some(secs(1))),
            at(5),
            false,
        );
        check(
            &policy,
            report(1, Some(500), status, Some(secs(8))),
            at(5),
            false,
        );
        check(
            &policy,
            report(1, Some(302), Some(FailureKind::Redirect), None),
            at(5),
            false,
        );
    }

    #[test]
    fn the_default_schedule_is_the_spec_schedule() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 11);
        assert_eq!(policy.jitter, 0.2);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let wait = policy.next(1, None, &mut rng).unwrap();
            assert!((secs(4)..=secs(6)).contains(&wait), "{wait:?}");
        }
        assert_eq!(policy.next(11, None, &mut rng), None);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + secs(1_000_000_000);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(secs(7)));
        let later = httpdate::fmt_http_date(now + secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(secs(90)));
        let earlier = httpdate::fmt_http_date(now - secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn invalid_policies_name_the_setting() {
        let err = RetryPolicy {
            jitter: 1.5,
            ..RetryPolicy::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("retry.jitter"), "{err}");
        let err = RetryPolicy::fixed(vec![Duration::ZERO])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("retry.schedule"), "{err}");
    }

    proptest! {
        #[test]
        fn backoff_never_shrinks_without_jitter(attempt in 1u32..10) {
            let policy = RetryPolicy::fixed(DEFAULT_SCHEDULE.to_vec());
            let mut rng = StdRng::seed_from_u64(0);
            let this = policy.next(attempt, None, &mut rng).unwrap();
            let after = policy.next(attempt + 1, None, &mut rng).unwrap();
            prop_assert!(this <= after);
        }

        #[test]
        fn backoff_stays_under_its_cap(
            attempt in 0u32..20,
            retry_after in proptest::option::of(0u64..1_000_000),
            jitter in 0.0f64..0.9,
            seed in any::<u64>(),
        ) {
            let policy = RetryPolicy { schedule: DEFAULT_SCHEDULE.to_vec(), jitter };
            let mut rng = StdRng::seed_from_u64(seed);
            match policy.next(attempt, retry_after.map(Duration::from_secs), &mut rng) {
                Some(wait) => {
                    prop_assert!(wait <= policy.max_delay());
                    prop_assert!(wait > Duration::ZERO);
                }
                None => prop_assert!(attempt >= policy.max_attempts()),
            }
        }

        #[test]
        fn jitter_stays_within_its_bound(attempt in 1u32..=10, seed in any::<u64>()) {
            let policy = RetryPolicy::default();
            let base = DEFAULT_SCHEDULE[attempt as usize - 1];
            let wait = policy.next(attempt, None, &mut StdRng::seed_from_u64(seed)).unwrap();
            prop_assert!(wait >= base.mul_f64(0.8) && wait <= base.mul_f64(1.2), "{:?}", wait);
        }
    }
}
