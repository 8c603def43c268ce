//! Elementwise activations: GELU (exact erf form and tanh form) and tanh, vectorised.
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
