//! Searching an index: the best passages of each query vector by inner product, over the
//! vectors as stored (`storage.rs`): an exact scan of float32 or float16 vectors, or a scan of
//! int8 codes or sign bits for candidates then rescored against the float vectors.

use super::reader::{Index, SearchHit};
use super::storage::VectorKind;
use crate::encoder::{Encoder, Encoding};
use crate::error::{Error, Result};
use crate::tokenizer::Input;
use densa_kernels::search::{self, Hit};
use std::ops::Range;

/// How a search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchOptions {
    /// For int8 and binary codes: candidates per result that the codes' scan (or the graph)
    /// keeps for rescoring against the float vectors (`k · rescore`; `None`: 4 for int8, 10
    /// for binary).
    pub rescore: Option<usize>,
    /// `Some(true)`: the exact scan even when the index has a graph; `Some(false)`: the graph
    /// whenever there is one; `None`: the graph for collections of at least
    /// [`ANN_MIN_ROWS`] vectors (below, the scan is as fast).
    pub exact: Option<bool>,
    /// The graph's search expansion (`ef`; `None`: the one it was built with).
    pub ef: Option<usize>,
}

/// The smallest collection the graph searches by default: below it the exact scan takes about
/// as long (measured in docs/BENCHMARKS.md) and gives the exact answer.
pub const ANN_MIN_ROWS: usize = 20_000;

impl SearchOptions {
    /// Candidates per result for `kind`'s codes.
    pub fn rescore_for(&self, kind: VectorKind) -> usize {
        let default = match kind {
            VectorKind::Binary => 10,
            _ => 4,
        };
        self.rescore.unwrap_or(default).max(1)
    }
}

impl Index {
    /// The `k` passages with the largest inner product with each query vector (`queries` is
    /// `(q, dim)` row-major), best first, with the default [`SearchOptions`]. Multi-threaded
    /// on the current rayon pool.
    pub fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<SearchHit>>> {
        self.search_with(queries, k, &SearchOptions::default())
    }

    /// [`Index::search`] with `options`: an exact scan of float32 or float16 vectors; over
    /// int8 or binary codes, a scan for `k · rescore` candidates, rescored by their exact inner
    /// products with the float vectors (`vectors.npy`).
    pub fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        options: &SearchOptions,
    ) -> Result<Vec<Vec<SearchHit>>> {
        self.check_queries(queries)?;
        let hits = match (&self.ann, &self.codes) {
            (Some(ann), _) if self.uses_graph(options) => {
                let kind = ann.options().vectors;
                let wanted = match kind {
                    VectorKind::Int8 | VectorKind::Binary => {
                        k.saturating_mul(options.rescore_for(kind))
                    }
                    VectorKind::F32 | VectorKind::F16 => k,
                };
                let wanted = wanted.min(self.len());
                let candidates = ann.candidates(queries, self.dim(), wanted, options.ef)?;
                self.rescore(queries, candidates, k)
            }
            (_, None) => self.exact(queries, k),
            (_, Some((codes, calibration))) => {
                let wanted = k.saturating_mul(options.rescore_for(self.kind));
                let candidates = match self.kind {
                    VectorKind::Int8 => {
                        let weights = calibration.query_weights(queries);
                        search::top_k_int8(&weights, codes.as_i8(), self.dim(), wanted)
                    }
                    _ => {
                        let bits = calibration.encode_all(queries);
                        search::top_k_hamming(&bits, codes.as_u8(), codes.cols(), wanted)
                    }
                };
                self.rescore(queries, candidates, k)
            }
        };
        hits.into_iter()
            .map(|hits| self.with_passages(hits))
            .collect()
    }

    /// Refuses query vectors that are not whole rows of the index's dimension.
    pub(super) fn check_queries(&self, queries: &[f32]) -> Result<()> {
        if !queries.len().is_multiple_of(self.dim()) {
            return Err(Error::InvalidInput(format!(
                "query vectors have {} values, not whole rows of the index's dimension {}",
                queries.len(),
                self.dim()
            )));
        }
        Ok(())
    }

    /// The exact scan of the stored vectors (float32 or float16).
    fn exact(&self, queries: &[f32], k: usize) -> Vec<Vec<Hit>> {
        let q = queries.len() / self.dim();
        search::top_k_by(self.len(), q, k, |rows, scores| {
            self.score_rows(queries, rows, scores)
        })
    }

    /// `scores (rows, q)`: the exact inner products of `queries` with the stored vectors of
    /// `rows`: the one definition of a passage's score, for the scan, rescoring and ranks.
    fn score_rows(&self, queries: &[f32], rows: Range<usize>, scores: &mut [f32]) {
        let dim = self.dim();
        let isa = densa_kernels::Isa::selected();
        match self.kind {
            VectorKind::F16 => {
                let block = &self.vectors.as_f16_bits()[rows.start * dim..rows.end * dim];
                search::f16_products_isa(isa, queries, block, scores, dim);
            }
            _ => {
                let block = &self.vectors.as_f32()[rows.start * dim..rows.end * dim];
                search::inner_products_isa(isa, queries, block, scores, dim);
            }
        }
    }

    /// The best `k` of each query's candidates by their exact scores.
    pub(super) fn rescore(
        &self,
        queries: &[f32],
        candidates: Vec<Vec<Hit>>,
        k: usize,
    ) -> Vec<Vec<Hit>> {
        let dim = self.dim();
        candidates
            .into_iter()
            .zip(queries.chunks_exact(dim))
            .map(|(candidates, query)| {
                let mut hits: Vec<Hit> = candidates
                    .into_iter()
                    .map(|c| {
                        let mut score = [0.0f32];
                        self.score_rows(query, c.index..c.index + 1, &mut score);
                        Hit {
                            index: c.index,
                            score: score[0],
                        }
                    })
                    .collect();
                hits.sort_by(Hit::rank_cmp);
                hits.truncate(k);
                hits
            })
            .collect()
    }

    /// The hits with their passages.
    fn with_passages(&self, hits: Vec<Hit>) -> Result<Vec<SearchHit>> {
        hits.into_iter()
            .map(|h| {
                Ok(SearchHit {
                    index: h.index,
                    score: h.score,
                    passage: self.passage(h.index)?,
                })
            })
            .collect()
    }

    /// Encodes the questions with `encoder` (DPR's question encoder) and searches: the top
    /// `k` passages of each question. The search runs on the encoder's thread pool.
    pub fn search_questions(
        &self,
        encoder: &Encoder,
        questions: &[&str],
        k: usize,
    ) -> Result<Vec<Vec<SearchHit>>> {
        let options = SearchOptions::default();
        self.search_questions_with(encoder, encoder.encoding(), questions, k, &options)
    }

    /// [`Index::search_questions`] with another encoding of the same encoder, and `options`.
    pub fn search_questions_with(
        &self,
        encoder: &Encoder,
        encoding: &Encoding,
        questions: &[&str],
        k: usize,
        options: &SearchOptions,
    ) -> Result<Vec<Vec<SearchHit>>> {
        let dim = encoder.dim_of(encoding);
        if dim != self.dim() {
            return Err(Error::InvalidInput(format!(
                "the question encoder gives {dim}-dimensional vectors, the index holds {}-dimensional ones (wrong model pair?)",
                self.dim()
            )));
        }
        let inputs: Vec<Input> = questions.iter().map(|&q| Input::Text(q)).collect();
        let queries = encoder.embed_inputs_with(&inputs, encoding)?;
        encoder.install(|| self.search_with(&queries.data, k, options))
    }

    /// Where the search with `options` ranks passage `gold[j]` for query `j` (1-based): the
    /// exact rank ([`Index::gold_ranks`]) when the search is exact; through the graph or the
    /// codes, its position among the first `max(depth, 100)` hits, or, missing from them, its
    /// exact rank but at least one past them (so recall@k for k up to that depth is the
    /// search's own).
    pub fn search_ranks(
        &self,
        queries: &[f32],
        gold: &[usize],
        depth: usize,
        options: &SearchOptions,
    ) -> Result<Vec<usize>> {
        let exact = self.gold_ranks(queries, gold)?;
        let approximate = self.codes.is_some() || (self.ann.is_some() && self.uses_graph(options));
        if !approximate {
            return Ok(exact);
        }
        let depth = depth.max(100).min(self.len());
        let hits = self.search_with(queries, depth, options)?;
        Ok(hits
            .iter()
            .zip(gold)
            .zip(exact)
            .map(
                |((hits, &g), exact)| match hits.iter().position(|h| h.index == g) {
                    Some(at) => at + 1,
                    None => exact.max(depth + 1),
                },
            )
            .collect())
    }

    /// Whether a search with `options` goes through the graph (when there is one).
    fn uses_graph(&self, options: &SearchOptions) -> bool {
        match options.exact {
            Some(exact) => !exact,
            None => self.len() >= ANN_MIN_ROWS,
        }
    }

    /// The 1-based rank of passage `gold[j]` for query `j` among all passages by the exact
    /// scores of the stored vectors (ties: lower row first), for evaluation. Runs on the
    /// current rayon pool.
    pub fn gold_ranks(&self, queries: &[f32], gold: &[usize]) -> Result<Vec<usize>> {
        if queries.len() != gold.len() * self.dim() {
            return Err(Error::InvalidInput(format!(
                "{} query values for {} gold passages of dimension {}",
                queries.len(),
                gold.len(),
                self.dim()
            )));
        }
        if let Some(&g) = gold.iter().find(|&&g| g >= self.len()) {
            return Err(Error::InvalidInput(format!(
                "gold passage {g} is beyond the index"
            )));
        }
        Ok(search::ranks_by(
            self.len(),
            gold.len(),
            gold,
            |rows, scores| self.score_rows(queries, rows, scores),
        ))
    }
}
