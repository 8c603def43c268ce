//! Row-wise softmax, vectorised (exp from [`crate::math::exp`], ≤ 4 ulp).

use crate::simd;
use crate::simd::multiversion;

multiversion! {
    /// In-place softmax over each row of `x` `(rows, cols)`, stable (the row maximum is
    /// subtracted first). Callers never pass rows of `-inf` only (attention sees real tokens).
    pub fn softmax_rows / softmax_rows_isa(x: &mut [f32], rows: usize, cols: usize) {
        crate::check_shape("softmax", "buffer", x.len(), rows, cols);
        if cols == 0 {
            return;
        }
        for row in x[..rows * cols].chunks_exact_mut(cols) {
            softmax_row(row);
        }
    }
}

/// Softmax of one row, in place.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let max = simd::max(row);
    for v in row.iter_mut() {
        *v = crate::math::exp(*v - max);
    }
    let inv = 1.0 / simd::sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}
