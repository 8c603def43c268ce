//! Row-wise softmax.

/// In-place softmax over each row of `x` `(rows, cols)`, stable (the row maximum is
/// subtracted first). Rows of `-inf` only would divide by zero; callers never pass them
/// (attention only ever sees real tokens).
pub fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    assert!(
        x.len() >= rows * cols,
        "softmax: buffer has {} values, shape ({rows}, {cols}) needs {}",
        x.len(),
        rows * cols
    );
    if cols == 0 {
        return;
    }
    for row in x[..rows * cols].chunks_exact_mut(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}
