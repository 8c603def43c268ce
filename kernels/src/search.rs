//! Exact maximum-inner-product search: the scores of queries against a matrix of vectors, and
//! the best `k` of them per query, kept in a bounded heap, multi-threaded over blocks of the
//! matrix. Memory-bound: each block of vectors is read once for all queries.

use crate::simd::multiversion;
use crate::simd::LANES;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

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
    fn rank_cmp(&self, other: &Hit) -> Ordering {
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

/// `Σ a[i] · b[i]` in `LANES` partial sums (vectorises).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
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
                *s = dot(row, query);
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
    // More than n results cannot exist: a huge k costs nothing.
    let k = k.min(n);
    let empty = || (0..q).map(|_| TopK::new(k)).collect::<Vec<_>>();
    if k == 0 || q == 0 {
        return vec![Vec::new(); q];
    }
    let best = fold_scores(
        isa,
        queries,
        vectors,
        dim,
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

/// Scores every vector against all queries, block by block on the current rayon pool, and
/// folds them into one accumulator per task (`visit(acc, row, scores of that row (q))`), merged
/// at the end. The vectors of a block are read once for all queries.
fn fold_scores<A: Send>(
    isa: crate::Isa,
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    init: impl Fn() -> A + Sync + Send,
    visit: impl Fn(&mut A, usize, &[f32]) + Sync + Send,
    merge: impl Fn(A, A) -> A + Sync + Send,
) -> A {
    let q = queries.len() / dim;
    vectors
        .par_chunks(BLOCK_ROWS * dim)
        .enumerate()
        .fold(
            || (init(), Vec::new()),
            |(mut acc, mut scores): (A, Vec<f32>), (b, block)| {
                scores.resize(block.len() / dim * q, 0.0);
                inner_products_body_isa(isa, queries, block, &mut scores, dim);
                for (r, row_scores) in scores.chunks_exact(q).enumerate() {
                    visit(&mut acc, b * BLOCK_ROWS + r, row_scores);
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
    assert!(
        gold.len() == q && gold.iter().all(|&g| g < n),
        "ranks_of: need one gold row below {n} per query"
    );
    if q == 0 {
        return Vec::new();
    }
    let isa = crate::Isa::selected();
    let gold_hits: Vec<Hit> = gold
        .iter()
        .enumerate()
        .map(|(j, &g)| {
            let mut score = [0.0f32];
            let (query, row) = (
                &queries[j * dim..(j + 1) * dim],
                &vectors[g * dim..(g + 1) * dim],
            );
            inner_products_body_isa(isa, query, row, &mut score, dim);
            Hit {
                index: g,
                score: score[0],
            }
        })
        .collect();
    let ahead = fold_scores(
        isa,
        queries,
        vectors,
        dim,
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
