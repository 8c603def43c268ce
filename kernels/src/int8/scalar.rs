//! The portable int8 micro-kernel: 4 × 16, exact i32 sums.

use crate::gemm::driver::micro_kernel;

const MR: usize = 4;
const NR: usize = 16;

micro_kernel!(ScalarInt8: u8, i8 => i32, MR, NR, kernel);

/// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]`, activations unsigned.
///
/// # Safety
/// Each of the 4 row pointers has `kc` readable values (a multiple of 4); `b` has `kc × 16`.
#[inline(always)]
unsafe fn kernel(kc: usize, rows: &[*const u8], b: *const i8, _next: *const i8, acc: &mut [i32]) {
    // SAFETY: the caller guarantees kc × 16 readable weights (kc a multiple of 4).
    let b = unsafe { std::slice::from_raw_parts(b, kc * NR) };
    let mut c = [[0i32; NR]; MR];
    for (k4, bk) in b.chunks_exact(NR * 4).enumerate() {
        for r in 0..MR {
            // SAFETY: 4·k4 + 3 < kc values are readable (caller).
            let a: [i32; 4] = std::array::from_fn(|i| unsafe { *rows[r].add(4 * k4 + i) } as i32);
            for j in 0..NR {
                let w = &bk[j * 4..j * 4 + 4];
                c[r][j] += a[0] * w[0] as i32
                    + a[1] * w[1] as i32
                    + a[2] * w[2] as i32
                    + a[3] * w[3] as i32;
            }
        }
    }
    for r in 0..MR {
        acc[r * NR..(r + 1) * NR].copy_from_slice(&c[r]);
    }
}
