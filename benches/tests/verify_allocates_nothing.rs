//! Checks that verifying a signature allocates nothing on the heap, with a counting global
//! allocator. It lives in the benches package because implementing `GlobalAlloc` needs `unsafe`,
//! which the library crates forbid.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mia_webhooks_signature::{Signature, Verifier, sign, verify, verify_signature};

thread_local! {
    /// Allocations made by the current thread. Counting per thread keeps the test harness's own
    /// threads out of the count.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per thread.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only a const-initialized thread-local `Cell`, which never allocates or re-enters.
#[allow(unsafe_code)] // A global allocator cannot be written without `unsafe impl`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` and `layout` come from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` come from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn count() {
    // `try_with` fails only while the thread is being torn down; such allocations are not ours.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_allocations() {
    assert_eq!(
        allocations(|| drop(std::hint::black_box(vec![1_u8; 16]))),
        1
    );
}

#[test]
fn verifying_allocates_nothing() {
    let payload = vec![b'x'; 64 * 1024];
    let secret = b"s3cr3t".to_vec();
    let good = sign(&payload, &secret).to_string();
    let headers = [
        good.clone(),
        good.to_uppercase(),
        format!("  sha256={good}\r\n"),
        "0".repeat(64),
        good[..63].to_owned(),
        "é".repeat(32),
        String::new(),
    ];
    let verifier = Verifier::new([b"old".to_vec(), secret.clone()]);
    let parsed: Signature = good.parse().expect("a good signature parses");

    for header in &headers {
        let n = allocations(|| {
            let _ = std::hint::black_box(verify(&payload, &secret, header));
            let _ = std::hint::black_box(verifier.verify(&payload, header));
            let _ = std::hint::black_box(header.parse::<Signature>());
        });
        assert_eq!(n, 0, "verifying {header:?} allocated");
    }
    let n = allocations(|| {
        let _ = std::hint::black_box(sign(&payload, &secret));
        let _ = std::hint::black_box(verify_signature(&payload, &secret, &parsed));
        let _ = std::hint::black_box(verifier.verify_signature(&payload, &parsed));
        let _ = std::hint::black_box(parsed.encode_hex());
    });
    assert_eq!(n, 0, "signing or verifying a parsed signature allocated");
}
