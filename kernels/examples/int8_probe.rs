//! Best-of timings of the int8 linear layer against the f32 one at one shape:
//! `cargo run --release -p densa-kernels --example int8_probe -- M K N [iters]`.
use densa_kernels as k;
use std::time::Instant;

fn best_of(iters: usize, mut f: impl FnMut()) -> f64 {
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (m, kk, n, iters) = (a[0], a[1], a[2], *a.get(3).unwrap_or(&20));
    let inp: Vec<f32> = (0..m * kk)
        .map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6)
        .collect();
    let w: Vec<f32> = (0..n * kk)
        .map(|i| ((i * 104729) % 11) as f32 * 0.1 - 0.5)
        .collect();
    let packed_f32 = k::PackedWeight::new(&w, n, kk);
    let packed_i8 = k::QuantizedWeight::new(&w, n, kk);
    let mut out = vec![0.0; m * n];
    let mut scratch = k::Int8Scratch::default();
    let ops = 2.0 * (m * kk * n) as f64;
    let f32_time = best_of(iters, || {
        k::linear_packed(&mut out, &inp, &packed_f32, m, k::Epilogue::NONE)
    });
    let i8_time = best_of(iters, || {
        k::linear_int8(
            &mut out,
            &inp,
            &packed_i8,
            m,
            k::Epilogue::NONE,
            &mut scratch,
        )
    });
    println!(
        "{{\"shape\": \"{m}x{kk}x{n}\", \"threads\": {}, \"int8_isa\": \"{}\", \"f32_gflops\": {:.1}, \"int8_gops\": {:.1}, \"speedup\": {:.2}}}",
        rayon::current_num_threads(),
        packed_i8.isa().name(),
        ops / f32_time / 1e9,
        ops / i8_time / 1e9,
        f32_time / i8_time
    );
}
