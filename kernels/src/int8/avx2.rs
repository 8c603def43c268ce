//! The AVX2 int8 micro-kernel: 4 rows × 16 columns, with the sign trick so that
//! `vpmaddubsw` never saturates (see the module docs).

use std::arch::x86_64::*;

/// `(MR, NR)`
pub const SHAPE: (usize, usize) = (4, 16);
const MR: usize = SHAPE.0;
const NR: usize = SHAPE.1;

/// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]` (signed, exact).
///
/// # Safety
/// The CPU has AVX2; each of the 4 row pointers has `k_pad` readable values; `b` holds
/// `k_pad × 16`; `acc` holds 4 × 16.
#[target_feature(enable = "avx2")]
pub unsafe fn kernel(k_pad: usize, rows: &[*const i8], b: &[i8], acc: &mut [i32]) {
    assert!(
        rows.len() == MR
            && b.len() >= k_pad * NR
            && acc.len() >= MR * NR
            && k_pad.is_multiple_of(4)
    );
    let r: [*const i8; MR] = rows.try_into().expect("4 rows");
    let bp = b.as_ptr();
    let ones = _mm256_set1_epi16(1);
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    for k4 in 0..k_pad / 4 {
        // SAFETY: k4 < k_pad / 4: the 64 bytes of b and 4 bytes of each row are in bounds.
        unsafe {
            let b0 = _mm256_loadu_si256(bp.add(k4 * NR * 4).cast());
            let b1 = _mm256_loadu_si256(bp.add(k4 * NR * 4 + 32).cast());
            let (abs0, abs1) = (_mm256_abs_epi8(b0), _mm256_abs_epi8(b1));
            for i in 0..MR {
                let a = _mm256_set1_epi32(r[i].add(4 * k4).cast::<i32>().read_unaligned());
                // (sign(w) · x) · |w|: both within 127, pair sums within ±32258.
                let p0 = _mm256_maddubs_epi16(abs0, _mm256_sign_epi8(a, b0));
                let p1 = _mm256_maddubs_epi16(abs1, _mm256_sign_epi8(a, b1));
                c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(p0, ones));
                c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(p1, ones));
            }
        }
    }
    let out = acc.as_mut_ptr();
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: acc holds 4 × 16 values (asserted).
        unsafe {
            _mm256_storeu_si256(out.add(i * NR).cast(), ci[0]);
            _mm256_storeu_si256(out.add(i * NR + 8).cast(), ci[1]);
        }
    }
}
