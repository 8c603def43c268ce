//! Elementwise activations: GELU (exact erf form and tanh form) and tanh.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

/// Exact GELU, in place: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))` (PyTorch's default,
/// `hidden_act = "gelu"`). erf is evaluated in `f64` (libm), so the result is correctly
/// rounded to within an ulp or two.
pub fn gelu_erf(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|chunk| {
        for v in chunk {
            let xf = *v as f64;
            *v = (0.5 * xf * (1.0 + libm::erf(xf * std::f64::consts::FRAC_1_SQRT_2))) as f32;
        }
    });
}

/// Tanh-approximated GELU, in place: `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`
/// (`hidden_act = "gelu_new"` or `"gelu_pytorch_tanh"`).
pub fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    x.par_chunks_mut(CHUNK).for_each(|chunk| {
        for v in chunk {
            let xf = *v as f64;
            *v = (0.5 * xf * (1.0 + (SQRT_2_OVER_PI * (xf + 0.044715 * xf * xf * xf)).tanh()))
                as f32;
        }
    });
}

/// tanh, in place (BERT's pooler).
pub fn tanh(x: &mut [f32]) {
    for v in x {
        *v = (*v as f64).tanh() as f32;
    }
}
