//! The portable micro-kernel: 4 × 16, plain Rust (what runs on aarch64 and old x86-64).

use super::driver::micro_kernel;

const MR: usize = 4;
const NR: usize = 16;

micro_kernel!(Scalar: f32, f32 => f32, MR, NR, kernel);

/// `acc[r][j] = Σ_k rows[r][k] · b[k·NR + j]`, r < 4, j < 16.
///
/// # Safety
/// Each of the 4 row pointers has `kc` readable values; `b` has `kc × 16`.
#[inline(always)]
unsafe fn kernel(
    kc: usize,
    rows: &[*const f32],
    b: *const f32,
    _next: *const f32,
    acc: &mut [f32],
) {
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
