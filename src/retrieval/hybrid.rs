//! Hybrid retrieval over bge-m3's three outputs, scored as FlagEmbedding's `compute_score`
//! scores a (query, passage) pair:
//!
//! ```text
//! dense   = q_dense · p_dense                       (both normalised: the cosine)
//! sparse  = Σ_{t ∈ q ∩ p} q_w[t] · p_w[t]           (lexical matching score)
//! colbert = mean_i max_j q_colbert[i] · p_colbert[j] (MaxSim over the query's vectors)
//! hybrid  = (w_d · dense + w_s · sparse + w_c · colbert) / (w_d + w_s + w_c)
//! ```
//!
//! A search finds candidates where scanning is cheap (the dense top-k by inner product, the
//! sparse top-k through an inverted index, [`SparseIndex`]), then scores every candidate
//! exactly by all the outputs the collection holds and ranks them by the weighted sum
//! ([`HybridCollection::search`]). With as many candidates as passages it is the brute-force
//! ranking of `compute_score` (the tests hold it to that).

use crate::error::{Error, Result};
use crate::heads::m3::{colbert_score, sparse_score, M3Output};
use densa_kernels::search::top_k_inner_product;

/// Passages' sparse vectors by token: for each token id, the passages holding it and their
/// weights (CSR: `starts[t]..starts[t + 1]` into `passages` and `weights`).
#[derive(Debug, Clone, Default)]
pub struct SparseIndex {
    starts: Vec<usize>,
    passages: Vec<u32>,
    weights: Vec<f32>,
    rows: usize,
}

impl SparseIndex {
    /// The inverted index of `vectors` (one per passage, `(token id, weight)` with distinct
    /// ids, as [`M3Output::sparse`]).
    pub fn build<'a>(vectors: impl ExactSizeIterator<Item = &'a [(u32, f32)]> + Clone) -> Self {
        let rows = vectors.len();
        let vocabulary = vectors
            .clone()
            .flat_map(|v| v.iter().map(|&(id, _)| id as usize + 1))
            .max()
            .unwrap_or(0);
        // Counting sort by token id: postings in passage order within each token.
        let mut starts = vec![0usize; vocabulary + 1];
        for vector in vectors.clone() {
            for &(id, _) in vector {
                starts[id as usize + 1] += 1;
            }
        }
        for t in 0..vocabulary {
            starts[t + 1] += starts[t];
        }
        let mut next = starts.clone();
        let total = starts[vocabulary];
        let (mut passages, mut weights) = (vec![0u32; total], vec![0f32; total]);
        for (row, vector) in vectors.enumerate() {
            for &(id, weight) in vector {
                let at = &mut next[id as usize];
                passages[*at] = row as u32;
                weights[*at] = weight;
                *at += 1;
            }
        }
        SparseIndex {
            starts,
            passages,
            weights,
            rows,
        }
    }

    /// Passages indexed.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The `k` passages with the largest lexical matching score with `query`, best first
    /// (ties: lower row first), scores in f64; passages sharing no token with the query are
    /// left out.
    pub fn search(&self, query: &[(u32, f32)], k: usize) -> Vec<(usize, f64)> {
        let mut scores = vec![0.0f64; self.rows];
        let mut touched = vec![false; self.rows];
        for &(id, q) in query {
            let id = id as usize;
            if id + 1 >= self.starts.len() {
                continue;
            }
            for at in self.starts[id]..self.starts[id + 1] {
                let row = self.passages[at] as usize;
                scores[row] += q as f64 * self.weights[at] as f64;
                touched[row] = true;
            }
        }
        let mut hits: Vec<(usize, f64)> = (0..self.rows)
            .filter(|&row| touched[row])
            .map(|row| (row, scores[row]))
            .collect();
        rank(&mut hits);
        hits.truncate(k);
        hits
    }
}

/// The rows a search scores, ascending and distinct: the `dense` search's candidates when the
/// dense score is weighted, the `sparse` (inverted index) search's when the lexical one is,
/// every one of the `len` passages when only ColBERT is.
pub(super) fn candidate_rows(
    weights: &HybridWeights,
    len: usize,
    dense: impl FnOnce() -> Result<Vec<usize>>,
    sparse: impl FnOnce() -> Vec<(usize, f64)>,
) -> Result<Vec<usize>> {
    let mut rows: Vec<usize> = Vec::new();
    if weights.dense > 0.0 && len > 0 {
        rows.extend(dense()?);
    }
    if weights.sparse > 0.0 {
        rows.extend(sparse().iter().map(|h| h.0));
    }
    if weights.dense == 0.0 && weights.sparse == 0.0 {
        rows.extend(0..len);
    }
    rows.sort_unstable();
    rows.dedup();
    Ok(rows)
}

/// Row `row` scored against `query`: the dense inner product (f64) with the passage's dense
/// vector, the lexical score with its weights, its ColBERT score when one was computed, fused.
pub(super) fn score_row(
    row: usize,
    query: &M3Output,
    (dense, sparse, colbert): (&[f32], &[(u32, f32)], Option<f64>),
    weights: &HybridWeights,
) -> HybridHit {
    let dot: f64 = query
        .dense
        .iter()
        .zip(dense)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum();
    fuse(
        row,
        dot,
        sparse_score(&query.sparse, sparse),
        colbert,
        weights,
    )
}

/// Best first, ties by lower row, NaN scores last.
pub(super) fn rank_hits(hits: &mut [HybridHit]) {
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    hits.sort_by(|a, b| {
        key(b.score)
            .total_cmp(&key(a.score))
            .then(a.row.cmp(&b.row))
    });
}

/// Best first, ties by lower row.
fn rank(hits: &mut [(usize, f64)]) {
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// The weights of the fused score (FlagEmbedding's `weights_for_different_modes`, dense,
/// sparse, ColBERT). A weight of 0 leaves that output out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridWeights {
    pub dense: f64,
    pub sparse: f64,
    pub colbert: f64,
}

impl Default for HybridWeights {
    /// FlagEmbedding's README example for hybrid retrieval: 0.4, 0.2, 0.4.
    fn default() -> Self {
        HybridWeights {
            dense: 0.4,
            sparse: 0.2,
            colbert: 0.4,
        }
    }
}

impl HybridWeights {
    /// Refuses a negative or non-finite weight, or all three 0.
    pub fn check(&self) -> Result<()> {
        let all = [self.dense, self.sparse, self.colbert];
        if all.iter().any(|w| !w.is_finite() || *w < 0.0) || all.iter().sum::<f64>() <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "weights (dense, sparse, colbert) {all:?}: each must be ≥ 0 and their sum above 0"
            )));
        }
        Ok(())
    }
}

/// Row `row`'s hit: its scores and their weighted mean (`colbert` `None`: not scored, and
/// its weight left out of the mean).
pub fn fuse(
    row: usize,
    dense: f64,
    sparse: f64,
    colbert: Option<f64>,
    weights: &HybridWeights,
) -> HybridHit {
    let colbert_weight = colbert.map_or(0.0, |_| weights.colbert);
    let sum = weights.dense + weights.sparse + colbert_weight;
    let weighted = weights.dense * dense
        + weights.sparse * sparse
        + colbert.map_or(0.0, |c| c * colbert_weight);
    HybridHit {
        row,
        score: if sum > 0.0 { weighted / sum } else { 0.0 },
        dense,
        sparse,
        colbert,
    }
}

/// One passage found: its row and each score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridHit {
    pub row: usize,
    pub score: f64,
    pub dense: f64,
    pub sparse: f64,
    /// `None` when the collection holds no ColBERT vectors or its weight is 0.
    pub colbert: Option<f64>,
}

/// A collection of passages with bge-m3's outputs, searchable by any mix of them.
pub struct HybridCollection {
    /// `(n, dim)` row-major normalised dense vectors.
    dense: Vec<f32>,
    dim: usize,
    sparse: Vec<Vec<(u32, f32)>>,
    inverted: SparseIndex,
    /// The passages' outputs for ColBERT rescoring (`None`: not kept).
    colbert: Option<Vec<M3Output>>,
}

impl HybridCollection {
    /// The collection of `outputs` (one per passage, in row order); `keep_colbert` keeps the
    /// ColBERT vectors for rescoring (they are most of the memory: one vector per token).
    pub fn new(outputs: Vec<M3Output>, keep_colbert: bool) -> Result<Self> {
        let dim = outputs.first().map_or(0, |o| o.dense.len());
        if let Some(i) = outputs.iter().position(|o| o.dense.len() != dim) {
            return Err(Error::InvalidInput(format!(
                "passage {i} has a {}-dimensional dense vector, passage 0 a {dim}-dimensional one",
                outputs[i].dense.len()
            )));
        }
        let dense: Vec<f32> = outputs
            .iter()
            .flat_map(|o| o.dense.iter().copied())
            .collect();
        let sparse: Vec<Vec<(u32, f32)>> = outputs.iter().map(|o| o.sparse.clone()).collect();
        let inverted = SparseIndex::build(sparse.iter().map(Vec::as_slice));
        let colbert = keep_colbert.then_some(outputs);
        Ok(HybridCollection {
            dense,
            dim,
            sparse,
            inverted,
            colbert,
        })
    }

    /// Passages held.
    pub fn len(&self) -> usize {
        self.sparse.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sparse.is_empty()
    }

    /// The `k` best passages for `query` by the weighted score: candidates are the
    /// `candidates` best by dense inner product (if its weight is not 0) and by lexical score
    /// (likewise), each then scored exactly by every output with a weight (ColBERT only if the
    /// collection kept its vectors); best first, ties by lower row.
    pub fn search(
        &self,
        query: &M3Output,
        k: usize,
        candidates: usize,
        weights: &HybridWeights,
    ) -> Result<Vec<HybridHit>> {
        if query.dense.len() != self.dim {
            return Err(Error::InvalidInput(format!(
                "the query's dense vector has {} dimensions, the collection's {}",
                query.dense.len(),
                self.dim
            )));
        }
        weights.check()?;
        let use_colbert = weights.colbert > 0.0 && self.colbert.is_some();
        if weights.dense + weights.sparse <= 0.0 && !use_colbert {
            return Err(Error::InvalidInput(
                "only ColBERT is weighted, and this collection keeps no ColBERT vectors".into(),
            ));
        }
        let candidates = candidates.max(k).min(self.len());
        let rows = candidate_rows(
            weights,
            self.len(),
            || {
                let hits = top_k_inner_product(&query.dense, &self.dense, self.dim, candidates);
                Ok(hits[0].iter().map(|h| h.index).collect())
            },
            || self.inverted.search(&query.sparse, candidates),
        )?;
        let mut hits: Vec<HybridHit> = rows
            .into_iter()
            .map(|row| {
                let dense = &self.dense[row * self.dim..(row + 1) * self.dim];
                let colbert = use_colbert
                    .then(|| colbert_score(query, &self.colbert.as_ref().expect("kept")[row]));
                score_row(row, query, (dense, &self.sparse[row], colbert), weights)
            })
            .collect();
        rank_hits(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverted_index_scores_as_the_definition() {
        let vectors: [Vec<(u32, f32)>; 4] = [
            vec![(1, 0.5), (4, 1.0)],
            vec![],
            vec![(4, 0.25), (9, 2.0)],
            vec![(2, 1.0)],
        ];
        let index = SparseIndex::build(vectors.iter().map(Vec::as_slice));
        assert_eq!(index.len(), 4);
        // Query: token 4 (2.0), token 9 (1.0), token 100 (unknown).
        let hits = index.search(&[(4, 2.0), (9, 1.0), (100, 3.0)], 10);
        // Row 2: 0.25·2 + 2·1 = 2.5; row 0: 1·2 = 2; rows 1 and 3 share nothing.
        assert_eq!(hits, vec![(2, 2.5), (0, 2.0)]);
        assert_eq!(index.search(&[(4, 2.0)], 1), vec![(0, 2.0)]);
        assert!(SparseIndex::build(std::iter::empty::<&[(u32, f32)]>())
            .search(&[(1, 1.0)], 3)
            .is_empty());
    }
}
