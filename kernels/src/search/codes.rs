//! Search over compressed vectors: the scores of f32 queries against
//!
//! - **float16** rows (IEEE binary16 bits): `Σ q_i · f16(x_i)`, converted on the fly;
//! - **int8 codes** `c (n, dim)` against per-query weights `w (q, dim)`: `Σ w_i · c_i` (an
//!   index turns a query into weights so that this ranks as the inner product with the
//!   decoded vectors: `w_i = q_i · step_i`, the code's offset being the same for every row);
//! - **sign bits** packed 8 per byte: `-hamming(query bits, row bits)` (higher is closer).
//!
//! Each runs through [`super::top_k_by`]'s block loop and heap, and each body is a plain loop
//! the compiler vectorises per ISA (`multiversion!`); the twins in `reference.rs` compute the
//! same scores in f64 (and f16 through the `half` crate) for the property tests.

use super::{dot_by, top_k_by, Hit};
use crate::simd::multiversion;

/// The f32 value of IEEE binary16 bits `h`, exactly (normals, subnormals, ±0, ±inf, NaN), in
/// integer and float operations that vectorise: the exponent and mantissa shifted into f32's
/// places, then rescaled by 2¹¹² (f32's exponent bias less f16's), which also gives the
/// subnormals their value; infinities and NaNs get f32's all-ones exponent.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7fff;
    let scaled = f32::from_bits(magnitude << 13) * f32::from_bits(0x7780_0000); // × 2^112
    let special = f32::from_bits((magnitude << 13) | 0x7f80_0000);
    let value = if magnitude >= 0x7c00 { special } else { scaled };
    f32::from_bits(value.to_bits() | sign)
}

/// The number of differing bits of `a` and `b` (64 at a time, then byte by byte).
#[inline(always)]
pub(crate) fn hamming(a: &[u8], b: &[u8]) -> u32 {
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: u32 = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .map(|(&x, &y)| (x ^ y).count_ones())
        .sum();
    let words: u32 = wa
        .zip(wb)
        .map(|(x, y)| {
            let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
            let y = u64::from_le_bytes(y.try_into().expect("8 bytes"));
            (x ^ y).count_ones()
        })
        .sum();
    words + tail
}

multiversion! {
    /// `scores (n, q)`: `scores[r · q + j] = queries[j] · f16(rows[r])`, `rows (n, dim)` as
    /// binary16 bits.
    pub fn f16_products / f16_products_isa(queries: &[f32], rows: &[u16], scores: &mut [f32], dim: usize) {
        let q = queries.len() / dim;
        for (row, out) in rows.chunks_exact(dim).zip(scores.chunks_exact_mut(q)) {
            for (query, s) in queries.chunks_exact(dim).zip(out.iter_mut()) {
                *s = dot_by(query, row, f16_to_f32);
            }
        }
    }
}

multiversion! {
    /// `scores (n, q)`: `scores[r · q + j] = weights[j] · codes[r]`, `codes (n, dim)` int8.
    pub fn int8_products / int8_products_isa(weights: &[f32], codes: &[i8], scores: &mut [f32], dim: usize) {
        let q = weights.len() / dim;
        for (row, out) in codes.chunks_exact(dim).zip(scores.chunks_exact_mut(q)) {
            for (w, s) in weights.chunks_exact(dim).zip(out.iter_mut()) {
                *s = dot_by(w, row, |c| c as f32);
            }
        }
    }
}

multiversion! {
    /// `scores (n, q)`: `scores[r · q + j] = -hamming(queries[j], rows[r])`, each row `bytes`
    /// bytes of packed bits.
    pub fn hamming_products / hamming_products_isa(queries: &[u8], rows: &[u8], scores: &mut [f32], bytes: usize) {
        let q = queries.len() / bytes;
        for (row, out) in rows.chunks_exact(bytes).zip(scores.chunks_exact_mut(q)) {
            for (query, s) in queries.chunks_exact(bytes).zip(out.iter_mut()) {
                *s = -(hamming(query, row) as f32);
            }
        }
    }
}

/// `(q, n)` of `q` queries and `n` rows of `width` values, checked: both whole rows.
fn rows_of(what: &str, queries: usize, rows: usize, width: usize) -> (usize, usize) {
    assert!(width > 0, "{what}: the row width must be positive");
    assert!(
        queries.is_multiple_of(width) && rows.is_multiple_of(width),
        "{what}: queries ({queries}) and rows ({rows}) must be whole rows of {width}"
    );
    (queries / width, rows / width)
}

/// [`super::top_k_inner_product`] over float16 rows (`rows (n, dim)` binary16 bits).
pub fn top_k_f16(queries: &[f32], rows: &[u16], dim: usize, k: usize) -> Vec<Vec<Hit>> {
    top_k_f16_isa(crate::Isa::selected(), queries, rows, dim, k)
}

/// [`top_k_f16`] on a given ISA (tests).
pub fn top_k_f16_isa(
    isa: crate::Isa,
    queries: &[f32],
    rows: &[u16],
    dim: usize,
    k: usize,
) -> Vec<Vec<Hit>> {
    let (q, n) = rows_of("top_k_f16", queries.len(), rows.len(), dim);
    top_k_by(n, q, k, |block, scores| {
        let block = &rows[block.start * dim..block.end * dim];
        f16_products_isa(isa, queries, block, scores, dim);
    })
}

/// The `k` int8 rows with the largest `weights[j] · codes[r]` for each query's weights
/// (`weights (q, dim)`, `codes (n, dim)`), best first: an int8 index's candidates.
pub fn top_k_int8(weights: &[f32], codes: &[i8], dim: usize, k: usize) -> Vec<Vec<Hit>> {
    top_k_int8_isa(crate::Isa::selected(), weights, codes, dim, k)
}

/// [`top_k_int8`] on a given ISA (tests).
pub fn top_k_int8_isa(
    isa: crate::Isa,
    weights: &[f32],
    codes: &[i8],
    dim: usize,
    k: usize,
) -> Vec<Vec<Hit>> {
    let (q, n) = rows_of("top_k_int8", weights.len(), codes.len(), dim);
    top_k_by(n, q, k, |block, scores| {
        let block = &codes[block.start * dim..block.end * dim];
        int8_products_isa(isa, weights, block, scores, dim);
    })
}

/// The `k` rows of packed bits nearest each query's bits by Hamming distance (`queries (q,
/// bytes)`, `rows (n, bytes)`), nearest first; a hit's score is minus the distance.
pub fn top_k_hamming(queries: &[u8], rows: &[u8], bytes: usize, k: usize) -> Vec<Vec<Hit>> {
    top_k_hamming_isa(crate::Isa::selected(), queries, rows, bytes, k)
}

/// [`top_k_hamming`] on a given ISA (tests).
pub fn top_k_hamming_isa(
    isa: crate::Isa,
    queries: &[u8],
    rows: &[u8],
    bytes: usize,
    k: usize,
) -> Vec<Vec<Hit>> {
    let (q, n) = rows_of("top_k_hamming", queries.len(), rows.len(), bytes);
    top_k_by(n, q, k, |block, scores| {
        let block = &rows[block.start * bytes..block.end * bytes];
        hamming_products_isa(isa, queries, block, scores, bytes);
    })
}
