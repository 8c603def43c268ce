//! The AVX2 + FMA micro-kernel: 6 rows × 16 columns, 12 ymm accumulators (of 16 registers:
//! 12 accumulators, 2 B vectors, 1 broadcast).

use std::arch::x86_64::*;

/// `(MR, NR)`
pub const SHAPE: (usize, usize) = (6, 16);
const MR: usize = SHAPE.0;
const NR: usize = SHAPE.1;

/// `acc[r][j] = Σ_k rows[r][k] · b[k·16 + j]`.
///
/// # Safety
/// The CPU has AVX2 and FMA; each of the 6 row pointers has `kc` readable values; `b` holds
/// `kc × 16`; `acc` holds 6 × 16.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn kernel(kc: usize, rows: &[*const f32], b: &[f32], acc: &mut [f32]) {
    assert!(rows.len() == MR && b.len() >= kc * NR && acc.len() >= MR * NR);
    let r: [*const f32; MR] = rows.try_into().expect("6 rows");
    let bp = b.as_ptr();
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so b[k·16 .. k·16 + 16] and rows[i][k] are in bounds (caller).
        unsafe {
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
