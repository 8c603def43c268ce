//! Exact maximum-inner-product search: the scores of queries against a matrix of vectors, and
//! the best `k` of them per query, kept in a bounded heap, multi-threaded over blocks of the
//! matrix. Memory-bound: each block of vectors is read once for all queries.
//!
//! The vectors may be stored as float32 (here), or compressed (`codes.rs`): float16, int8
//! codes scored against per-dimension query weights, or sign bits compared by Hamming
//! distance. Every kind runs through the same block loop and heap ([`top_k_by`]).

mod codes;
pub mod graph;

pub use codes::{
    f16_products, f16_products_isa, f16_to_f32, hamming_products, hamming_products_isa,
    int8_products, int8_products_isa, top_k_f16, top_k_f16_isa, top_k_hamming, top_k_hamming_isa,
    top_k_int8, top_k_int8_isa,
};

use crate::simd::multiversion;
use crate::simd::LANES;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

/// Vectors per parallel task: 1024 × 768 floats = 3 MiB, read once per task.
const BLOCK_ROWS: usize = 1024;

/// One search result: the row of the vector in the matrix and its inner product with the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub index: usize,
    pub score: f32,
}

impl Hit {
    /// The ranking order: higher score first, then lower index (ties are deterministic); NaN
    /// ranks last.
    pub fn rank_cmp(&self, other: &Hit) -> Ordering {
        let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
        key(other.score)
            .total_cmp(&key(self.score))
            .then(self.index.cmp(&other.index))
    }
}

/// Heap entry ordered so that the heap's top is the worst hit kept.
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // "Greater" = ranks later = worse.
        self.0.rank_cmp(&other.0)
    }
}

/// The best `k` hits seen so far for one query.
struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            // k is at most the number of vectors; a task sees at most BLOCK_ROWS of them.
            heap: BinaryHeap::with_capacity(k.min(BLOCK_ROWS) + 1),
        }
    }

    fn offer(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(hit));
        } else if let Some(worst) = self.heap.peek() {
            if hit.rank_cmp(&worst.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Worst(hit));
            }
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for Worst(hit) in other.heap {
            self.offer(hit);
        }
        self
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        hits.sort_by(Hit::rank_cmp);
        hits
    }
}

/// `Σ a[i] · widen(b[i])` in `LANES` partial sums: vectorises for f32, f16 bits (widened by
/// bit operations) and i8 codes alike, the one dot product of every storage kind.
#[inline(always)]
pub(crate) fn dot_by<T: Copy>(a: &[f32], b: &[T], widen: impl Fn(T) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x * widen(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * widen(y[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

multiversion! {
    /// The body of [`inner_products`], without the shape checks.
    fn inner_products_body_isa(queries: &[f32], vectors: &[f32], scores: &mut [f32], dim: usize) {
        let q = queries.len() / dim;
        for (row, out) in vectors.chunks_exact(dim).zip(scores.chunks_exact_mut(q)) {
            for (query, s) in queries.chunks_exact(dim).zip(out.iter_mut()) {
                *s = dot_by(query, row, |x| x);
            }
        }
    }
}

/// `scores (n, q)`: `scores[r · q + j] = vectors[r] · queries[j]`, for `queries (q, dim)` and
/// `vectors (n, dim)`, one thread.
pub fn inner_products(queries: &[f32], vectors: &[f32], scores: &mut [f32], dim: usize) {
    inner_products_isa(crate::Isa::selected(), queries, vectors, scores, dim)
}

/// [`inner_products`] on a given ISA (tests).
pub fn inner_products_isa(
    isa: crate::Isa,
    queries: &[f32],
    vectors: &[f32],
    scores: &mut [f32],
    dim: usize,
) {
    let (q, n) = check_shapes(queries, vectors, dim);
    crate::check_shape("inner_products", "scores", scores.len(), n, q);
    if q == 0 || n == 0 {
        return;
    }
    inner_products_body_isa(isa, queries, vectors, &mut scores[..n * q], dim)
}

/// `(q, n)` of the shapes, checked: both buffers whole rows of `dim`.
fn check_shapes(queries: &[f32], vectors: &[f32], dim: usize) -> (usize, usize) {
    assert!(dim > 0, "search: dim must be positive");
    assert!(
        queries.len().is_multiple_of(dim) && vectors.len().is_multiple_of(dim),
        "search: queries ({}) and vectors ({}) must be whole rows of {dim}",
        queries.len(),
        vectors.len()
    );
    (queries.len() / dim, vectors.len() / dim)
}

/// The `k` vectors with the largest inner product with each query, best first (ties: lower
/// index first), exact. `queries (q, dim)`, `vectors (n, dim)`; runs on the current rayon
/// pool, blocks of 1024 vectors per task.
pub fn top_k_inner_product(
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    k: usize,
) -> Vec<Vec<Hit>> {
    top_k_inner_product_isa(crate::Isa::selected(), queries, vectors, dim, k)
}

/// [`top_k_inner_product`] on a given ISA (tests).
pub fn top_k_inner_product_isa(
    isa: crate::Isa,
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    k: usize,
) -> Vec<Vec<Hit>> {
    let (q, n) = check_shapes(queries, vectors, dim);
    top_k_by(n, q, k, |rows, scores| {
        let block = &vectors[rows.start * dim..rows.end * dim];
        inner_products_body_isa(isa, queries, block, scores, dim);
    })
}

/// The best `k` of `n` stored rows for each of `q` queries, best first (ties: lower row first;
/// NaN last), where `score(rows, scores)` writes `scores[(r - rows.start) · q + j]`, the score
/// of row `r` for query `j`, for a block of rows: the one loop of every storage kind. Runs on
/// the current rayon pool, blocks of 1024 rows per task.
pub fn top_k_by(
    n: usize,
    q: usize,
    k: usize,
    score: impl Fn(Range<usize>, &mut [f32]) + Sync,
) -> Vec<Vec<Hit>> {
    // More than n results cannot exist: a huge k costs nothing.
    let k = k.min(n);
    if k == 0 || q == 0 {
        return vec![Vec::new(); q];
    }
    let empty = || (0..q).map(|_| TopK::new(k)).collect::<Vec<_>>();
    let best = fold_rows(
        n,
        q,
        score,
        empty,
        |best: &mut Vec<TopK>, index, scores| {
            for (top, &score) in best.iter_mut().zip(scores) {
                top.offer(Hit { index, score });
            }
        },
        |a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect(),
    );
    best.into_iter().map(TopK::into_sorted).collect()
}

/// Scores every row against all queries, block by block on the current rayon pool, and folds
/// them into one accumulator per task (`visit(acc, row, scores of that row (q))`), merged at the
/// end. A block's rows are read once for all queries.
fn fold_rows<A: Send>(
    n: usize,
    q: usize,
    score: impl Fn(Range<usize>, &mut [f32]) + Sync,
    init: impl Fn() -> A + Sync + Send,
    visit: impl Fn(&mut A, usize, &[f32]) + Sync + Send,
    merge: impl Fn(A, A) -> A + Sync + Send,
) -> A {
    (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .fold(
            || (init(), Vec::new()),
            |(mut acc, mut scores): (A, Vec<f32>), b| {
                let rows = b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(n);
                scores.resize(rows.len() * q, 0.0);
                score(rows.clone(), &mut scores);
                for (r, row_scores) in scores.chunks_exact(q).enumerate() {
                    visit(&mut acc, rows.start + r, row_scores);
                }
                (acc, scores)
            },
        )
        .map(|(acc, _)| acc)
        .reduce(&init, &merge)
}

/// For each query `j`, the 1-based rank of vector `gold[j]` among all vectors in the order of
/// [`top_k_inner_product`] (higher score first, ties to the lower index): `1 +` the number of
/// vectors that rank before it. Scores are computed by the same kernel as the search, so the
/// rank is the position the search would give. Multi-threaded over blocks of vectors.
pub fn ranks_of(queries: &[f32], vectors: &[f32], dim: usize, gold: &[usize]) -> Vec<usize> {
    let (q, n) = check_shapes(queries, vectors, dim);
    let isa = crate::Isa::selected();
    ranks_by(n, q, gold, |rows, scores| {
        let block = &vectors[rows.start * dim..rows.end * dim];
        inner_products_body_isa(isa, queries, block, scores, dim);
    })
}

/// [`ranks_of`] for any storage: `score` as for [`top_k_by`] (each gold row's own score is
/// taken from the same function, so the rank is the position [`top_k_by`] would give).
pub fn ranks_by(
    n: usize,
    q: usize,
    gold: &[usize],
    score: impl Fn(Range<usize>, &mut [f32]) + Sync,
) -> Vec<usize> {
    assert!(
        gold.len() == q && gold.iter().all(|&g| g < n),
        "ranks_of: need one gold row below {n} per query"
    );
    if q == 0 {
        return Vec::new();
    }
    let gold_hits: Vec<Hit> = gold
        .iter()
        .enumerate()
        .map(|(j, &g)| {
            let mut scores = vec![0.0f32; q];
            score(g..g + 1, &mut scores);
            Hit {
                index: g,
                score: scores[j],
            }
        })
        .collect();
    let ahead = fold_rows(
        n,
        q,
        score,
        || vec![0usize; q],
        |ahead: &mut Vec<usize>, index, scores| {
            for ((count, &score), gold) in ahead.iter_mut().zip(scores).zip(&gold_hits) {
                if (Hit { index, score }).rank_cmp(gold) == Ordering::Less {
                    *count += 1;
                }
            }
        },
        |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
    );
    ahead.into_iter().map(|count| count + 1).collect()
}
