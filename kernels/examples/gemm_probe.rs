//! Times linear_packed at one shape on the current thread pool:
//! `cargo run --release -p densa-kernels --example gemm_probe -- M K N [iters]`.
use densa_kernels as k;
use std::time::Instant;
fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (m, kk, n, iters) = (a[0], a[1], a[2], *a.get(3).unwrap_or(&20));
    let inp: Vec<f32> = (0..m * kk).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..n * kk).map(|i| (i % 5) as f32 * 0.1).collect();
    let packed = k::PackedWeight::new(&w, n, kk);
    let mut out = vec![0.0; m * n];
    let mut best = f64::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        k::linear_packed(&mut out, &inp, &packed, m, k::Epilogue::NONE);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{m}x{kk}x{n} {}: best {:.3} ms, {:.1} GFLOP/s",
        packed.isa().name(),
        best * 1e3,
        2.0 * (m * kk * n) as f64 / best / 1e9
    );
}
