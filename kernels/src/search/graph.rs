//! The distances of a graph search (HNSW), for a graph library's custom-metric hook.
//!
//! A graph library calls its metric millions of times per second, each time on two stored
//! rows (or a query and a row) of the graph's width, and asks for a distance, lower is
//! closer. USearch compiled without its optional SIMD library measures with plain C++ built
//! for the baseline x86-64 (SSE2); these are the kernels of [`super`] on the ISA this CPU
//! has, chosen once when the metric is made:
//!
//! - f32 and f16 rows: `1 − a·b` (USearch's `ip`);
//! - int8 codes `c_i = x_i / s_i` with per-dimension scales `s_i`: `−Σ s_i² · a_i · b_i`, the
//!   inner product of the vectors the codes stand for (a plain `a·b` of the codes would weigh
//!   each dimension by `1 / s_i²`: neighbours found in that distorted space are not the
//!   vectors' neighbours; the query is coded like the rows);
//! - packed sign bits: the Hamming distance.
//!
//! The library hands raw pointers, so the constructors are `unsafe`: the caller promises
//! that every call gets two pointers to `width` readable values.

use super::dot_by;
use super::f16_to_f32;
use crate::isa::Isa;
use crate::simd::{multiversion, LANES};

/// A graph library's metric: two rows in, a distance out.
pub type Metric<T> = Box<dyn Fn(*const T, *const T) -> f32 + Send + Sync>;

multiversion! {
    /// `out = 1 − a·b` over f32 rows.
    pub fn ip_distance_f32_isa(a: &[f32], b: &[f32], out: &mut f32) {
        *out = 1.0 - dot_by(a, b, |x| x);
    }
}

multiversion! {
    /// `out = 1 − f16(a)·f16(b)` over rows of binary16 bits.
    pub fn ip_distance_f16_isa(a: &[u16], b: &[u16], out: &mut f32) {
        let mut sum = [0.0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(&x, &y)| f16_to_f32(x) * f16_to_f32(y))
            .sum();
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                sum[l] += f16_to_f32(x[l]) * f16_to_f32(y[l]);
            }
        }
        *out = 1.0 - (sum.iter().sum::<f32>() + tail);
    }
}

multiversion! {
    /// `out = −Σ w_i · a_i · b_i` over int8 rows (`w_i = s_i²`).
    pub fn ip_distance_i8_isa(weights: &[f32], a: &[i8], b: &[i8], out: &mut f32) {
        let mut sum = [0.0f32; LANES];
        let (cw, ca, cb) = (weights.chunks_exact(LANES), a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = cw
            .remainder()
            .iter()
            .zip(ca.remainder().iter().zip(cb.remainder()))
            .map(|(&w, (&x, &y))| w * (x as i16 * y as i16) as f32)
            .sum();
        for (w, (x, y)) in cw.zip(ca.zip(cb)) {
            for l in 0..LANES {
                sum[l] += w[l] * (x[l] as i16 * y[l] as i16) as f32;
            }
        }
        *out = -(sum.iter().sum::<f32>() + tail);
    }
}

multiversion! {
    /// `out = hamming(a, b)` over rows of packed bits.
    pub fn hamming_distance_isa(a: &[u8], b: &[u8], out: &mut f32) {
        *out = super::codes::hamming(a, b) as f32;
    }
}

/// Wraps `distance` on `width`-value slices as a metric on pointers, on this CPU's ISA.
///
/// # Safety
/// Every call of the returned metric must get two pointers, each to `width` initialised
/// values of `T` that stay valid and unwritten for the call.
unsafe fn on_pointers<T: 'static>(
    width: usize,
    distance: fn(Isa, &[T], &[T], &mut f32),
) -> Metric<T> {
    let isa = Isa::selected();
    Box::new(move |a: *const T, b: *const T| {
        // SAFETY: the constructor's caller promised two pointers to `width` valid values.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, width),
                std::slice::from_raw_parts(b, width),
            )
        };
        let mut out = 0.0;
        distance(isa, a, b, &mut out);
        out
    })
}

/// `1 − a·b` on f32 rows of `dim` values.
///
/// # Safety
/// Every call must get two pointers to `dim` readable `f32` each.
pub unsafe fn ip_f32(dim: usize) -> Metric<f32> {
    // SAFETY: the same promise, passed on.
    unsafe { on_pointers(dim, ip_distance_f32_isa) }
}

/// `1 − a·b` on rows of `dim` binary16 values (as their bits).
///
/// # Safety
/// Every call must get two pointers to `dim` readable `u16` each.
pub unsafe fn ip_f16(dim: usize) -> Metric<u16> {
    // SAFETY: the same promise, passed on.
    unsafe { on_pointers(dim, ip_distance_f16_isa) }
}

/// `−Σ s_i² · a_i · b_i` on int8 codes of `scales.len()` values (`scales`: the code's
/// per-dimension scales `s_i`).
///
/// # Safety
/// Every call must get two pointers to `scales.len()` readable `i8` each.
pub unsafe fn ip_i8(scales: &[f32]) -> Metric<i8> {
    let (isa, dim) = (Isa::selected(), scales.len());
    let weights: Vec<f32> = scales.iter().map(|s| s * s).collect();
    Box::new(move |a: *const i8, b: *const i8| {
        // SAFETY: the constructor's caller promised two pointers to `dim` valid values.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, dim),
                std::slice::from_raw_parts(b, dim),
            )
        };
        let mut out = 0.0;
        ip_distance_i8_isa(isa, &weights, a, b, &mut out);
        out
    })
}

/// The Hamming distance of rows of `bytes` bytes of packed bits.
///
/// # Safety
/// Every call must get two pointers to `bytes` readable bytes each.
pub unsafe fn hamming(bytes: usize) -> Metric<u8> {
    // SAFETY: the same promise, passed on.
    unsafe { on_pointers(bytes, hamming_distance_isa) }
}
