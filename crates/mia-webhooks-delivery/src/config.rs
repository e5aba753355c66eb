//! The settings of the sender and the worker loop, with the defaults of SPEC §5.

use std::time::Duration;

use ipnet::IpNet;

use crate::{DeliveryError, RetryPolicy};

/// How much longer than an attempt a lease must last at least, so that a lease never expires
/// while its attempt is still allowed to run (and its result is still being written).
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Everything the sender and the worker loop can be tuned with.
///
/// [`Default`] gives the SPEC defaults. [`DeliveryConfig::validate`] refuses combinations that
/// would break a guarantee; [`Dispatcher::new`](crate::Dispatcher::new) calls it.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long establishing a connection (TCP and TLS, or the proxy's) may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a whole attempt may take, connecting and reading the answer included. Default 15 s.
    pub attempt_timeout: Duration,
    /// The most bytes of a response body read; a larger body fails the attempt with
    /// `body_too_large`. Default 64 KiB.
    pub max_response_bytes: usize,
    /// How many bytes of the response body are kept in the attempt log. Default 4 KiB.
    pub excerpt_bytes: usize,
    /// Ranges the address guard lets through although they are loopback, private, etc.
    /// Default: none.
    pub allowed_cidrs: Vec<IpNet>,
    /// When failed attempts are retried.
    pub retry: RetryPolicy,
    /// A webhook whose attempts have all failed for this long is disabled. Default 3 days.
    pub disable_after: Duration,
    /// The most attempts in flight in one dispatcher. Default 256.
    pub max_in_flight: usize,
    /// The most attempts in flight for one webhook, across all workers. Default 8.
    pub per_webhook_cap: usize,
    /// The most deliveries claimed in one store call, and the most claimed deliveries waiting
    /// for a free slot (claimed ahead so that attempts keep starting while the store works).
    /// Default 64. Deliveries waiting count against the per-webhook cap like those in flight
    /// (a lease is a lease): a larger batch keeps fewer of the cap's slots sending where
    /// several processes share webhooks at their cap (see BENCHMARKS.md).
    pub claim_batch: usize,
    /// The most attempt results written in one store call. Default 512.
    pub record_batch: usize,
    /// How long a finished attempt may wait for others to share its write. Default 2 ms.
    pub record_delay: Duration,
    /// How long a claim lasts. Must exceed `attempt_timeout` by [`LEASE_MARGIN`]. Default 60 s.
    pub lease: Duration,
    /// The longest the loop sleeps when there is nothing to do (it wakes earlier when notified
    /// or when a retry it scheduled is due). Default 1 s.
    pub idle_poll: Duration,
    /// At a stop, how long attempts in flight may still run before they are aborted.
    /// Default 10 s.
    pub shutdown_grace: Duration,
    /// The most HTTP clients kept (one per distinct CA and proxy). Default 1024.
    pub max_clients: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            max_response_bytes: 64 * 1024,
            excerpt_bytes: 4 * 1024,
            allowed_cidrs: Vec::new(),
            retry: RetryPolicy::default(),
            disable_after: Duration::from_secs(3 * 24 * 3600),
            max_in_flight: 256,
            per_webhook_cap: 8,
            claim_batch: 64,
            record_batch: 512,
            record_delay: Duration::from_millis(2),
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            max_clients: 1024,
        }
    }
}

impl DeliveryConfig {
    /// Checks that the settings work together; the error names the setting to change.
    pub fn validate(&self) -> Result<(), DeliveryError> {
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("lease", self.lease),
            ("idle_poll", self.idle_poll),
        ];
        for (setting, value) in positive {
            if value.is_zero() {
                return Err(invalid(setting, "must be greater than zero"));
            }
        }
        let counts = [
            ("max_in_flight", self.max_in_flight),
            ("per_webhook_cap", self.per_webhook_cap),
            ("claim_batch", self.claim_batch),
            ("record_batch", self.record_batch),
            ("max_clients", self.max_clients),
        ];
        for (setting, value) in counts {
            if value == 0 {
                return Err(invalid(setting, "must be at least 1"));
            }
        }
        if self.excerpt_bytes > self.max_response_bytes {
            return Err(invalid(
                "excerpt_bytes",
                format!(
                    "is {} but max_response_bytes is {}; the excerpt cannot be longer than what is read",
                    self.excerpt_bytes, self.max_response_bytes
                ),
            ));
        }
        let minimum = self.attempt_timeout + LEASE_MARGIN;
        if self.lease < minimum {
            return Err(invalid(
                "lease",
                format!(
                    "is {:?} but must be at least attempt_timeout ({:?}) plus a margin of {:?}, \
                     so that no lease expires while its attempt may still run",
                    self.lease, self.attempt_timeout, LEASE_MARGIN
                ),
            ));
        }
        self.retry.validate()
    }
}

pub(crate) fn invalid(setting: &'static str, message: impl Into<String>) -> DeliveryError {
    DeliveryError::Config {
        setting,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: DeliveryConfig, expected: Result<(), &str>) {
        match (config.validate(), expected) {
            (Ok(()), Ok(())) => {}
            (Err(DeliveryError::Config { setting, .. }), Err(want)) => assert_eq!(setting, want),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_follow_the_spec() {
        let config = DeliveryConfig::default();
        check(config.clone(), Ok(()));
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.attempt_timeout, Duration::from_secs(15));
        assert_eq!(config.max_response_bytes, 65_536);
        assert_eq!(config.excerpt_bytes, 4_096);
        assert_eq!(config.per_webhook_cap, 8);
        assert_eq!(config.disable_after, Duration::from_secs(259_200));
        assert!(config.allowed_cidrs.is_empty());
    }

    #[test]
    fn a_lease_shorter_than_an_attempt_plus_margin_is_refused() {
        check(
            DeliveryConfig {
                lease: Duration::from_secs(15),
                ..DeliveryConfig::default()
            },
            Err("lease"),
        );
        check(
            DeliveryConfig {
                lease: Duration::from_secs(20),
                ..DeliveryConfig::default()
            },
            Ok(()),
        );
        let err = DeliveryConfig {
            lease: Duration::from_secs(16),
            ..DeliveryConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("`lease`"), "{err}");
    }

    #[test]
    fn zero_values_name_their_setting() {
        check(
            DeliveryConfig {
                max_in_flight: 0,
                ..DeliveryConfig::default()
            },
            Err("max_in_flight"),
        );
        check(
            DeliveryConfig {
                per_webhook_cap: 0,
                ..DeliveryConfig::default()
            },
            Err("per_webhook_cap"),
        );
        check(
            DeliveryConfig {
                attempt_timeout: Duration::ZERO,
                ..DeliveryConfig::default()
            },
            Err("attempt_timeout"),
        );
        check(
            DeliveryConfig {
                excerpt_bytes: 1 << 20,
                ..DeliveryConfig::default()
            },
            Err("excerpt_bytes"),
        );
    }
}
