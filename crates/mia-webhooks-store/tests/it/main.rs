//! Integration tests of mia-webhooks-store: one binary, one conformance suite run against every
//! backend, and the tests that only make sense for one backend.
//!
//! PostgreSQL: the module `pg` (written with the PostgreSQL backend, feature `postgres`) provides
//! `pg::backend()`, an `async fn() -> Option<impl conformance::TestBackend>` whose stores live in
//! a schema of their own per test. Without `MIA_WEBHOOKS_TEST_POSTGRES_URL` it returns `None`
//! and each test writes `<test>: NOT RUN, ...` straight to the process's stderr (past the
//! harness's capture, so `cargo test` shows it and `.ci/run` fails on it); with the URL set and
//! the server unreachable it panics. The conformance tests print as `postgres::<test>`.

#![allow(
    unreachable_pub,
    reason = "a test binary exports nothing; `pub` marks what its modules share"
)]

#[macro_use]
mod conformance;
mod backends;
#[cfg(feature = "sqlite")]
mod sqlite_file;
mod support;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod upgrade;

#[cfg(feature = "postgres")]
mod pg;

conformance_tests!(memory, crate::backends::memory);

#[cfg(feature = "sqlite")]
conformance_tests!(sqlite, durable, crate::backends::sqlite);

#[cfg(feature = "postgres")]
conformance_tests!(postgres, durable, crate::pg::backend);
