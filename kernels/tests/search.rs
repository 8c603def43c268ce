//! Exact inner-product search against the f64 reference: scores within rounding, the top k
//! the reference's top k (up to near-ties), and a hand-computed ranking with ties.

use densa_kernels::{self as k, reference, search};
mod common;

use common::{values, with_threads};
use proptest::prelude::*;

proptest! {
    #![proptest_config(common::proptest_config(40, "tests/search.proptest-regressions"))]

    #[test]
    fn inner_products_match_reference_on_every_isa(
        (q, n, dim, queries, vectors) in (1usize..5, 0usize..70, 1usize..100)
            .prop_flat_map(|(q, n, d)| (Just(q), Just(n), Just(d), values(q * d), values(n * d))),
    ) {
        let want = reference::inner_products(&queries, &vectors, dim);
        let magnitude = |r: usize, j: usize| -> f64 {
            (0..dim).map(|i| (vectors[r * dim + i] as f64 * queries[j * dim + i] as f64).abs()).sum()
        };
        for &isa in k::Isa::available() {
            let mut scores = vec![f32::NAN; n * q];
            search::inner_products_isa(isa, &queries, &vectors, &mut scores, dim);
            for r in 0..n {
                for j in 0..q {
                    let (g, w) = (scores[r * q + j] as f64, want[r][j]);
                    prop_assert!((g - w).abs() <= 1e-6 * (1.0 + magnitude(r, j)), "{isa:?} [{r}, {j}]: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn top_k_is_the_reference_top_k(
        (q, n, dim, queries, vectors) in (1usize..4, 1usize..3000, 1usize..40)
            .prop_flat_map(|(q, n, d)| (Just(q), Just(n), Just(d), values(q * d), values(n * d))),
        top in 1usize..30,
        threads in 1usize..4,
    ) {
        let want = reference::inner_products(&queries, &vectors, dim);
        for &isa in k::Isa::available() {
            let got = with_threads(threads, || search::top_k_inner_product_isa(isa, &queries, &vectors, dim, top));
            prop_assert_eq!(got.len(), q);
            for (j, hits) in got.iter().enumerate() {
                prop_assert_eq!(hits.len(), top.min(n));
                let mut exact: Vec<f64> = want.iter().map(|row| row[j]).collect();
                exact.sort_by(|a, b| b.total_cmp(a));
                let tolerance = 1e-4 * (1.0 + exact[0].abs());
                for (rank, hit) in hits.iter().enumerate() {
                    // Each hit's score is its vector's true score, and ranks as the reference's.
                    prop_assert!((hit.score as f64 - want[hit.index][j]).abs() <= tolerance);
                    prop_assert!((hit.score as f64 - exact[rank]).abs() <= tolerance, "{isa:?} rank {rank}");
                    if rank > 0 {
                        prop_assert!(hits[rank - 1].score >= hit.score, "sorted best first");
                    }
                    // The gold-rank kernel puts this row where the search put it.
                    let mut query_rows = vec![0.0f32; 0];
                    query_rows.extend_from_slice(&queries[j * dim..(j + 1) * dim]);
                    prop_assert_eq!(search::ranks_of(&query_rows, &vectors, dim, &[hit.index]), vec![rank + 1]);
                }
            }
        }
    }
}

#[test]
fn top_k_hand_computed_with_ties() {
    // dim 2, query (1, 0): scores are the first coordinates 3, 5, 5, -1, 4, NaN.
    let vectors = [
        3.0,
        9.0,
        5.0,
        0.0,
        5.0,
        1.0,
        -1.0,
        0.0,
        4.0,
        2.0,
        f32::NAN,
        0.0,
    ];
    let hits = k::top_k_inner_product(&[1.0, 0.0], &vectors, 2, 4);
    let ranked: Vec<(usize, f32)> = hits[0].iter().map(|h| (h.index, h.score)).collect();
    // The tie at 5 goes to the lower index; NaN ranks last (outside the top 4).
    assert_eq!(ranked, vec![(1, 5.0), (2, 5.0), (4, 4.0), (0, 3.0)]);
    // k larger than the collection: everything, NaN last.
    let all = k::top_k_inner_product(&[1.0, 0.0], &vectors, 2, 10);
    assert_eq!(all[0].len(), 6);
    assert_eq!(all[0][5].index, 5);
    // Ranks of given rows, in the same order: index 2 after its tie (index 1), -1 fifth,
    // NaN last.
    let ranks = search::ranks_of(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &vectors, 2, &[2, 3, 5]);
    assert_eq!(ranks, vec![2, 5, 6]);
    // No vectors, or k = 0: empty lists, one per query.
    assert_eq!(
        k::top_k_inner_product(&[1.0, 0.0, 0.0, 1.0], &[], 2, 3),
        vec![vec![], vec![]]
    );
    assert_eq!(
        k::top_k_inner_product(&[1.0, 0.0], &vectors, 2, 0),
        vec![vec![]]
    );
}
