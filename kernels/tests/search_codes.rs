//! Search over compressed vectors against the f64 twins of `reference.rs`: float16 rows
//! (decoded by the `half` crate there), int8 codes against f32 weights, and Hamming distance
//! over packed bits counted bit by bit; on every ISA the CPU has, random shapes with odd sizes,
//! edge values, and the top k against the reference's ranking.

use densa_kernels::{self as k, reference, search};
mod common;

use common::{f16_rows, i8_codes, values, with_threads};
use proptest::prelude::*;

/// Every binary16 bit pattern decodes as the `half` crate decodes it (NaN as NaN).
#[test]
fn every_f16_bit_pattern_decodes_exactly() {
    for bits in 0..=u16::MAX {
        let (got, want) = (
            search::f16_to_f32(bits),
            half::f16::from_bits(bits).to_f32(),
        );
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{bits:#06x}: {got:e} vs {want:e}"
        );
    }
}

/// Checks that `got (n, q)` is `want[r][j]` within `(terms + 2) · ε · magnitude(r, j)`.
fn check_products(
    got: &[f32],
    want: &[Vec<f64>],
    q: usize,
    terms: usize,
    magnitude: impl Fn(usize, usize) -> f64,
    what: &str,
) -> Result<(), TestCaseError> {
    for (r, row) in want.iter().enumerate() {
        for (j, &w) in row.iter().enumerate() {
            let g = got[r * q + j] as f64;
            let tolerance = (terms as f64 + 2.0) * f32::EPSILON as f64 * magnitude(r, j) + 1e-30;
            prop_assert!((g - w).abs() <= tolerance, "{what} [{r}, {j}]: {g} vs {w}");
        }
    }
    Ok(())
}

/// The top k of `want (n, q)` for query `j` must be the hits: each hit's score its row's true
/// score, and ranked as the reference ranks (within `tolerance`).
fn check_top_k(
    hits: &[Vec<k::Hit>],
    want: &[Vec<f64>],
    top: usize,
    tolerance: f64,
    what: &str,
) -> Result<(), TestCaseError> {
    let n = want.len();
    for (j, hits) in hits.iter().enumerate() {
        prop_assert_eq!(hits.len(), top.min(n));
        let mut exact: Vec<f64> = want.iter().map(|row| row[j]).collect();
        exact.sort_by(|a, b| b.total_cmp(a));
        for (rank, hit) in hits.iter().enumerate() {
            prop_assert!(
                (hit.score as f64 - want[hit.index][j]).abs() <= tolerance,
                "{what}: row {} score",
                hit.index
            );
            prop_assert!(
                (hit.score as f64 - exact[rank]).abs() <= tolerance,
                "{what}: rank {rank}"
            );
            if rank > 0 {
                let (before, this) = (&hits[rank - 1], hit);
                prop_assert!(
                    before.score > this.score
                        || (before.score == this.score && before.index < this.index),
                    "{what}: order at rank {rank}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(40, "tests/search_codes.proptest-regressions"))]

    #[test]
    fn f16_products_match_the_reference_on_every_isa(
        (q, n, dim, queries, rows) in (1usize..4, 0usize..60, 1usize..90)
            .prop_flat_map(|(q, n, d)| (Just(q), Just(n), Just(d), values(q * d), f16_rows(n * d))),
    ) {
        let want = reference::f16_products(&queries, &rows, dim);
        let magnitude = |r: usize, j: usize| -> f64 {
            (0..dim).map(|i| (half::f16::from_bits(rows[r * dim + i]).to_f64() * queries[j * dim + i] as f64).abs()).sum()
        };
        for &isa in k::Isa::available() {
            let mut scores = vec![f32::NAN; n * q];
            search::f16_products_isa(isa, &queries, &rows, &mut scores, dim);
            check_products(&scores, &want, q, dim, magnitude, &format!("{isa:?} f16"))?;
        }
    }

    #[test]
    fn int8_products_match_the_reference_on_every_isa(
        (q, n, dim, weights, codes) in (1usize..4, 0usize..60, 1usize..90)
            .prop_flat_map(|(q, n, d)| (Just(q), Just(n), Just(d), values(q * d), i8_codes(n * d))),
    ) {
        let want = reference::int8_products(&weights, &codes, dim);
        let magnitude = |r: usize, j: usize| -> f64 {
            (0..dim).map(|i| (codes[r * dim + i] as f64 * weights[j * dim + i] as f64).abs()).sum()
        };
        for &isa in k::Isa::available() {
            let mut scores = vec![f32::NAN; n * q];
            search::int8_products_isa(isa, &weights, &codes, &mut scores, dim);
            check_products(&scores, &want, q, dim, magnitude, &format!("{isa:?} int8"))?;
        }
    }

    #[test]
    fn hamming_distances_are_the_bit_by_bit_count_on_every_isa(
        (q, n, bytes, queries, rows) in (1usize..4, 0usize..60, 1usize..40)
            .prop_flat_map(|(q, n, b)| (Just(q), Just(n), Just(b), prop::collection::vec(any::<u8>(), q * b), prop::collection::vec(any::<u8>(), n * b))),
    ) {
        let want = reference::hamming_products(&queries, &rows, bytes);
        for &isa in k::Isa::available() {
            let mut scores = vec![f32::NAN; n * q];
            search::hamming_products_isa(isa, &queries, &rows, &mut scores, bytes);
            for (r, row) in want.iter().enumerate() {
                for (j, &w) in row.iter().enumerate() {
                    prop_assert_eq!(scores[r * q + j] as f64, w, "{:?} [{}, {}]", isa, r, j);
                }
            }
        }
    }

    #[test]
    fn top_k_of_every_kind_is_the_reference_top_k(
        (q, n, dim, queries, rows, codes) in (1usize..3, 1usize..2500, 1usize..24)
            .prop_flat_map(|(q, n, d)| (Just(q), Just(n), Just(d), values(q * d), f16_rows(n * d), i8_codes(n * d))),
        top in 1usize..25,
        threads in 1usize..4,
    ) {
        // Bits: the codes' and the queries' bytes, as many as the rows need.
        let bytes = dim.div_ceil(8);
        let bits: Vec<u8> = codes.iter().map(|&c| c as u8).chain(std::iter::repeat(0x5a)).take(n * bytes).collect();
        let query_bits: Vec<u8> = queries.iter().map(|v| v.to_bits() as u8).chain(std::iter::repeat(0xa5)).take(q * bytes).collect();
        for &isa in k::Isa::available() {
            let f16 = with_threads(threads, || search::top_k_f16_isa(isa, &queries, &rows, dim, top));
            let want = reference::f16_products(&queries, &rows, dim);
            let largest = want.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
            check_top_k(&f16, &want, top, 1e-4 * largest, &format!("{isa:?} f16"))?;
            let int8 = with_threads(threads, || search::top_k_int8_isa(isa, &queries, &codes, dim, top));
            let want = reference::int8_products(&queries, &codes, dim);
            let largest = want.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
            check_top_k(&int8, &want, top, 1e-4 * largest, &format!("{isa:?} int8"))?;
            let hamming = with_threads(threads, || search::top_k_hamming_isa(isa, &query_bits, &bits, bytes, top));
            let want = reference::hamming_products(&query_bits, &bits, bytes);
            check_top_k(&hamming, &want, top, 0.0, &format!("{isa:?} hamming"))?;
        }
    }
}

/// Hand-computed: Hamming over 12 bits packed in 2 bytes, ties to the lower row.
#[test]
fn hamming_top_k_by_hand() {
    let rows = [
        0b0000_0000u8,
        0b0000,
        0b1111_0000,
        0b0000,
        0b0000_0001,
        0b0001,
        0b0000_0000,
        0b0000,
    ];
    // Query 0b0000_0001, 0b0000: rows 0, 2 and 3 differ from it in one bit (ties go to the
    // lower row), row 1 in five.
    let hits = search::top_k_hamming(&[0b0000_0001, 0b0000], &rows, 2, 4);
    let got: Vec<(usize, f32)> = hits[0].iter().map(|h| (h.index, h.score)).collect();
    assert_eq!(got, vec![(0, -1.0), (2, -1.0), (3, -1.0), (1, -5.0)]);
}
