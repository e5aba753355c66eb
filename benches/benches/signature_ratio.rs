//! The done-criterion of issue 2, measured so that a busy machine disturbs it little: verifying a
//! 1 KiB payload costs at most 1.15 times a plain SHA-256 of the same bytes (payload plus secret).
//!
//! `cargo bench -p mia-webhooks-benches --bench signature_ratio`
//!
//! Criterion measures one benchmark after the other, so load from other processes that comes and
//! goes lands on one side of a comparison. Here both sides run in alternating short rounds and
//! the ratio of their medians is reported; the program fails if it exceeds the budget.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use mia_webhooks_signature::{sign, verify};
use sha2::{Digest, Sha256};

const SECRET: &[u8] = b"whsec_0123456789abcdef0123456789";
const PAYLOAD_LEN: usize = 1024;
const ROUNDS: usize = 101;
const CALLS_PER_ROUND: u32 = 10_000;
const BUDGET: f64 = 1.15;

/// Nanoseconds per call of `f`, averaged over one round.
fn round(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS_PER_ROUND)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() -> ExitCode {
    let payload: Vec<u8> = b"{\"eventName\":\"project_created\",\"payload\":{}}"
        .iter()
        .copied()
        .cycle()
        .take(PAYLOAD_LEN)
        .collect();
    let header = sign(&payload, SECRET).to_string();
    let concatenated = [payload.as_slice(), SECRET].concat();

    let (mut hash, mut verified) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        hash.push(round(|| {
            black_box(Sha256::digest(black_box(concatenated.as_slice())));
        }));
        verified.push(round(|| {
            let _ = black_box(verify(
                black_box(&payload),
                black_box(SECRET),
                black_box(&header),
            ));
        }));
    }
    let (hash, verified) = (median(hash), median(verified));
    let ratio = verified / hash;
    println!("1 KiB payload, medians of {ROUNDS} interleaved rounds of {CALLS_PER_ROUND} calls:");
    println!("  SHA-256 of payload+secret  {hash:8.1} ns");
    println!("  verify                     {verified:8.1} ns");
    println!("  verify / SHA-256           {ratio:8.3} (budget {BUDGET})");
    if ratio <= BUDGET {
        ExitCode::SUCCESS
    } else {
        println!("over budget");
        ExitCode::FAILURE
    }
}
