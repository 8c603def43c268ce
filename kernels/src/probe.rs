//! A small FMA probe: the single-core f32 FMA peak this machine actually sustains, so that
//! benchmarks can report the fraction of peak they reach.

use crate::isa::Isa;
use std::time::Instant;

/// Runs a loop of independent FMA chains for about `millis` ms on the calling thread and
/// returns GFLOP/s (a fused multiply-add counts as 2 FLOP), with the ISA it used.
pub fn fma_peak_gflops(millis: u64) -> (f64, Isa) {
    let isa = Isa::selected();
    let iters_per_round = 1u64 << 16;
    let start = Instant::now();
    let mut flops = 0.0;
    let mut sink = 0.0f32;
    while start.elapsed().as_millis() < millis as u128 {
        let (f, s) = match isa {
            // SAFETY: the ISA was detected on this CPU.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { fma_avx512(iters_per_round) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { fma_avx2(iters_per_round) },
            _ => fma_scalar(iters_per_round),
        };
        flops += f;
        sink += s;
    }
    std::hint::black_box(sink);
    (flops / start.elapsed().as_secs_f64() / 1e9, isa)
}

/// [`fma_peak_gflops`] on every thread of the current rayon pool at once, summed: the peak
/// with all cores busy (and clocked as they are when all are busy), which is what a parallel
/// GEMM can reach.
pub fn fma_peak_gflops_all_threads(millis: u64) -> (f64, Isa) {
    let per_thread = rayon::broadcast(|_| fma_peak_gflops(millis));
    let isa = per_thread.first().map_or(Isa::selected(), |&(_, isa)| isa);
    (per_thread.iter().map(|&(g, _)| g).sum(), isa)
}

/// Read bandwidth from memory with every thread of the current rayon pool streaming its share
/// of a buffer of `bytes` (make it several times the last-level cache), in GB/s, best of a few
/// passes over about `millis` ms: the limit of a GEMM whose weights do not stay in cache (a
/// 16-token question through BERT-base streams its 340 MB of f32 weights once per pass).
pub fn read_bandwidth_gbs(bytes: usize, millis: u64) -> f64 {
    use rayon::prelude::*;
    let data = vec![1.0f32; bytes / 4];
    let start = Instant::now();
    let mut best = 0.0f64;
    while start.elapsed().as_millis() < millis as u128 || best == 0.0 {
        let pass = Instant::now();
        let sum: f32 = data.par_chunks(1 << 20).map(crate::simd::sum).sum();
        std::hint::black_box(sum);
        best = best.max(bytes as f64 / pass.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// The single-core int8 multiply-add peak of the int8 kernels' instruction (`vpdpbusd` on AVX-512
/// VNNI), in G operations/s (a multiply and an add counted apart), for about `millis` ms; `None`
/// where the CPU has no VNNI.
pub fn vnni_peak_gops(millis: u64) -> Option<f64> {
    if !crate::int8::Int8Isa::Avx512Vnni.is_available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let start = Instant::now();
        let (mut ops, mut sink) = (0.0, 0i32);
        while start.elapsed().as_millis() < millis as u128 {
            // SAFETY: VNNI was detected just above.
            let (o, s) = unsafe { dpbusd_avx512(1 << 16) };
            ops += o;
            sink = sink.wrapping_add(s);
        }
        std::hint::black_box(sink);
        Some(ops / start.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = millis; // no VNNI off x86-64: returned above
        None
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dpbusd_avx512(iters: u64) -> (f64, i32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); 16];
    let (a, b) = (_mm512_set1_epi8(1), _mm512_set1_epi8(-1));
    for _ in 0..iters {
        // Opaque operands, so the compiler cannot fold the repeated sums into a product.
        let (a, b) = (std::hint::black_box(a), std::hint::black_box(b));
        for v in acc.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, a, b);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm512_setzero_si512(), |s, v| _mm512_add_epi32(s, *v));
    // 16 accumulators × 64 byte products × 2 operations.
    ((iters * 16 * 64 * 2) as f64, _mm512_reduce_add_epi32(sum))
}

/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> (f64, f32) {
    use std::arch::x86_64::*;
    // 16 independent accumulators: enough to cover latency × pipes on current cores.
    let mut acc = [_mm512_set1_ps(1.0); 16];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, v| _mm512_add_ps(s, *v));
    ((iters * 16 * 16 * 2) as f64, _mm512_reduce_add_ps(sum))
}

/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> (f64, f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(1.0); 12];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v));
    // SAFETY: out holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    ((iters * 12 * 8 * 2) as f64, out.iter().sum())
}

fn fma_scalar(iters: u64) -> (f64, f32) {
    let mut acc = [1.0f32; 16];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = *v * 0.999_999 + 1e-7;
        }
    }
    ((iters * 16 * 2) as f64, acc.iter().sum())
}
