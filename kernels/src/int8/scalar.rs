//! The portable int8 micro-kernel: 4 × 16, exact i32 sums.

/// `(MR, NR)`
pub const SHAPE: (usize, usize) = (4, 16);
const MR: usize = SHAPE.0;
const NR: usize = SHAPE.1;

/// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]`.
///
/// # Safety
/// Each of the 4 row pointers has `k_pad` readable values; `b` holds `k_pad × 16`.
pub unsafe fn kernel(k_pad: usize, rows: &[*const i8], b: &[i8], acc: &mut [i32]) {
    assert!(
        rows.len() == MR
            && b.len() >= k_pad * NR
            && acc.len() >= MR * NR
            && k_pad.is_multiple_of(4)
    );
    let mut c = [[0i32; NR]; MR];
    for k4 in 0..k_pad / 4 {
        let bk = &b[k4 * NR * 4..(k4 + 1) * NR * 4];
        for r in 0..MR {
            // SAFETY: 4·k4 + 3 < k_pad values are readable (caller).
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
