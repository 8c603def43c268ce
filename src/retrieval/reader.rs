//! A complete index, memory-mapped: its vectors (and codes), its passages, the checks that it
//! is whole and consistent. Searching it is `search.rs`.

use super::ann::Ann;
use super::build::INDEX_FORMAT_VERSION;
use super::passages::Passage;
use super::storage::{Calibration, VectorKind};
use crate::encoder::{Encoder, Encoding};
use crate::error::{Error, Result};
use crate::io::mapped::{map_file, MappedMatrix};
use crate::io::npy::Dtype;
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
    /// How the vectors are stored for search.
    pub(super) kind: VectorKind,
    /// `vectors.npy`: float32, or float16 for [`VectorKind::F16`].
    pub(super) vectors: MappedMatrix,
    /// The int8 or binary codes and their calibration.
    pub(super) codes: Option<(MappedMatrix, Calibration)>,
    /// The HNSW graph, when the index has one and it was opened with it.
    pub(super) ann: Option<Ann>,
    passages: Arc<Mmap>,
    /// `(len + 1)` byte offsets of the lines of `passages`.
    offsets: Vec<u64>,
    dir: PathBuf,
    /// Which shard of a collection this folder holds (`densa index --shard I/N`).
    shard: Option<Shard>,
    /// bge-m3's lexical weights and ColBERT vectors, when the index holds them.
    pub(super) m3: Option<super::m3_store::M3Store>,
}

/// Shard `index` of `count` of a collection cut into chunks of `chunk_size` passages: it holds
/// the chunks `k` with `k % count == index`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    pub chunk_size: usize,
}

impl Shard {
    /// The row in the whole collection of this shard's row `row`: chunk `row / chunk_size` of
    /// the shard is the collection's chunk `index + count · (row / chunk_size)` (only the
    /// collection's last chunk may be short, and it is its shard's last).
    pub fn collection_row(&self, row: usize) -> usize {
        let (chunk, within) = (row / self.chunk_size, row % self.chunk_size);
        (self.index + self.count * chunk) * self.chunk_size + within
    }
}

/// The manifest's `shard` entry, checked (`None` for a whole collection's index).
fn shard_of(manifest: &Value) -> std::result::Result<Option<Shard>, String> {
    let entry = &manifest["shard"];
    if entry.is_null() {
        return Ok(None);
    }
    let number = |v: &Value, key: &str| {
        v[key]
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| format!("{key} is {}, not a whole number", v[key]))
    };
    let (index, count) = (number(entry, "index")?, number(entry, "count")?);
    let chunk_size = number(manifest, "chunk_size")?;
    number(entry, "passages")?;
    if index >= count || chunk_size == 0 {
        return Err(format!(
            "shard {index} of {count} in chunks of {chunk_size}: need index < count and chunks of at least 1"
        ));
    }
    Ok(Some(Shard {
        index,
        count,
        chunk_size,
    }))
}

/// Reads `manifest.json` and checks that it is a complete densa index of this format.
fn read_complete_manifest(manifest_path: &Path) -> Result<Value> {
    if !manifest_path.is_file() {
        return Err(Error::MissingFile {
            path: manifest_path.to_owned(),
            hint: " (not a densa index folder)".into(),
        });
    }
    let manifest = crate::io::read_json(manifest_path)?;
    let bad = |message: String| Error::Config {
        path: manifest_path.to_owned(),
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
    Ok(manifest)
}

/// Reads `passages.offsets`: `n + 1` rising little-endian u64 line offsets from 0 to the end
/// of `passages.jsonl` (`passages_len` bytes).
fn read_offsets(offsets_path: &Path, n: usize, passages_len: usize) -> Result<Vec<u64>> {
    let offset_bytes = std::fs::read(offsets_path).map_err(|e| Error::io(offsets_path, e))?;
    let offsets: Vec<u64> = offset_bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let offsets_consistent = offset_bytes.len() == 8 * (n + 1)
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets.first() == Some(&0)
        && offsets.last() == Some(&(passages_len as u64));
    if !offsets_consistent {
        return Err(Error::InvalidInput(format!(
            "{}: {} bytes, not {} rising line offsets from 0 to the {passages_len} bytes of passages.jsonl (one per passage, and its end)",
            offsets_path.display(),
            offset_bytes.len(),
            n + 1,
        )));
    }
    Ok(offsets)
}

impl Index {
    /// Opens a complete index folder written by [`build_index`](super::build_index), with its
    /// HNSW graph if it has one (a graph that fails its checks is an error: open with
    /// [`Index::open_exact`] to search by the exact scan anyway).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir.as_ref(), true)
    }

    /// Opens an index for the exact scan alone: its graph, if any, is not read.
    pub fn open_exact(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir.as_ref(), false)
    }

    fn open_with(dir: &Path, with_ann: bool) -> Result<Self> {
        let manifest_path = dir.join("manifest.json");
        let manifest = read_complete_manifest(&manifest_path)?;
        let bad = |message: String| Error::Config {
            path: manifest_path.clone(),
            message,
        };
        let kind = match &manifest["vectors"] {
            Value::Null => VectorKind::F32,
            Value::String(name) => {
                VectorKind::parse(name).map_err(|e| bad(format!("vectors: {e}")))?
            }
            other => return Err(bad(format!("vectors is {other}, not a vector kind"))),
        };
        let vectors = MappedMatrix::open_as(&dir.join("vectors.npy"), &[kind.vectors_dtype()])?;
        let passages = map_file(&dir.join("passages.jsonl"))?;
        let (n, dim) = (vectors.rows(), vectors.cols());
        // A shard's folder holds its own passages; "passages" counts the whole collection.
        let shard = shard_of(&manifest).map_err(|e| bad(format!("shard: {e}")))?;
        let rows_key = if shard.is_some() {
            "shard.passages"
        } else {
            "passages"
        };
        let rows_field = match shard {
            Some(_) => &manifest["shard"]["passages"],
            None => &manifest["passages"],
        };
        for (key, field, value) in [(rows_key, rows_field, n), ("dim", &manifest["dim"], dim)] {
            if *field != json!(value) || value == 0 && key == "dim" {
                return Err(bad(format!(
                    "{key} is {field}, but vectors.npy holds ({n}, {dim}) vectors"
                )));
            }
        }
        let offsets = read_offsets(&dir.join("passages.offsets"), n, passages.len())?;
        let codes = open_codes(dir, kind, n, dim)?;
        let ann = match &manifest["ann"] {
            Value::Null => None,
            _ if !with_ann => None,
            entry => Some(Ann::open(dir, entry, n, dim)?),
        };
        let m3 = match super::m3_store::m3_shape(&manifest) {
            Some(shape) => Some(super::m3_store::M3Store::open(dir, n, shape, kind)?),
            None if manifest["m3"].is_null() => None,
            None => {
                return Err(bad(format!(
                    "m3 is {}, not {{\"colbert_dim\", \"vocabulary\"}}",
                    manifest["m3"]
                )))
            }
        };
        Ok(Index {
            m3,
            manifest,
            kind,
            vectors,
            codes,
            ann,
            passages,
            offsets,
            dir: dir.to_owned(),
            shard,
        })
    }

    /// Which shard of a collection this folder holds, if it is one.
    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// The row in the whole collection of this folder's row `row` (itself, unless a shard).
    pub fn collection_row(&self, row: usize) -> usize {
        self.shard.map_or(row, |s| s.collection_row(row))
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

    /// How the vectors are stored for search.
    pub fn vector_kind(&self) -> VectorKind {
        self.kind
    }

    /// How the HNSW graph holds the vectors, when the index was opened with one.
    pub fn ann_vectors(&self) -> Option<VectorKind> {
        self.ann.as_ref().map(|a| a.options().vectors)
    }

    /// The stored vectors (`vectors.npy`: float32, or float16 for an f16 index).
    pub fn vectors(&self) -> &MappedMatrix {
        &self.vectors
    }

    /// All vectors as float32, row-major `(len, dim)` (a copy; decoded for an f16 index).
    pub fn vectors_f32(&self) -> Vec<f32> {
        let dim = self.dim();
        let mut out = vec![0.0f32; self.len() * dim];
        for (i, row) in out.chunks_exact_mut(dim.max(1)).enumerate() {
            self.vectors.row_f32(i, row);
        }
        out
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

    /// Rows of every passage id, by the id's text (for evaluation: gold ids to rows).
    pub fn id_rows(&self) -> Result<std::collections::HashMap<String, usize>> {
        (0..self.len())
            .map(|i| Ok((self.passage(i)?.id.to_string(), i)))
            .collect()
    }
}

/// The codes of an int8 or binary index (`vectors.<kind>.npy`, `calibration.<kind>.npy`),
/// checked against the vectors' shape; `None` for f32 and f16.
fn open_codes(
    dir: &Path,
    kind: VectorKind,
    n: usize,
    dim: usize,
) -> Result<Option<(MappedMatrix, Calibration)>> {
    let Some((codes_path, calibration_path)) = kind.code_files(dir) else {
        return Ok(None);
    };
    let dtype = match kind {
        VectorKind::Int8 => Dtype::I8,
        _ => Dtype::U8,
    };
    let codes = MappedMatrix::open_as(&codes_path, &[dtype])?;
    let width = kind.code_width(dim);
    if (codes.rows(), codes.cols()) != (n, width) {
        return Err(Error::InvalidInput(format!(
            "{}: holds ({}, {}) codes, the index ({n}, {dim}) vectors need ({n}, {width})",
            codes_path.display(),
            codes.rows(),
            codes.cols()
        )));
    }
    let calibration = Calibration::read(kind, &calibration_path, dim)?;
    Ok(Some((codes, calibration)))
}
