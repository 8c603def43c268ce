//! The pieces of a speed measurement that every harness shares (`densa bench`, the criterion
//! benches): synthetic inputs of an exact length, and timings summarised as median, min, max.
//! Speed is measured here and in benchmarks, never asserted in tests.

use crate::tokenizer::Tokenized;
use std::time::Instant;

/// `batch` sequences of exactly `seq` tokens: `cls`, `seq − 2` ordinary ids drawn from a fixed
/// LCG over `100..vocab`, then `sep`, one token type. The same inputs on every run.
pub fn synthetic_inputs(
    batch: usize,
    seq: usize,
    vocab: u32,
    cls: u32,
    sep: u32,
) -> Vec<Tokenized> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let span = u64::from(vocab.saturating_sub(100)).max(1);
    (0..batch)
        .map(|_| {
            let mut ids = vec![cls];
            ids.extend((0..seq.saturating_sub(2)).map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (100 + (state >> 33) % span) as u32
            }));
            ids.push(sep);
            Tokenized {
                type_ids: vec![0; ids.len()],
                tokens: Vec::new(),
                ids,
                truncated: false,
            }
        })
        .collect()
}

/// Milliseconds per run over `iters` timed runs after `warmup` untimed ones.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// Runs `f` `warmup` times, then times it `iters` (≥ 1) times; stops at the first error.
pub fn time_runs<E>(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Timings, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(summarize(times))
}

/// Median, min and max of run times in ms (at least one).
pub fn summarize(mut times: Vec<f64>) -> Timings {
    assert!(!times.is_empty(), "no runs to summarize");
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median_ms = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    Timings {
        median_ms,
        min_ms: times[0],
        max_ms: times[n - 1],
    }
}

/// The process's resident memory now (VmRSS), in MiB, where the OS reports it.
pub fn resident_megabytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The peak resident memory of this process so far, in MiB (`VmHWM`; Linux only).
pub fn peak_resident_megabytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_inputs_have_the_exact_shape() {
        let inputs = synthetic_inputs(3, 16, 31002, 4, 5);
        assert_eq!(inputs.len(), 3);
        for t in &inputs {
            assert_eq!((t.ids.len(), t.type_ids.len()), (16, 16));
            assert_eq!((t.ids[0], t.ids[15]), (4, 5));
            assert!(t.ids[1..15].iter().all(|&id| (100..31002).contains(&id)));
        }
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        let t = summarize(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((t.median_ms, t.min_ms, t.max_ms), (2.5, 1.0, 10.0));
        let t = summarize(vec![7.0, 1.0, 2.0]);
        assert_eq!((t.median_ms, t.min_ms, t.max_ms), (2.0, 1.0, 7.0));
    }
}
