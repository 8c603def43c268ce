//! Elementwise activations: GELU (exact erf form and tanh form), tanh and the gated GELU of
//! ModernBERT's feed-forward (GeGLU), vectorised.
//!
//! Error against the exact function (f64 reference, `tests/properties.rs`): GELU within
//! 2e-7·(1 + |x|), tanh within 3e-7 (see [`crate::math`]).

use crate::simd::multiversion;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

multiversion! {
    /// Exact GELU in place, on one chunk.
    pub(crate) fn gelu_erf_chunk_isa(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = crate::math::gelu_erf(*v);
        }
    }
}

multiversion! {
    /// Tanh-form GELU in place, on one chunk.
    pub(crate) fn gelu_tanh_chunk_isa(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = crate::math::gelu_tanh(*v);
        }
    }
}

multiversion! {
    /// tanh in place (BERT's pooler).
    pub fn tanh / tanh_isa(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = crate::math::tanh(*v);
        }
    }
}

multiversion! {
    /// `out = GELU(input) · gate`, one row.
    fn geglu_row_isa(out: &mut [f32], input: &[f32], gate: &[f32]) {
        for ((o, &a), &g) in out.iter_mut().zip(input).zip(gate) {
            *o = crate::math::gelu_erf(a) * g;
        }
    }
}

/// GeGLU: `out (rows, f) = GELU(input) · gate` where each row of `x (rows, 2f)` holds `input`
/// then `gate` (ModernBERT's `input, gate = Wi(x).chunk(2, dim=-1)`; exact GELU, as its
/// `hidden_activation = "gelu"`). `isa` is normally [`crate::Isa::selected`].
pub fn geglu(isa: crate::Isa, out: &mut [f32], x: &[f32], rows: usize, f: usize) {
    crate::check_shape("geglu", "output", out.len(), rows, f);
    crate::check_shape("geglu", "input", x.len(), rows, 2 * f);
    if f == 0 {
        return;
    }
    let rows_per_task = (CHUNK / f).max(1);
    out[..rows * f]
        .par_chunks_mut(f * rows_per_task)
        .zip(x[..rows * 2 * f].par_chunks(2 * f * rows_per_task))
        .for_each(|(out, x)| {
            for (o, row) in out.chunks_exact_mut(f).zip(x.chunks_exact(2 * f)) {
                let (input, gate) = row.split_at(f);
                geglu_row_isa(isa, o, input, gate);
            }
        });
}

/// Exact GELU, in place: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))` (`hidden_act = "gelu"`).
pub fn gelu_erf(x: &mut [f32]) {
    gelu_erf_isa(crate::Isa::selected(), x)
}

/// Exact GELU on a given ISA (tests).
pub fn gelu_erf_isa(isa: crate::Isa, x: &mut [f32]) {
    x.par_chunks_mut(CHUNK)
        .for_each(|c| gelu_erf_chunk_isa(isa, c));
}

/// Tanh-approximated GELU, in place (`hidden_act = "gelu_new"` / `"gelu_pytorch_tanh"`).
pub fn gelu_tanh(x: &mut [f32]) {
    gelu_tanh_isa(crate::Isa::selected(), x)
}

/// Tanh-form GELU on a given ISA (tests).
pub fn gelu_tanh_isa(isa: crate::Isa, x: &mut [f32]) {
    x.par_chunks_mut(CHUNK)
        .for_each(|c| gelu_tanh_chunk_isa(isa, c));
}
