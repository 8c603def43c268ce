//! The 256-bit VNNI int8 micro-kernel (AVX-VNNI, VEX encoding: Intel Alder Lake and later,
//! AMD Zen 5 client parts, CPUs with 256-bit VNNI but no AVX-512): 6 rows × 16 columns, 12 ymm
//! of i32 accumulators, one `vpdpbusd` per 4 k × 8 columns.

use crate::gemm::driver::micro_kernel;
use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;
/// How far ahead (in bytes) the weights are prefetched into L1: 8 groups of 4 k.
const PREFETCH_AHEAD: usize = 8 * NR * 4;

micro_kernel!(AvxVnni: u8, i8 => i32, MR, NR, "avx2,avxvnni", kernel);

/// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]` ; `next`'s chunk prefetched into L2 (u8 × s8, exact).
///
/// # Safety
/// The CPU has AVX2 and AVX-VNNI; each of the 6 row pointers has `kc` readable values (a
/// multiple of 4); `b` has `kc × 16`; `acc` holds 6 × 16.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn kernel(kc: usize, rows: &[*const u8], b: *const i8, next: *const i8, acc: &mut [i32]) {
    debug_assert!(rows.len() == MR && acc.len() >= MR * NR && kc.is_multiple_of(4));
    let r: [*const u8; MR] = rows.try_into().expect("6 rows");
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
                c[i][0] = _mm256_dpbusd_avx_epi32(c[i][0], a, b0);
                c[i][1] = _mm256_dpbusd_avx_epi32(c[i][1], a, b1);
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 6 × 16 values.
        unsafe {
            _mm256_storeu_si256(out.add(i * NR).cast(), ci[0]);
            _mm256_storeu_si256(out.add(i * NR + 8).cast(), ci[1]);
        }
    }
}
