//! Quantization: weight rows (symmetric, 7-bit, once at load) and activation rows
//! (asymmetric, 8-bit, per token on every call), the definitions the int8 module docs give.

use super::{padded_k, ROW_BLOCK, WEIGHT_MAX};
use crate::isa::Isa;
use rayon::prelude::*;

/// How one row of activations was quantized: `x ≈ (u − zero_point) · scale`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RowQuantization {
    pub scale: f32,
    pub zero_point: i32,
}

/// Asymmetric quantization of an activation row to `u ∈ [0, 255]`: the range `[lo, hi]`
/// (widened to hold 0, so that zero is exact) maps onto 0..=255, `scale = (hi − lo) / 255`
/// and `zero_point = round(−lo · (1 / scale))` (scale 1 and zero point 0 for an all-zero or
/// non-finite row), `u = round(clamp(x · (1 / scale) + zero_point, 0, 255))`, rounding to
/// nearest, ties to even; `q` is padded with the zero point to its length.
pub fn quantize_activation_row(x: &[f32], q: &mut [u8]) -> RowQuantization {
    let mut row = RowQuantization::default();
    quantize_rows_body(x, q, std::slice::from_mut(&mut row), x.len());
    row
}

/// Symmetric quantization of a weight row to `[-63, 63]`: returns the scale, `max|w| / 63`
/// (1 for an all-zero or non-finite row), with `q = round(w / scale)` (ties to even); `q` is
/// padded with zeros to its length.
pub fn quantize_weight_row(w: &[f32], q: &mut [i8]) -> f32 {
    let (scale, inv) = symmetric_scale(w, WEIGHT_MAX);
    for (q, &v) in q.iter_mut().zip(w) {
        *q = round_to_int(v * inv, WEIGHT_MAX) as i8;
    }
    q[w.len()..].fill(0);
    scale
}

/// `(scale, 1 / scale)` mapping `max|x|` to `levels`.
#[inline(always)]
fn symmetric_scale(x: &[f32], levels: f32) -> (f32, f32) {
    let amax = crate::simd::max_abs(x);
    let scale = if amax > 0.0 && amax.is_finite() {
        amax / levels
    } else {
        1.0
    };
    (scale, 1.0 / scale)
}

/// `round(v)` to nearest, ties to even, clamped to `±limit`: adding and subtracting 1.5·2²³
/// (branch-free, vectorises), the integer read from the float's bits.
#[inline(always)]
fn round_to_int(v: f32, limit: f32) -> i32 {
    const ROUND: f32 = 12_582_912.0;
    let shifted = v.clamp(-limit, limit) + ROUND;
    shifted.to_bits() as i32 - 0x4B40_0000
}

/// [`quantize_activation_row`] for every row of `x` (rows of `k` values into rows of `k_pad`),
/// written to vectorise.
#[inline(always)]
fn quantize_rows_body(x: &[f32], q: &mut [u8], rows: &mut [RowQuantization], k: usize) {
    let k_pad = q.len() / rows.len().max(1);
    for ((row, q_row), quant) in x
        .chunks_exact(k.max(1))
        .zip(q.chunks_exact_mut(k_pad.max(1)))
        .zip(rows.iter_mut())
    {
        let (lo, hi) = crate::simd::min_max(row);
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let range = hi - lo;
        let (scale, zero_point) = if range > 0.0 && range.is_finite() {
            let scale = range / 255.0;
            (
                scale,
                round_to_int(-lo * (1.0 / scale), 255.0).clamp(0, 255),
            )
        } else {
            (1.0, 0)
        };
        let inv = 1.0 / scale;
        *quant = RowQuantization { scale, zero_point };
        let z = zero_point as f32;
        for (q, &v) in q_row.iter_mut().zip(row) {
            *q = round_to_int((v * inv + z).clamp(0.0, 255.0), 255.0) as u8;
        }
        q_row[row.len()..].fill(zero_point as u8);
    }
}

crate::simd::multiversion! {
    /// [`quantize_activation_row`] for every row of `x`, at the ISA's vector width.
    fn quantize_rows_isa(x: &[f32], q: &mut [u8], rows: &mut [RowQuantization], k: usize) {
        quantize_rows_body(x, q, rows, k)
    }
}

/// Activations quantized per token: `(rows, k_pad)` u8 values and one scale and zero point per
/// row, the same on every path. Reused across calls (no allocation once grown). Filled by
/// [`Int8Scratch::quantize`], or by the LayerNorm that produces the activations
/// ([`crate::add_layer_norm`] with `quantized`).
#[derive(Default)]
pub struct Int8Scratch {
    pub(crate) quantized: Vec<u8>,
    pub(crate) row_quantization: Vec<RowQuantization>,
    pub(crate) rows: usize,
    pub(crate) k: usize,
}

impl Int8Scratch {
    /// Quantizes `inp (m, k)` per row.
    pub fn quantize(&mut self, inp: &[f32], m: usize, k: usize) {
        crate::check_shape("quantize", "input", inp.len(), m, k);
        let rows_per_task = 16;
        let (quantized, row_quantization) = self.prepare(m, k);
        let k_pad = padded_k(k);
        quantized
            .par_chunks_mut((k_pad * rows_per_task).max(1))
            .zip(row_quantization.par_chunks_mut(rows_per_task))
            .enumerate()
            .for_each(|(t, (q, s))| {
                let first = t * rows_per_task;
                quantize_rows_isa(
                    Isa::selected(),
                    &inp[first * k..(first + s.len()) * k],
                    q,
                    s,
                    k,
                );
            });
    }

    /// Sizes the buffers for `(m, k)` and returns them to be filled: `(m, k_pad)` quantized
    /// values and `m` scales.
    pub(crate) fn prepare(&mut self, m: usize, k: usize) -> (&mut [u8], &mut [RowQuantization]) {
        let k_pad = padded_k(k);
        // Whole row blocks: rows past m are read by 32-row tile loads (results dropped).
        self.quantized
            .resize(m.next_multiple_of(ROW_BLOCK) * k_pad, 0);
        self.row_quantization.resize(m, RowQuantization::default());
        (self.rows, self.k) = (m, k);
        (
            &mut self.quantized[..m * k_pad],
            &mut self.row_quantization[..m],
        )
    }
}

/// Quantizes rows of `k` values of `x` into rows of `k_pad` of `q` (one scale each).
pub(crate) fn quantize_rows_for(
    isa: Isa,
    x: &[f32],
    q: &mut [u8],
    rows: &mut [RowQuantization],
    k: usize,
) {
    quantize_rows_isa(isa, x, q, rows, k);
}
