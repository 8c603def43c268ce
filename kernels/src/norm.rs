//! LayerNorm, vectorised, and the residual add that precedes it: after every BERT sub-layer
//! (post-norm, [`add_layer_norm`]), or before every ModernBERT sub-layer (pre-norm, where the
//! residual stream itself stays un-normalised: [`add_then_layer_norm`]).

use crate::int8::Int8Scratch;
use crate::simd;
use crate::simd::multiversion;
use rayon::prelude::*;

/// Rows per parallel task: LayerNorm is memory-bound, so small tasks only add overhead.
const ROWS_PER_TASK: usize = 16;

/// In-place LayerNorm over each row of `x` `(rows, cols)`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, with the biased variance as PyTorch
/// (no `bias`: `nn.LayerNorm(..., bias=False)`, ModernBERT's).
///
/// Two passes in f32 with 16 partial sums per pass. Against the f64 reference the error is
/// within `2·(|w|·err(x̂) + ε·(|x̂·w| + |b| + |y|))`, where `x̂`'s error is
/// `ε·(K·mean|x| / σ + (K/2 + 3)·|x̂|)` and `K = cols/16 + 4`: nearly constant rows (σ small
/// against |x|) are ill-conditioned (property-tested, `kernels/tests/properties.rs`).
pub fn layer_norm(
    x: &mut [f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    cols: usize,
    eps: f32,
) {
    add_layer_norm(
        crate::Isa::selected(),
        x,
        None,
        weight,
        bias,
        rows,
        cols,
        eps,
        None,
    )
}

/// `x = LayerNorm(x + residual)` over each row (without a residual, [`layer_norm`]): BERT's
/// "add & norm", fused so each row is read and written once (the residual streams in
/// alongside instead of being added by the GEMM's epilogue in scattered tiles).
///
/// With `quantized`, each normalised row is also quantized for the int8 linear layer that
/// reads it next, while the row is still in L1 (`quantized` then feeds
/// [`crate::int8::linear_int8_quantized`], on any int8 path); the normalisation is the same
/// bit for bit. `isa` is normally [`crate::Isa::selected`] (tests pass each one).
#[allow(clippy::too_many_arguments)]
pub fn add_layer_norm(
    isa: crate::Isa,
    x: &mut [f32],
    residual: Option<&[f32]>,
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    cols: usize,
    eps: f32,
    quantized: Option<&mut Int8Scratch>,
) {
    let quantize = quantized;
    crate::check_shape("layer_norm", "buffer", x.len(), rows, cols);
    if let Some(r) = residual {
        crate::check_shape("layer_norm", "residual", r.len(), rows, cols);
    }
    let (weight, bias) = affine(weight, bias, cols);
    let block = cols * ROWS_PER_TASK;
    let normalize = |i: usize, rows_block: &mut [f32]| {
        if let Some(r) = residual {
            add_block_isa(isa, rows_block, &r[i * block..i * block + rows_block.len()]);
        }
        layer_norm_block_isa(isa, rows_block, weight, bias, eps)
    };
    match quantize {
        None if cols > 0 => x[..rows * cols]
            .par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, rows_block)| normalize(i, rows_block)),
        None => {}
        Some(scratch) => {
            let (quantized, scales) = scratch.prepare(rows, cols);
            if cols == 0 {
                return;
            }
            let k_pad = crate::int8::padded_k(cols);
            x[..rows * cols]
                .par_chunks_mut(block)
                .zip(quantized.par_chunks_mut(k_pad * ROWS_PER_TASK))
                .zip(scales.par_chunks_mut(ROWS_PER_TASK))
                .enumerate()
                .for_each(|(i, ((rows_block, q), s))| {
                    normalize(i, rows_block);
                    crate::int8::quantize_rows_for(isa, rows_block, q, s, cols);
                });
        }
    }
}

/// Pre-norm's "add & norm": `residual += x`, then `x = LayerNorm(residual)` over each row.
/// ModernBERT's residual stream stays un-normalised; the sub-layer that follows reads `x`
/// (quantized into `quantized` as it is written, as [`add_layer_norm`] does).
#[allow(clippy::too_many_arguments)]
pub fn add_then_layer_norm(
    isa: crate::Isa,
    residual: &mut [f32],
    x: &mut [f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    cols: usize,
    eps: f32,
    quantized: Option<&mut Int8Scratch>,
) {
    crate::check_shape("layer_norm", "residual", residual.len(), rows, cols);
    crate::check_shape("layer_norm", "buffer", x.len(), rows, cols);
    let (weight, bias) = affine(weight, bias, cols);
    if cols == 0 {
        return;
    }
    let block = cols * ROWS_PER_TASK;
    let normalize = |sum: &mut [f32], x: &mut [f32]| {
        add_block_isa(isa, sum, x);
        x.copy_from_slice(sum);
        layer_norm_block_isa(isa, x, weight, bias, eps)
    };
    let blocks = residual[..rows * cols]
        .par_chunks_mut(block)
        .zip(x[..rows * cols].par_chunks_mut(block));
    match quantized {
        None => blocks.for_each(|(sum, x)| normalize(sum, x)),
        Some(scratch) => {
            let (quantized, scales) = scratch.prepare(rows, cols);
            let k_pad = crate::int8::padded_k(cols);
            blocks
                .zip(quantized.par_chunks_mut(k_pad * ROWS_PER_TASK))
                .zip(scales.par_chunks_mut(ROWS_PER_TASK))
                .for_each(|(((sum, x), q), s)| {
                    normalize(sum, x);
                    crate::int8::quantize_rows_for(isa, x, q, s, cols);
                });
        }
    }
}

/// The first `cols` of LayerNorm's weight and bias (a caller's bug if shorter, said plainly).
fn affine<'a>(
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    cols: usize,
) -> (&'a [f32], Option<&'a [f32]>) {
    assert!(
        weight.len() >= cols && bias.is_none_or(|b| b.len() >= cols),
        "layer_norm: weight/bias shorter than {cols}"
    );
    (&weight[..cols], bias.map(|b| &b[..cols]))
}

multiversion! {
    /// `block += residual` (one task's rows; still in L1 for the LayerNorm that follows).
    fn add_block_isa(block: &mut [f32], residual: &[f32]) {
        for (x, r) in block.iter_mut().zip(residual) {
            *x += *r;
        }
    }
}

multiversion! {
    /// LayerNorm of every row of `block` (rows of `weight.len()` values).
    fn layer_norm_block_isa(block: &mut [f32], weight: &[f32], bias: Option<&[f32]>, eps: f32) {
        let cols = weight.len();
        for row in block.chunks_exact_mut(cols) {
            let mean = simd::sum(row) / cols as f32;
            let mut sq = [0.0f32; simd::LANES];
            let mut chunks = row.chunks_exact(simd::LANES);
            for c in &mut chunks {
                for l in 0..simd::LANES {
                    let d = c[l] - mean;
                    sq[l] += d * d;
                }
            }
            let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
            let var = (sq.iter().sum::<f32>() + tail) / cols as f32;
            let inv_std = 1.0 / (var + eps).sqrt();
            match bias {
                Some(bias) => {
                    for ((v, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
                        *v = (*v - mean) * inv_std * w + b;
                    }
                }
                None => {
                    for (v, &w) in row.iter_mut().zip(weight) {
                        *v = (*v - mean) * inv_std * w;
                    }
                }
            }
        }
    }
}
