//! The AVX-512 VNNI int8 micro-kernel: 8 rows × 32 columns, 16 zmm of i32 accumulators.
//!
//! Per 4 k: two 64-byte loads of weights (one from each of the tile's two 16-column panels),
//! eight 4-byte broadcasts of the activations, sixteen `vpdpbusd`.

use crate::gemm::driver::micro_kernel;
use std::arch::x86_64::*;

const MR: usize = 8;
const NR: usize = 32;
/// How far ahead (in bytes) each panel is prefetched into L1: 8 groups of 4 k.
const PREFETCH_AHEAD: usize = 8 * 64;

micro_kernel!(Avx512Vnni: u8, i8 => i32, MR, NR, "avx512f,avx512bw,avx512vnni", kernel);

/// `acc[r][j] = Σ_k rows[r][k] · w[j][k]`: columns 0..16 from the panel at `b`, 16..32 from
/// the next one, `kc · 16` bytes on (the whole of K is one chunk).
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI; each of the 8 row pointers has `kc` readable values (a
/// multiple of 4); `b` has two panels of `kc × 16`; `acc` holds 8 × 32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel(kc: usize, rows: &[*const u8], b: *const i8, next: *const i8, acc: &mut [i32]) {
    debug_assert!(rows.len() == MR && acc.len() >= MR * NR && kc.is_multiple_of(4));
    let r: [*const u8; MR] = rows.try_into().expect("8 rows");
    // SAFETY: the second panel is inside b's two panels (contract).
    let b_high = unsafe { b.add(kc * 16) };
    let mut c = [[_mm512_setzero_si512(); 2]; MR];
    for k4 in 0..kc / 4 {
        // SAFETY: k4 < kc / 4: 64 bytes of each panel and 4 bytes of each row are in bounds.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(k4 * 64 + PREFETCH_AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T0>(b_high.wrapping_add(k4 * 64 + PREFETCH_AHEAD).cast());
            // The next tile's two panels, into L2.
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(k4 * 64).cast());
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(kc * 16 + k4 * 64).cast());
            let b0 = _mm512_loadu_si512(b.add(k4 * 64).cast());
            let b1 = _mm512_loadu_si512(b_high.add(k4 * 64).cast());
            for i in 0..MR {
                let a = _mm512_set1_epi32(r[i].add(4 * k4).cast::<i32>().read_unaligned());
                c[i][0] = _mm512_dpbusd_epi32(c[i][0], a, b0);
                c[i][1] = _mm512_dpbusd_epi32(c[i][1], a, b1);
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 8 × 32 values.
        unsafe {
            _mm512_storeu_si512(out.add(i * NR).cast(), ci[0]);
            _mm512_storeu_si512(out.add(i * NR + 16).cast(), ci[1]);
        }
    }
}
