//! The AVX-512F micro-kernel: 8 rows × 32 columns, 16 zmm accumulators.
//!
//! Per k: two 16-wide loads of the packed B row, eight broadcasts of A, sixteen FMAs: the two
//! 512-bit FMA pipes of a Zen 5 core stay busy (16 independent chains cover the 4-cycle
//! latency) and loads stay under the two-per-cycle limit.

use super::driver::micro_kernel;
use std::arch::x86_64::*;

const MR: usize = 8;
const NR: usize = 32;
/// How far ahead (in floats) B is prefetched into L1.
const PREFETCH_AHEAD: usize = 8 * NR;

micro_kernel!(Avx512: f32, f32 => f32, MR, NR, "avx512f", kernel);

/// `acc[r][j] = Σ_k rows[r][k] · b[k·32 + j]`; `next`'s chunk prefetched into L2.
///
/// # Safety
/// The CPU has AVX-512F; each of the 8 row pointers has `kc` readable values; `b` has
/// `kc × 32`; `acc` holds 8 × 32.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(kc: usize, rows: &[*const f32], b: *const f32, next: *const f32, acc: &mut [f32]) {
    debug_assert!(rows.len() == MR && acc.len() >= MR * NR);
    let r: [*const f32; MR] = rows.try_into().expect("8 rows");
    let bp = b;
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so b[k·32 .. k·32 + 32] and rows[i][k] are in bounds (caller).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(k * NR + PREFETCH_AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(k * NR + PREFETCH_AHEAD + 16).cast());
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(k * NR).cast());
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(k * NR + 16).cast());
            let b0 = _mm512_loadu_ps(bp.add(k * NR));
            let b1 = _mm512_loadu_ps(bp.add(k * NR + 16));
            for i in 0..MR {
                let a = _mm512_set1_ps(*r[i].add(k));
                c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
                c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 8 × 32 values (asserted).
        unsafe {
            _mm512_storeu_ps(out.add(i * NR), ci[0]);
            _mm512_storeu_ps(out.add(i * NR + 16), ci[1]);
        }
    }
}
