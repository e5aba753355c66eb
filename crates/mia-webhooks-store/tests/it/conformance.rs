//! The storage conformance suite: every behaviour of [`Store`], written once, run against every
//! backend.
//!
//! A backend takes part by providing a [`TestBackend`]: something that opens (and, for a durable
//! backend, reopens) a store on a database of its own, so tests run in parallel without seeing
//! each other's rows. Then one line in `main.rs` turns every test body here into a
//! `#[tokio::test]` of its own:
//!
//! ```ignore
//! conformance_tests!(memory, backends::memory);           // the common tests
//! conformance_tests!(sqlite, durable, backends::sqlite);  // plus reopening, crash, key tests
//! ```
//!
//! The second argument is an `async fn() -> Option<impl TestBackend>`. It returns `None` when the
//! backend cannot run here (PostgreSQL without `MIA_WEBHOOKS_TEST_POSTGRES_URL`): the test then
//! writes `<test>: NOT RUN, the backend is unavailable here` on the process's stderr (past the
//! harness's capture, so it shows in `cargo test` output) and returns. When the backend should
//! run but cannot (the URL is set, the server does not answer), the factory must panic: a loud
//! failure, not a skip.
//!
//! To add a test: write `pub async fn name<B: TestBackend>(backend: B)` in one of the modules
//! below and add `module::name` to the list in [`conformance_tests!`].

use std::future::Future;

use mia_webhooks_store::{Store, StoreOptions};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod durable;
pub mod ingest;
pub mod log;
pub mod queue;
pub mod webhooks;

/// A backend under test: opens stores on one database of its own.
pub trait TestBackend: Send + Sync + 'static {
    /// The store it opens.
    type Store: Store;

    /// Opens a store on this backend's database with `options`. For a durable backend, opening
    /// again (after dropping the previous store, or while it is still open) sees the same data.
    fn open(&self, options: StoreOptions) -> impl Future<Output = Self::Store> + Send;
}

/// A store with default options.
pub async fn open<B: TestBackend>(backend: &B) -> B::Store {
    backend.open(StoreOptions::default()).await
}

/// Instantiates the suite for one backend: `conformance_tests!(name, factory)` for a backend
/// whose data lives as long as the store, `conformance_tests!(name, durable, factory)` for one
/// whose data outlives it (SQLite, PostgreSQL).
macro_rules! conformance_tests {
    ($name:ident, $factory:path) => {
        mod $name {
            conformance_tests!(@common $factory);
        }
    };
    ($name:ident, durable, $factory:path) => {
        mod $name {
            conformance_tests!(@common $factory);
            conformance_tests!(@durable $factory);
        }
    };
    (@common $factory:path) => {
        conformance_tests!(@tests $factory;
            webhooks::create_then_get_returns_every_field,
            webhooks::creating_a_duplicate_id_conflicts,
            webhooks::unknown_webhooks_are_none_or_false,
            webhooks::update_replaces_only_given_fields_and_keeps_the_secret,
            webhooks::update_of_events_rewrites_the_fanout_index,
            webhooks::disabling_by_update_cancels_pending_deliveries,
            webhooks::a_retry_after_disabling_is_cancelled,
            webhooks::retries_in_a_batch_with_a_410_are_cancelled,
            webhooks::delete_cascades_to_deliveries_and_attempts,
            webhooks::list_webhooks_by_exact_scope_and_event_filter,
            webhooks::list_webhooks_pages_are_stable_under_inserts,
            webhooks::secrets_round_trip_under_a_key,
            ingest::ingest_matches_the_scope_matrix,
            ingest::ingest_matches_only_subscribed_names,
            ingest::disabled_webhooks_get_no_deliveries,
            ingest::ingest_batch_returns_receipts_in_order_and_keeps_exact_bytes,
            ingest::injected_failure_leaves_neither_event_nor_deliveries,
            ingest::duplicate_event_id_fails_the_whole_batch,
            ingest::ingest_for_webhook_queues_one_delivery_even_when_disabled,
            queue::claim_returns_what_an_attempt_needs,
            queue::claims_share_webhooks_and_payloads_within_a_batch,
            queue::claim_takes_only_due_deliveries_up_to_the_limit,
            queue::expired_lease_is_claimable_again_with_a_new_token,
            queue::stale_lease_record_is_refused_and_writes_nothing,
            queue::injected_record_failure_writes_nothing_and_keeps_every_lease,
            queue::record_writes_a_batch_of_results,
            queue::record_takes_any_text_a_receiver_sends,
            queue::record_refuses_lost_leases_one_by_one,
            queue::per_webhook_cap_counts_live_leases,
            queue::concurrent_claimers_never_hold_the_same_delivery,
            queue::release_makes_deliveries_due_at_once,
            queue::release_cancels_what_a_disabled_webhook_had_leased,
            queue::record_then_claim_records_first_and_claims_into_the_freed_slot,
            queue::ingest_then_claim_leases_the_new_deliveries_under_the_cap,
            log::list_deliveries_filters_by_status_newest_first,
            log::list_deliveries_pages_are_stable_under_inserts,
            log::get_delivery_has_attempts_oldest_first_and_the_payload,
            log::redeliver_queues_a_new_pending_delivery,
            log::failing_since_tracks_continuous_failure,
            log::record_can_disable_the_webhook,
            log::disable_webhook_sets_the_reason_and_cancels_pending,
            log::an_edit_that_may_fix_a_webhook_restarts_its_failure_clock,
            log::disabling_a_disabled_webhook_keeps_its_reason,
            log::purge_removes_old_finished_deliveries_and_orphan_events,
            log::tokens_are_found_by_hash_with_their_role,
            log::stats_count_deliveries_by_status,
            log::ping_answers,
        );
    };
    (@durable $factory:path) => {
        conformance_tests!(@tests $factory;
            durable::reopening_keeps_all_data,
            durable::a_dropped_store_loses_no_claimed_delivery,
            durable::secrets_open_after_key_rotation,
            durable::wrong_or_missing_key_is_a_secret_key_error,
            durable::an_unreadable_secret_holds_up_only_its_own_webhook,
            durable::plain_secrets_stay_readable_once_a_key_is_set,
            durable::a_failed_claim_keeps_the_results_of_its_round,
            durable::a_failed_claim_keeps_the_events_it_came_with,
        );
    };
    (@tests $factory:path; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(backend) = $factory().await else {
                    // Straight to the process's stderr, past the test harness's capture, so a
                    // test that did not run never reads as a silent pass.
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        concat!(module_path!(), "::", stringify!($test), ": NOT RUN, the backend is unavailable here")
                    );
                    return;
                };
                crate::conformance::$module::$test(backend).await;
            }
        )*
    };
}
