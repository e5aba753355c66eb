//! Points in time as Unix epoch milliseconds, the unit of `eventTimestamp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch (UTC).
///
/// Milliseconds are the unit the Console uses on the wire (`eventTimestamp`) and they store as a
/// plain integer in every database. Code that needs "now" takes it as an argument so that tests
/// control the clock; [`Timestamp::now`] is for the edges of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The time from the system clock.
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(millis)
    }

    /// A timestamp from epoch milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Epoch milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This time plus `duration`, saturating at the far future.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// This time minus `duration`, saturating at the far past.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(millis))
    }

    /// How long after `earlier` this is; zero when it is not after.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        u64::try_from(self.0.saturating_sub(earlier.0))
            .map_or(Duration::ZERO, Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(1)).as_millis(),
            i64::MAX
        );
        let t = Timestamp::from_millis(i64::MIN + 1);
        assert_eq!(
            t.saturating_sub(Duration::from_secs(1)).as_millis(),
            i64::MIN
        );
    }

    #[test]
    fn duration_since_is_never_negative() {
        let a = Timestamp::from_millis(1_000);
        let b = Timestamp::from_millis(3_500);
        assert_eq!(b.duration_since(a), Duration::from_millis(2_500));
        assert_eq!(a.duration_since(b), Duration::ZERO);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(Timestamp::now() > Timestamp::from_millis(1_577_836_800_000));
    }
}
