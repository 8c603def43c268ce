//! GEMM throughput against the machine's measured FMA peak, at BERT's linear-layer shapes:
//! our packed f32 GEMM and our int8 GEMM on the current rayon pool, the peak measured with
//! every thread of the pool busy at once, in interleaved rounds (so that drift on a shared
//! machine shows):
//! `cargo run --release -p densa-kernels --example gemm_probe -- [rounds] [M K N]...`
//! (default: M = 16, 128, 1024 against 768→768, 768→3072 and 3072→768).
use densa_kernels as k;
use std::time::Instant;

/// Best-of timings over about `millis` ms.
fn best_of(millis: u128, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::MAX;
    while start.elapsed().as_millis() < millis || best == f64::MAX {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("numbers: rounds then M K N triples"))
        .collect();
    let rounds = args.first().copied().unwrap_or(1);
    let shapes: Vec<(usize, usize, usize)> = if args.len() > 1 {
        args[1..]
            .chunks_exact(3)
            .map(|c| (c[0], c[1], c[2]))
            .collect()
    } else {
        let mut s = vec![];
        for m in [16, 128, 1024] {
            for (kk, n) in [(768, 768), (768, 3072), (3072, 768)] {
                s.push((m, kk, n));
            }
        }
        s
    };
    let threads = rayon::current_num_threads();
    // The memory limit of shapes whose weights stream from memory (M = 16 in the model).
    let stream = k::probe::read_bandwidth_gbs(1 << 30, 1000);
    println!(
        "{{\"read_bandwidth_gbs\": {stream:.1}, \"threads\": {threads}, \"buffer_mb\": 1024}}"
    );
    for round in 1..=rounds {
        for &(m, kk, n) in &shapes {
            let inp: Vec<f32> = (0..m * kk)
                .map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6)
                .collect();
            let w: Vec<f32> = (0..n * kk)
                .map(|i| ((i * 104729) % 11) as f32 * 0.1 - 0.5)
                .collect();
            let packed = k::PackedWeight::new(&w, n, kk);
            let quantized = k::QuantizedWeight::new(&w, n, kk);
            let mut out = vec![0.0; m * n];
            let mut scratch = k::Int8Scratch::default();
            let ops = 2.0 * (m * kk * n) as f64;
            let (peak, isa) = k::probe::fma_peak_gflops_all_threads(200);
            let f32_time = best_of(300, || {
                k::linear_packed(&mut out, &inp, &packed, m, k::Epilogue::NONE)
            });
            let int8_time = best_of(300, || {
                k::linear_int8(
                    &mut out,
                    &inp,
                    &quantized,
                    m,
                    k::Epilogue::NONE,
                    &mut scratch,
                )
            });
            println!(
                "{{\"round\": {round}, \"shape\": \"{m}x{kk}x{n}\", \"isa\": \"{}\", \"int8_isa\": \"{}\", \"threads\": {threads}, \"peak_gflops\": {peak:.1}, \"f32_gflops\": {:.1}, \"f32_fraction_of_peak\": {:.3}, \"int8_gops\": {:.1}, \"int8_speedup\": {:.2}}}",
                isa.name(),
                quantized.isa().name(),
                ops / f32_time / 1e9,
                ops / f32_time / 1e9 / peak,
                ops / int8_time / 1e9,
                f32_time / int8_time,
            );
        }
    }
}
