//! Benchmarks and allocation tests of mia-webhooks; the code lives in `benches/` and `tests/`.
//!
//! Run the signature benchmarks with
//! `cargo bench -p mia-webhooks-benches --bench signature`; results are kept in the repository's
//! `BENCHMARKS.md`.
//!
//! The end-to-end load generator is the `load` binary (`src/bin/load/`):
//! `cargo run --release -p mia-webhooks-benches --bin load -- --events 20000 --webhooks 10`
//! (build `mia-webhooks` in release first, or pass `--in-process`).
