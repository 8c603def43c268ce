//! A complete index, memory-mapped, and exact inner-product search over it.

use super::build::INDEX_FORMAT_VERSION;
use super::passages::Passage;
use crate::encoder::{Encoder, Encoding};
use crate::error::{Error, Result};
use crate::io::mapped::{map_file, MappedMatrix};
use crate::tokenizer::Input;
use memmap2::Mmap;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Row in the index (0-based).
    pub index: usize,
    pub score: f32,
    pub passage: Passage,
}

impl SearchHit {
    /// `{"rank", "id", "score", "title", "text"}` (`rank` from 1; the id as the passages
    /// file wrote it, string or number), and `"doc_id"`, `"start"`, `"end"` for a passage cut
    /// from a document: what `densa search --json` prints and `densa serve`'s `/search`
    /// returns.
    pub fn to_json(&self, rank: usize) -> Value {
        let mut value = self.passage.to_json();
        value["rank"] = rank.into();
        value["score"] = json!(self.score);
        value
    }
}

/// A complete index, memory-mapped: opening costs no reading of the vectors, and several
/// processes share their pages.
pub struct Index {
    manifest: Value,
    vectors: MappedMatrix,
    passages: Arc<Mmap>,
    /// `(len + 1)` byte offsets of the lines of `passages`.
    offsets: Vec<u64>,
    dir: PathBuf,
}

impl Index {
    /// Opens a complete index folder written by [`build_index`](super::build_index).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.is_file() {
            return Err(Error::MissingFile {
                path: manifest_path,
                hint: " (not a densa index folder)".into(),
            });
        }
        let manifest = crate::io::read_json(&manifest_path)?;
        let bad = |message: String| Error::Config {
            path: manifest_path.clone(),
            message,
        };
        if manifest["format"] != json!("densa-index") {
            return Err(bad("not a densa index manifest".into()));
        }
        if manifest["version"] != json!(INDEX_FORMAT_VERSION) {
            return Err(bad(format!(
                "index format version {} (this densa reads {INDEX_FORMAT_VERSION})",
                manifest["version"]
            )));
        }
        if manifest["complete"] != json!(true) {
            return Err(bad(
                "the index is incomplete (a build was interrupted, or shards are missing): rerun densa index with the same arguments".into(),
            ));
        }
        let vectors = MappedMatrix::open(&dir.join("vectors.npy"))?;
        let passages = map_file(&dir.join("passages.jsonl"))?;
        let offsets_path = dir.join("passages.offsets");
        let offset_bytes = std::fs::read(&offsets_path).map_err(|e| Error::io(&offsets_path, e))?;
        let offsets: Vec<u64> = offset_bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let (n, dim) = (vectors.rows(), vectors.cols());
        let consistent = dim > 0
            && manifest["passages"] == json!(n)
            && manifest["dim"] == json!(dim)
            && offset_bytes.len() == 8 * (n + 1)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.first() == Some(&0)
            && offsets.last() == Some(&(passages.len() as u64));
        if !consistent {
            return Err(bad(format!(
                "vectors.npy ({n}, {dim}), passages.jsonl and passages.offsets do not match the manifest"
            )));
        }
        Ok(Index {
            manifest,
            vectors,
            passages,
            offsets,
            dir: dir.to_owned(),
        })
    }

    /// Number of passages.
    pub fn len(&self) -> usize {
        self.vectors.rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.vectors.cols()
    }

    /// All vectors, row-major `(len, dim)`.
    pub fn vectors(&self) -> &[f32] {
        self.vectors.as_slice()
    }

    /// The manifest (what was encoded with what).
    pub fn manifest(&self) -> &Value {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Passage `i` (0-based row).
    pub fn passage(&self, i: usize) -> Result<Passage> {
        let (start, end) = match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&s), Some(&e)) => (s as usize, e as usize),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "passage {i} is beyond the index ({} passages)",
                    self.len()
                )))
            }
        };
        let line = &self.passages[start..end];
        let bad = |e: String| {
            let path = self.dir.join("passages.jsonl");
            Error::InvalidInput(format!(
                "{}: passage {i} (line {}): {e}",
                path.display(),
                i + 1
            ))
        };
        let value: Value = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        Passage::from_json(&value, i).map_err(bad)
    }

    /// The `k` passages with the largest inner product with each query vector (`queries` is
    /// `(q, dim)` row-major), best first. Exact search over all vectors, multi-threaded on
    /// the current rayon pool.
    pub fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<SearchHit>>> {
        if !queries.len().is_multiple_of(self.dim()) {
            return Err(Error::InvalidInput(format!(
                "query vectors have {} values, not whole rows of the index's dimension {}",
                queries.len(),
                self.dim()
            )));
        }
        densa_kernels::top_k_inner_product(queries, self.vectors(), self.dim(), k)
            .into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|h| {
                        Ok(SearchHit {
                            index: h.index,
                            score: h.score,
                            passage: self.passage(h.index)?,
                        })
                    })
                    .collect()
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
        self.search_questions_with(encoder, encoder.encoding(), questions, k)
    }

    /// [`Index::search_questions`] with another encoding of the same encoder.
    pub fn search_questions_with(
        &self,
        encoder: &Encoder,
        encoding: &Encoding,
        questions: &[&str],
        k: usize,
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
        encoder.install(|| self.search(&queries.data, k))
    }

    /// Ways the question encoder looks inconsistent with how the passages were encoded
    /// (one side normalised and not the other, another pooling, a prompt on one side
    /// only), one sentence each; empty when nothing looks off.
    pub fn encoding_mismatches(&self, encoder: &Encoder) -> Vec<String> {
        self.encoding_mismatches_with(encoder, encoder.encoding())
    }

    /// [`Index::encoding_mismatches`] for another encoding of the same encoder.
    pub fn encoding_mismatches_with(&self, encoder: &Encoder, encoding: &Encoding) -> Vec<String> {
        let normalizes = encoding.gives_unit_vectors();
        let manifest = self.manifest();
        let mut found = Vec::new();
        if let Some(normalized) = manifest["normalized"].as_bool() {
            if normalized != normalizes {
                found.push(format!(
                    "the passages were {}normalised, the questions are {}",
                    if normalized { "" } else { "not " },
                    if normalizes { "" } else { "not" }
                ));
            }
        }
        if let Some(pooling) = manifest["pooling"].as_str() {
            if pooling != encoder.pooling().name() {
                found.push(format!(
                    "the passages were pooled by {pooling}, the questions by {}",
                    encoder.pooling().name()
                ));
            }
        }
        let passage_prompt = manifest["prompt"].as_str();
        if passage_prompt.is_some() != encoding.prompt().is_some() {
            found.push(format!(
                "the passages were encoded with {}, the questions with {}",
                passage_prompt.map_or("no prompt".into(), |p| format!("prompt {p:?}")),
                encoding
                    .prompt()
                    .map_or("no prompt".into(), |p| format!("prompt {p:?}"))
            ));
        }
        found
    }

    /// The 1-based rank of passage `gold[j]` for query `j` among all passages (ties: lower
    /// row first), for evaluation. Runs on the current rayon pool.
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
        Ok(densa_kernels::search::ranks_of(
            queries,
            self.vectors(),
            self.dim(),
            gold,
        ))
    }

    /// Rows of every passage id, by the id's text (for evaluation: gold ids to rows).
    pub fn id_rows(&self) -> Result<std::collections::HashMap<String, usize>> {
        (0..self.len())
            .map(|i| Ok((self.passage(i)?.id.to_string(), i)))
            .collect()
    }
}
