//! Best-of timings at one shape, on the current rayon pool: our packed f32 GEMM, matrixmultiply's
//! sgemm (one call, no threads of its own) and our int8 GEMM, with the probes' peaks:
//! `cargo run --release -p densa-kernels --example gemm_probe -- M K N [iters]`.
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
    let packed = k::PackedWeight::new(&w, n, kk);
    let quantized = k::QuantizedWeight::new(&w, n, kk);
    let mut out = vec![0.0; m * n];
    let mut scratch = k::Int8Scratch::default();
    let ops = 2.0 * (m * kk * n) as f64;
    let ours = best_of(iters, || {
        k::linear_packed(&mut out, &inp, &packed, m, k::Epilogue::NONE)
    });
    // SAFETY: inp (m, kk), wᵀ (kk, n) through strides, out (m, n): all in bounds.
    let theirs = best_of(iters, || unsafe {
        matrixmultiply::sgemm(
            m,
            kk,
            n,
            1.0,
            inp.as_ptr(),
            kk as isize,
            1,
            w.as_ptr(),
            1,
            kk as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        )
    });
    let int8 = best_of(iters, || {
        k::linear_int8(
            &mut out,
            &inp,
            &quantized,
            m,
            k::Epilogue::NONE,
            &mut scratch,
        )
    });
    let (peak, isa) = k::probe::fma_peak_gflops(300);
    let threads = rayon::current_num_threads();
    println!(
        "{{\"shape\": \"{m}x{kk}x{n}\", \"isa\": \"{}\", \"int8_isa\": \"{}\", \"threads\": {threads}, \"densa_gflops\": {:.1}, \"matrixmultiply_1thread_gflops\": {:.1}, \"core_peak_gflops\": {peak:.1}, \"densa_fraction_of_peak\": {:.3}, \"int8_gops\": {:.1}, \"int8_speedup\": {:.2}}}",
        isa.name(),
        quantized.isa().name(),
        ops / ours / 1e9,
        ops / theirs / 1e9,
        ops / ours / 1e9 / (peak * threads as f64),
        ops / int8 / 1e9,
        ours / int8,
    );
}
