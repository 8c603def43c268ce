//! Memory soak: one encoder, many calls of mixed lengths from several threads, resident memory
//! printed as it goes. Resident memory must level off after the first calls (workspaces grow
//! to the largest batch, then are reused) and stay flat.
//!
//!     cargo run --release --example soak -- MODEL_DIR [CALLS] [CALLER_THREADS] [f32|int8]
//!
//! Prints one JSON line per report: calls done, seconds, VmRSS and VmHWM in MiB.

use densa::{Encoder, Options, Precision};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// `VmRSS` and `VmHWM` (peak) of this process in MiB (Linux).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A deterministic text of `words` words (some non-ASCII, some emoji).
fn text(seed: usize, words: usize) -> String {
    const WORDS: [&str; 10] = [
        "biblioteca",
        "año",
        "río",
        "paella",
        "Cervantes",
        "😀",
        "東京",
        "pingüino",
        "de",
        "la",
    ];
    (0..words)
        .map(|w| WORDS[(seed * 31 + w * 7) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .expect("usage: soak MODEL_DIR [CALLS] [CALLERS] [f32|int8]");
    let calls: usize = args.get(2).map_or(100_000, |v| v.parse().expect("CALLS"));
    let callers: usize = args.get(3).map_or(4, |v| v.parse().expect("CALLERS"));
    let precision = match args.get(4).map(String::as_str) {
        Some("int8") => Precision::Int8,
        _ => Precision::F32,
    };
    let options = Options {
        threads: 2,
        precision,
        ..Options::default()
    };
    let encoder = Arc::new(Encoder::from_dir(model, options).expect("model loads"));
    let (rss, hwm) = memory_mib();
    println!("{{\"calls\": 0, \"seconds\": 0.0, \"rss_mib\": {rss:.1}, \"peak_mib\": {hwm:.1}, \"precision\": \"{}\", \"callers\": {callers}}}", precision.name());
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let report_every = (calls / 20).max(1);
    std::thread::scope(|scope| {
        for caller in 0..callers {
            let (encoder, done) = (encoder.clone(), done.clone());
            scope.spawn(move || loop {
                let call = done.fetch_add(1, Ordering::Relaxed);
                if call >= calls {
                    break;
                }
                // Mostly questions (1 text, 3 to 40 words); every 1000th call a batch of 8 passages.
                let batch: Vec<String> = if call % 1000 == 0 {
                    (0..8).map(|i| text(call + i, 60 + i * 40)).collect()
                } else {
                    vec![text(call, 3 + call % 38)]
                };
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                let e = encoder.embed(&refs).expect("embed");
                assert!(e.data.iter().all(|v| v.is_finite()));
                if (call + 1) % report_every == 0 {
                    let (rss, hwm) = memory_mib();
                    println!(
                        "{{\"calls\": {}, \"seconds\": {:.1}, \"rss_mib\": {rss:.1}, \"peak_mib\": {hwm:.1}, \"caller\": {caller}}}",
                        call + 1,
                        start.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
}
