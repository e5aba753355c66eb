//! Signing and verifying `X-Mia-Signature` beside a plain SHA-256 of the same bytes.
//!
//! `cargo bench -p mia-webhooks-benches --bench signature -- --warm-up-time 1 --measurement-time 3`
//!
//! The done-criterion of issue 2: verifying a 1 KiB payload costs at most 1.15 times a plain
//! SHA-256 of the same bytes (payload plus secret). Results go into `BENCHMARKS.md`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mia_webhooks_signature::{Signature, Verifier, sign, verify};
use sha2::{Digest, Sha256};

/// A typical webhook secret length.
const SECRET: &[u8] = b"whsec_0123456789abcdef0123456789";

const SIZES: [(&str, usize); 4] = [
    ("64B", 64),
    ("1KiB", 1024),
    ("16KiB", 16 * 1024),
    ("1MiB", 1024 * 1024),
];

fn payload(len: usize) -> Vec<u8> {
    // JSON-looking bytes; the content does not change SHA-256's cost.
    b"{\"eventName\":\"project_created\",\"payload\":{}}"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn signature(c: &mut Criterion) {
    for (label, len) in SIZES {
        let payload = payload(len);
        let header = sign(&payload, SECRET).to_string();
        let concatenated = [payload.as_slice(), SECRET].concat();
        let verifier = Verifier::new([b"whsec_previous_secret_0123456789".as_slice(), SECRET]);

        let mut group = c.benchmark_group(format!("signature_{label}"));
        group.throughput(Throughput::Bytes(
            u64::try_from(concatenated.len()).unwrap_or(u64::MAX),
        ));
        group.bench_function("sha256", |b| {
            b.iter(|| Sha256::digest(black_box(concatenated.as_slice())));
        });
        group.bench_function("sign", |b| {
            b.iter(|| sign(black_box(&payload), black_box(SECRET)));
        });
        group.bench_function("verify", |b| {
            b.iter(|| verify(black_box(&payload), black_box(SECRET), black_box(&header)));
        });
        group.bench_function("verifier_2_secrets", |b| {
            b.iter(|| verifier.verify(black_box(&payload), black_box(&header)));
        });
        group.finish();
    }
}

/// Parsing a header value alone: trimming, the optional prefix and 64 hex digits.
fn header(c: &mut Criterion) {
    let header = format!(" sha256={}\r\n", sign(b"payload", SECRET));
    c.bench_function("header_parse", |b| {
        b.iter(|| black_box(header.as_str()).parse::<Signature>());
    });
}

criterion_group!(benches, signature, header);
criterion_main!(benches);
