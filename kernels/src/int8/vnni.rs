//! The AVX-512 VNNI int8 micro-kernel: 8 rows × 32 columns, 16 zmm of i32 accumulators.
//!
//! Per 4 k: two 64-byte loads of packed weights, eight 4-byte broadcasts of the activations
//! (stored already shifted to unsigned, `q + 128`, by the quantization step), sixteen `vpdpbusd`.
//! The caller subtracts `128 · Σ_k w` per channel.

use std::arch::x86_64::*;

/// `(MR, NR)`
pub const SHAPE: (usize, usize) = (8, 32);
const MR: usize = SHAPE.0;
const NR: usize = SHAPE.1;

/// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]` with `rows` holding `q + 128` as u8.
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI; each of the 8 row pointers has `k_pad` readable values;
/// `b` holds `k_pad × 32`; `acc` holds 8 × 32.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn kernel(k_pad: usize, rows: &[*const i8], b: &[i8], acc: &mut [i32]) {
    assert!(
        rows.len() == MR
            && b.len() >= k_pad * NR
            && acc.len() >= MR * NR
            && k_pad.is_multiple_of(4)
    );
    let r: [*const i8; MR] = rows.try_into().expect("8 rows");
    let bp = b.as_ptr();
    let mut c = [[_mm512_setzero_si512(); 2]; MR];
    for k4 in 0..k_pad / 4 {
        // SAFETY: k4 < k_pad / 4: the 128 bytes of b and 4 bytes of each row are in bounds.
        unsafe {
            let b0 = _mm512_loadu_si512(bp.add(k4 * NR * 4).cast());
            let b1 = _mm512_loadu_si512(bp.add(k4 * NR * 4 + 64).cast());
            for i in 0..MR {
                let a = _mm512_set1_epi32(r[i].add(4 * k4).cast::<i32>().read_unaligned());
                c[i][0] = _mm512_dpbusd_epi32(c[i][0], a, b0);
                c[i][1] = _mm512_dpbusd_epi32(c[i][1], a, b1);
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 8 × 32 values (asserted).
        unsafe {
            _mm512_storeu_si512(out.add(i * NR).cast(), ci[0]);
            _mm512_storeu_si512(out.add(i * NR + 16).cast(), ci[1]);
        }
    }
}
