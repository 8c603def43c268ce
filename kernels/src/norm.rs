//! LayerNorm and the residual add that precedes it in every BERT sub-layer.

use rayon::prelude::*;

/// Rows per parallel task: LayerNorm is memory-bound, so small tasks only add overhead.
const ROWS_PER_TASK: usize = 16;

/// `x += residual`, elementwise.
pub fn add_inplace(x: &mut [f32], residual: &[f32]) {
    assert_eq!(x.len(), residual.len(), "add: lengths differ");
    x.iter_mut().zip(residual).for_each(|(a, b)| *a += *b);
}

/// In-place LayerNorm over each row of `x` `(rows, cols)`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, with the biased variance as PyTorch.
///
/// Mean and variance are accumulated in `f64` (two passes), so the only rounding is the final
/// `f32` arithmetic: within a few ulp of the exact result.
pub fn layer_norm(x: &mut [f32], weight: &[f32], bias: &[f32], rows: usize, cols: usize, eps: f32) {
    assert!(
        x.len() >= rows * cols,
        "layer_norm: buffer has {} values, shape ({rows}, {cols}) needs {}",
        x.len(),
        rows * cols
    );
    assert!(
        weight.len() >= cols && bias.len() >= cols,
        "layer_norm: weight/bias shorter than {cols}"
    );
    if cols == 0 {
        return;
    }
    x[..rows * cols]
        .par_chunks_mut(cols * ROWS_PER_TASK)
        .for_each(|block| {
            for row in block.chunks_exact_mut(cols) {
                layer_norm_row(row, weight, bias, eps);
            }
        });
}

fn layer_norm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv_std = 1.0 / (var + eps as f64).sqrt();
    for ((v, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
        *v = ((*v as f64 - mean) * inv_std) as f32 * w + b;
    }
}
