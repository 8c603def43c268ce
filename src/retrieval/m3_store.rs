//! An index's bge-m3 outputs beside its dense vectors: every passage's lexical weights and
//! ColBERT vectors, written by the same pass that writes the dense vectors (`densa index` with
//! a bge-m3 folder) and searched by [`Index::search_hybrid`].
//!
//! ```text
//! INDEX_DIR/
//!   m3.bin        per passage, in row order: u32 nnz, u32 colbert_rows, then nnz × (u32 token
//!                 id, f32 weight), ascending ids (little-endian)
//!   colbert.npy   (Σ colbert_rows, C): every passage's ColBERT vectors one after the other,
//!                 float32, or float16 in an index whose vectors are stored compressed
//!   chunks/NNNNNN-TAG.m3, NNNNNN-TAG.colbert.npy   while building: the same per chunk (f32)
//! ```

use super::hybrid::{candidate_rows, score_row, HybridHit, HybridWeights, SparseIndex};
use super::reader::Index;
use super::search::SearchOptions;
use super::storage::VectorKind;
use crate::error::{Error, Result};
use crate::heads::m3::{colbert_score, M3Output};
use crate::io::mapped::MappedMatrix;
use crate::io::npy::{self, Dtype};
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Appends `outputs`' records (as `m3.bin` holds them) to `out`.
pub(super) fn write_records(out: &mut dyn Write, outputs: &[M3Output]) -> std::io::Result<()> {
    for o in outputs {
        let rows = o.colbert.len() / o.colbert_dim.max(1);
        out.write_all(&(o.sparse.len() as u32).to_le_bytes())?;
        out.write_all(&(rows as u32).to_le_bytes())?;
        for &(id, weight) in &o.sparse {
            out.write_all(&id.to_le_bytes())?;
            out.write_all(&weight.to_le_bytes())?;
        }
    }
    Ok(())
}

/// One passage's record: its lexical weights and how many ColBERT vectors it has.
pub(super) type Record = (Vec<(u32, f32)>, usize);

/// The records of `bytes`, passage after passage; an error says what is wrong (a cut record,
/// ids out of order, a weight not above 0).
pub(super) fn read_records(
    bytes: &[u8],
    vocabulary: usize,
) -> std::result::Result<Vec<Record>, String> {
    let word = |at: usize| -> Option<[u8; 4]> { bytes.get(at..at + 4)?.try_into().ok() };
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let record = records.len();
        let cut = |at: usize| move || format!("record {record} is cut short at byte {at}");
        let nnz = u32::from_le_bytes(word(at).ok_or_else(cut(at))?) as usize;
        let rows = u32::from_le_bytes(word(at + 4).ok_or_else(cut(at))?) as usize;
        at += 8;
        let mut sparse = Vec::with_capacity(nnz.min(bytes.len() / 8));
        for _ in 0..nnz {
            let id = u32::from_le_bytes(word(at).ok_or_else(cut(at))?);
            let weight = f32::from_le_bytes(word(at + 4).ok_or_else(cut(at))?);
            at += 8;
            if !(weight > 0.0 && weight.is_finite())
                || sparse.last().is_some_and(|&(last, _)| last >= id)
                || id as usize >= vocabulary
            {
                return Err(format!(
                    "record {}: token {id} (weight {weight}) out of order, outside the vocabulary of {vocabulary} or not a positive weight",
                    records.len()
                ));
            }
            sparse.push((id, weight));
        }
        records.push((sparse, rows));
    }
    Ok(records)
}

/// The ColBERT width and the vocabulary size an index's manifest names (`"m3": {"colbert_dim":
/// C, "vocabulary": V}`), `None` for an index without bge-m3's outputs.
pub(super) fn m3_shape(manifest: &serde_json::Value) -> Option<(usize, usize)> {
    let entry = &manifest["m3"];
    Some((
        entry["colbert_dim"].as_u64()? as usize,
        entry["vocabulary"].as_u64()? as usize,
    ))
}

/// The dtype `colbert.npy` is stored in for vectors stored as `kind`.
pub(super) fn colbert_dtype(kind: VectorKind) -> Dtype {
    match kind {
        VectorKind::F32 => Dtype::F32,
        _ => Dtype::F16,
    }
}

/// The bge-m3 outputs of an open index: lexical weights (by passage and by token) and the
/// mapped ColBERT vectors.
pub(super) struct M3Store {
    sparse: Vec<Vec<(u32, f32)>>,
    inverted: SparseIndex,
    colbert: MappedMatrix,
    /// `(passages + 1)`: passage i's ColBERT rows are `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
}

impl M3Store {
    /// Reads `m3.bin` and maps `colbert.npy` of the index in `dir` (`passages` rows, ColBERT
    /// width `c`), checking that they agree.
    pub(super) fn open(
        dir: &Path,
        passages: usize,
        (c, vocabulary): (usize, usize),
        kind: VectorKind,
    ) -> Result<Self> {
        let path = dir.join("m3.bin");
        let bytes = std::fs::read(&path).map_err(|e| Error::reading(&path, e))?;
        let bad = |path: &Path, message: String| Error::Config {
            path: path.to_owned(),
            message: format!("{message}; build the index again"),
        };
        let records = read_records(&bytes, vocabulary).map_err(|e| bad(&path, e))?;
        if records.len() != passages {
            return Err(bad(
                &path,
                format!("{} records for {passages} passages", records.len()),
            ));
        }
        let mut starts = vec![0usize];
        for (_, rows) in &records {
            starts.push(starts.last().unwrap() + rows);
        }
        let colbert_path = dir.join("colbert.npy");
        let colbert = MappedMatrix::open_as(&colbert_path, &[colbert_dtype(kind)])?;
        if colbert.rows() != *starts.last().unwrap() || colbert.cols() != c {
            return Err(bad(
                &colbert_path,
                format!(
                    "holds ({}, {}) vectors; m3.bin and the manifest say ({}, {c})",
                    colbert.rows(),
                    colbert.cols(),
                    starts.last().unwrap()
                ),
            ));
        }
        let sparse: Vec<Vec<(u32, f32)>> = records.into_iter().map(|(s, _)| s).collect();
        let inverted = SparseIndex::build(sparse.iter().map(Vec::as_slice));
        Ok(M3Store {
            sparse,
            inverted,
            colbert,
            starts,
        })
    }

    /// Passage `row`'s outputs for scoring: its lexical weights and ColBERT vectors (decoded
    /// to f32); the dense vector is the index's.
    fn passage(&self, row: usize) -> M3Output {
        let c = self.colbert.cols();
        let rows = self.starts[row]..self.starts[row + 1];
        let mut colbert = vec![0.0f32; rows.len() * c];
        for (i, out) in rows.zip(colbert.chunks_exact_mut(c.max(1))) {
            self.colbert.row_f32(i, out);
        }
        M3Output {
            dense: Vec::new(),
            sparse: self.sparse[row].clone(),
            colbert,
            colbert_dim: c,
        }
    }
}

impl Index {
    /// Whether the index holds bge-m3's lexical weights and ColBERT vectors.
    pub fn has_m3(&self) -> bool {
        self.m3.is_some()
    }

    /// The `k` best passages for `query` (bge-m3's outputs of the question) by the weighted
    /// score of FlagEmbedding's `compute_score` ([`super::hybrid`]): candidates are the
    /// `candidates` best by the dense search (as `options` says: exact scan or graph) and by
    /// lexical score, each scored exactly by every weighted output; best first, with each
    /// hit's scores.
    pub fn search_hybrid(
        &self,
        query: &M3Output,
        k: usize,
        candidates: usize,
        weights: &HybridWeights,
        options: &SearchOptions,
    ) -> Result<Vec<(super::SearchHit, HybridHit)>> {
        let Some(store) = &self.m3 else {
            return Err(Error::InvalidInput(format!(
                "{}: this index holds no lexical weights or ColBERT vectors (build it with a bge-m3 folder: sparse_linear and colbert_linear beside the trunk)",
                self.dir().display()
            )));
        };
        weights.check()?;
        if query.colbert_dim != store.colbert.cols() {
            return Err(Error::InvalidInput(format!(
                "the question's ColBERT vectors have {} values, the index's {}: encode questions with the model that built the index",
                query.colbert_dim,
                store.colbert.cols()
            )));
        }
        // At least k candidates from each search, at most every passage.
        let candidates = candidates.max(k).min(self.len());
        let rows = candidate_rows(
            weights,
            self.len(),
            || {
                let dense = self.search_with(&query.dense, candidates, options)?;
                Ok(dense[0].iter().map(|h| h.index).collect())
            },
            || store.inverted.search(&query.sparse, candidates),
        )?;
        let dim = self.dim();
        // Each candidate scored on its own (in parallel on the current pool).
        let mut hits: Vec<HybridHit> = rows
            .into_par_iter()
            .map(|row| {
                let mut dense = vec![0.0f32; dim];
                self.vectors().row_f32(row, &mut dense);
                let colbert =
                    (weights.colbert > 0.0).then(|| colbert_score(query, &store.passage(row)));
                score_row(row, query, (&dense, &store.sparse[row], colbert), weights)
            })
            .collect();
        super::hybrid::rank_hits(&mut hits);
        hits.truncate(k);
        hits.into_iter()
            .map(|hit| {
                let passage = self.passage(hit.row)?;
                let search_hit = super::SearchHit {
                    index: hit.row,
                    score: hit.score as f32,
                    passage,
                };
                Ok((search_hit, hit))
            })
            .collect()
    }
}

/// Writes `m3.bin` and `colbert.npy` from the chunks' files (`chunk_m3(k)` and
/// `chunk_colbert(k)` for each chunk of `ks`, `rows(k)` passages each), checking each first.
pub(super) fn assemble(
    output: &Path,
    ks: &[usize],
    rows: &dyn Fn(usize) -> usize,
    chunk_m3: &dyn Fn(usize) -> std::path::PathBuf,
    chunk_colbert: &dyn Fn(usize) -> std::path::PathBuf,
    (c, vocabulary): (usize, usize),
    kind: VectorKind,
) -> Result<()> {
    let bad = super::build::bad_chunk;
    let mut colbert_parts = Vec::with_capacity(ks.len());
    for &k in ks {
        let path = chunk_m3(k);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let records = read_records(&bytes, vocabulary).map_err(|e| bad(&path, e))?;
        if records.len() != rows(k) {
            return Err(bad(
                &path,
                format!("holds {} records, expected {}", records.len(), rows(k)),
            ));
        }
        let colbert_rows: usize = records.iter().map(|r| r.1).sum();
        let path = chunk_colbert(k);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (r, cols, offset) = npy::parse_f32_header(&bytes).map_err(|e| bad(&path, e))?;
        if (r, cols) != (colbert_rows, c) || bytes.len() != offset + r * c * 4 {
            return Err(bad(
                &path,
                format!("holds ({r}, {cols}), expected ({colbert_rows}, {c})"),
            ));
        }
        colbert_parts.push((colbert_rows, offset));
    }
    crate::io::output::write_output(&output.join("m3.bin"), |out| {
        for &k in ks {
            out.write_all(&std::fs::read(chunk_m3(k))?)?;
        }
        Ok(())
    })?;
    let total: usize = colbert_parts.iter().map(|p| p.0).sum();
    let dtype = colbert_dtype(kind);
    crate::io::output::write_output(&output.join("colbert.npy"), |out| {
        npy::write_header(out, dtype, total, c)?;
        for (&k, &(_, offset)) in ks.iter().zip(&colbert_parts) {
            let bytes = std::fs::read(chunk_colbert(k))?;
            match dtype {
                Dtype::F16 => out.write_all(&super::build::f16_bytes(&bytes[offset..]))?,
                _ => out.write_all(&bytes[offset..])?,
            }
        }
        Ok(())
    })
}
