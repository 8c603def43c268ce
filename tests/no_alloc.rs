//! The forward pass allocates nothing in steady state: a counting global allocator watches
//! every thread while the same workspace runs batches it has already seen the size of.

mod common;

use densa::model::{PackedBatch, Workspace};
use densa::{Encoder, Input, Options, Precision};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// One test (the counter is process-wide), both precisions in turn.
#[test]
fn forward_pass_allocates_nothing_in_steady_state() {
    for precision in [Precision::F32, Precision::Int8] {
        check(precision);
    }
}

fn check(precision: Precision) {
    let options = Options {
        threads: 2,
        precision,
        ..Options::default()
    };
    let encoder = Encoder::from_dir(common::model_dir("dpr-ctx-tiny"), options).unwrap();
    let cases = common::cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let tokenized = encoder.tokenize(&inputs).unwrap();
    // Two batches of different sizes: the workspace grows to the larger once.
    let (mut big, mut small) = (PackedBatch::new(), PackedBatch::new());
    for (i, t) in tokenized.iter().enumerate() {
        big.push(i, &t.ids, &t.type_ids).unwrap();
    }
    for (i, t) in tokenized[..3].iter().enumerate() {
        small.push(i, &t.ids, &t.type_ids).unwrap();
    }
    let model = encoder.model();
    let mut workspace = Workspace::default();
    let (first, allocations) = encoder.install(|| {
        let (all, first_tokens) = (densa::Rows::All, densa::Rows::FirstOfEachSequence);
        let mut forward = |batch: &PackedBatch, rows| {
            model.forward(batch, &mut workspace, rows, None).unwrap();
        };
        let start = ALLOCATIONS.load(Ordering::SeqCst);
        forward(&big, first_tokens);
        let first = ALLOCATIONS.load(Ordering::SeqCst) - start;
        for _ in 0..3 {
            forward(&big, first_tokens);
            forward(&small, all);
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..20 {
            forward(&small, all);
            forward(&big, first_tokens);
        }
        (first, ALLOCATIONS.load(Ordering::SeqCst) - before)
    });
    assert!(
        first > 0,
        "the counter sees the first pass size its workspace"
    );
    assert_eq!(
        allocations, 0,
        "40 warm forward passes made {allocations} heap allocations"
    );
}
