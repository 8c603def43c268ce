//! The portable micro-kernel: 4 × 16, plain Rust (what runs on aarch64 and old x86-64).

/// `(MR, NR)`
pub const SHAPE: (usize, usize) = (4, 16);
const MR: usize = SHAPE.0;
const NR: usize = SHAPE.1;

/// `acc[r][j] = Σ_k rows[r][k] · b[k·NR + j]`, r < 4, j < 16.
///
/// # Safety
/// Each of the 4 row pointers has `kc` readable values; `b` holds `kc × 16`.
pub unsafe fn kernel(kc: usize, rows: &[*const f32], b: &[f32], acc: &mut [f32]) {
    assert!(rows.len() == MR && b.len() >= kc * NR && acc.len() >= MR * NR);
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
