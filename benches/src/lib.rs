//! Benchmarks and allocation tests of mia-webhooks; the code lives in `benches/` and `tests/`.
//!
//! Run the signature benchmarks with
//! `cargo bench -p mia-webhooks-benches --bench signature`; results are kept in the repository's
//! `BENCHMARKS.md`.
