//! The portable micro-kernel: 4 × 16, plain Rust (what runs on aarch64 and old x86-64).

use super::driver::MicroKernel;

/// The portable f32 kernel.
pub(crate) struct Scalar;

const MR: usize = 4;
const NR: usize = 16;

impl MicroKernel for Scalar {
    type A = f32;
    type B = f32;
    type Acc = f32;
    const MR: usize = MR;
    const NR: usize = NR;

    #[inline(always)]
    /// `acc[r][j] = Σ_k rows[r][k] · b[k·NR + j]`, r < 4, j < 16.
    unsafe fn tile(kc: usize, rows: &[*const f32], b: *const f32, acc: &mut [f32]) {
        // SAFETY: the caller guarantees kc × 16 readable values of b.
        let b = unsafe { std::slice::from_raw_parts(b, kc * NR) };
        let mut c = [[0.0f32; NR]; MR];
        for k in 0..kc {
            let bk = &b[k * NR..k * NR + NR];
            for r in 0..MR {
                // SAFETY: the caller guarantees kc readable values per row.
                let a = unsafe { *rows[r].add(k) };
                for j in 0..NR {
                    c[r][j] += a * bk[j];
                }
            }
        }
        for r in 0..MR {
            acc[r * NR..(r + 1) * NR].copy_from_slice(&c[r]);
        }
    }
}
