//! The AVX2 + FMA micro-kernel: 6 rows × 16 columns, 12 ymm accumulators (of 16 registers:
//! 12 accumulators, 2 B vectors, 1 broadcast).

use super::driver::micro_kernel;
use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;
/// How far ahead (in floats) B is prefetched into L1: 8 k steps.
const PREFETCH_AHEAD: usize = 8 * NR;

micro_kernel!(Avx2: f32, f32 => f32, MR, NR, "avx2,fma", kernel);

/// `acc[r][j] = Σ_k rows[r][k] · b[k·16 + j]`; `next`'s chunk prefetched into L2.
///
/// # Safety
/// The CPU has AVX2 and FMA; each of the 6 row pointers has `kc` readable values; `b` has
/// `kc × 16`; `acc` holds 6 × 16.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(kc: usize, rows: &[*const f32], b: *const f32, next: *const f32, acc: &mut [f32]) {
    debug_assert!(rows.len() == MR && acc.len() >= MR * NR);
    let r: [*const f32; MR] = rows.try_into().expect("6 rows");
    let bp = b;
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so b[k·16 .. k·16 + 16] and rows[i][k] are in bounds (caller).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(k * NR + PREFETCH_AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(k * NR).cast());
            let b0 = _mm256_loadu_ps(bp.add(k * NR));
            let b1 = _mm256_loadu_ps(bp.add(k * NR + 8));
            for i in 0..MR {
                let a = _mm256_broadcast_ss(&*r[i].add(k));
                c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
                c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 6 × 16 values (asserted).
        unsafe {
            _mm256_storeu_ps(out.add(i * NR), ci[0]);
            _mm256_storeu_ps(out.add(i * NR + 8), ci[1]);
        }
    }
}
