//! The AVX2 int8 micro-kernel: 4 rows × 16 columns. `vpmaddubsw` multiplies the unsigned
//! activations by the 7-bit weights and adds pairs in int16 (never saturating: see the module
//! docs), `vpmaddwd` with ones adds those pairs into i32. (6 × 16, with 12 accumulators,
//! measured 5–10 % slower: it leaves too few registers for the products.)

use crate::gemm::driver::micro_kernel;
use std::arch::x86_64::*;

const MR: usize = 4;
const NR: usize = 16;
/// How far ahead (in bytes) the weights are prefetched into L1: 8 groups of 4 k.
const PREFETCH_AHEAD: usize = 8 * NR * 4;

micro_kernel!(Avx2Int8: u8, i8 => i32, MR, NR, "avx2", kernel);

/// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]` ; `next`'s chunk prefetched into L2 (u8 × s8 within ±63, exact).
///
/// # Safety
/// The CPU has AVX2; each of the 4 row pointers has `kc` readable values (a multiple of 4);
/// `b` has `kc × 16`; `acc` holds 4 × 16.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn kernel(kc: usize, rows: &[*const u8], b: *const i8, next: *const i8, acc: &mut [i32]) {
    debug_assert!(rows.len() == MR && acc.len() >= MR * NR && kc.is_multiple_of(4));
    let r: [*const u8; MR] = rows.try_into().expect("4 rows");
    let ones = _mm256_set1_epi16(1);
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    for k4 in 0..kc / 4 {
        // SAFETY: k4 < kc / 4: the 64 bytes of b and 4 bytes of each row are in bounds.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(k4 * NR * 4 + PREFETCH_AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(k4 * NR * 4).cast());
            let b0 = _mm256_loadu_si256(b.add(k4 * NR * 4).cast());
            let b1 = _mm256_loadu_si256(b.add(k4 * NR * 4 + 32).cast());
            for i in 0..MR {
                let a = _mm256_set1_epi32(r[i].add(4 * k4).cast::<i32>().read_unaligned());
                let p0 = _mm256_maddubs_epi16(a, b0);
                let p1 = _mm256_maddubs_epi16(a, b1);
                c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(p0, ones));
                c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(p1, ones));
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 4 × 16 values.
        unsafe {
            _mm256_storeu_si256(out.add(i * NR).cast(), ci[0]);
            _mm256_storeu_si256(out.add(i * NR + 8).cast(), ci[1]);
        }
    }
}
