//! A passage index for dense retrieval: passages encoded once (DPR's context encoder, as the
//! pair `(title, text)`), their vectors stored as a float32 `.npy` (FAISS-ready), searched by
//! exact inner product.
//!
//! ```text
//! INDEX_DIR/
//!   manifest.json       what was encoded with what; "complete": true once assembled
//!   vectors.npy         (passages, dim) float32, C order: np.load / faiss.IndexFlatIP
//!   passages.jsonl      one {"id", "title", "text"} per row of vectors.npy, same order
//!   passages.offsets    (passages + 1) little-endian u64: byte offset of each line
//!   chunks/             while building: NNNNNN-TAG.npy + NNNNNN-TAG.jsonl per chunk of passages
//!                       (TAG: a hash of the model, the passages and the chunk size)
//! ```
//!
//! Building is resumable and never leaves a torn index: passages are cut into chunks of
//! `chunk_size`; each chunk's files are written to a temporary name and renamed, so a chunk
//! exists whole or not at all, and a rerun skips the chunks that exist. Once every chunk is
//! there, they are concatenated into the final files (each renamed into place), the manifest
//! is marked complete, and the chunks are removed. [`Index::open`] refuses an incomplete index.
//!
//! `--shard I/N` encodes the chunks `k` with `k % N == I` only: N processes on N machines share
//! a collection, and merging is copying every shard's `chunks/` into one folder and running the
//! same command there (it finds all chunks and only concatenates). See docs/RETRIEVAL.md.

use crate::checkpoint::{map_file, MappedMatrix};
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::tokenizer::Input;
use memmap2::Mmap;
use serde_json::{json, Value};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the index layout in `manifest.json`.
pub const INDEX_FORMAT_VERSION: u64 = 1;

/// One passage of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub id: String,
    /// Encoded as the first text of the pair; an absent title encodes the text alone.
    pub title: Option<String>,
    pub text: String,
}

impl Passage {
    /// What the context encoder sees.
    pub fn input(&self) -> Input<'_> {
        match &self.title {
            Some(title) => Input::Pair(title, &self.text),
            None => Input::Text(&self.text),
        }
    }

    /// The passage as one line of `passages.jsonl` (no newline).
    fn to_json_line(&self) -> String {
        json!({ "id": self.id, "title": self.title, "text": self.text }).to_string()
    }
}

/// Reads a JSON lines collection: one object per line with `"text"` and optional `"id"`
/// (string or number; default: the line number from 0) and `"title"`. Blank lines are
/// skipped; ids must be unique. Errors name the file and line.
pub fn read_passages(path: &Path) -> Result<(Vec<Passage>, u64)> {
    let bytes = std::fs::read(path).map_err(|e| Error::reading(path, e))?;
    let fingerprint = fnv1a(&bytes, FNV_OFFSET);
    let mut passages = Vec::new();
    // Line (1-based) of each id, to refuse duplicates: eval and users find passages by id.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = |message: String| {
            Error::InvalidInput(format!("{}: line {}: {message}", path.display(), i + 1))
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = parse_json_record(line).map_err(at)?;
        let id = match record.value.get("id") {
            None | Some(Value::Null) => i.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(at("\"id\" must be a string or a number".into())),
        };
        if let Some(first) = seen.insert(id.clone(), i + 1) {
            return Err(at(format!("id {id:?} was already used on line {first}")));
        }
        passages.push(Passage {
            id,
            title: record.title,
            text: record.text,
        });
    }
    Ok((passages, fingerprint))
}

/// One line of a JSON lines input: `"text"` and an optional `"title"`, both strings, and the
/// parsed object for any other field.
pub struct JsonRecord {
    pub text: String,
    pub title: Option<String>,
    pub value: Value,
}

/// Parses one JSON lines line (`densa embed --input x.jsonl`, `densa index --passages`). The
/// error says what is wrong; the caller adds the file and line.
pub fn parse_json_record(line: &[u8]) -> std::result::Result<JsonRecord, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("invalid UTF-8 ({e})"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))?;
    let string = |key: &str| match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    };
    let text = string("text")?.ok_or("no \"text\" field")?;
    let title = string("title")?;
    Ok(JsonRecord { text, title, value })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64-bit: a fingerprint (not a cryptographic hash) that tells a resumed run it is
/// looking at the same passages and model.
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What identifies the encoder's vectors across machines: its config and tokenizer files (by
/// content), its weight files (by size and a sample of their bytes) and the encoding options.
fn model_fingerprint(encoder: &Encoder) -> u64 {
    let mut hash = FNV_OFFSET;
    let dir = encoder.dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.sort();
    for path in names.iter().filter(|p| p.is_file()) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        hash = fnv1a(name.as_bytes(), hash);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        hash = fnv1a(&size.to_le_bytes(), hash);
        if name.ends_with(".json") || name.ends_with(".txt") {
            hash = fnv1a(&std::fs::read(path).unwrap_or_default(), hash);
        } else if let Ok(map) = map_file(path) {
            // Weights: the first and last MiB (the safetensors header with every name, shape
            // and offset, and the first and last tensors' bytes) and 64 bytes of every MiB
            // between, which tells fine-tunes of one architecture apart without reading GBs.
            const MIB: usize = 1 << 20;
            let len = map.len();
            hash = fnv1a(&map[..len.min(MIB)], hash);
            hash = fnv1a(&map[len.saturating_sub(MIB)..], hash);
            for at in (MIB..len.saturating_sub(MIB)).step_by(MIB) {
                hash = fnv1a(&map[at..(at + 64).min(len)], hash);
            }
        }
    }
    let options = format!(
        "{}|{}|{}|{}",
        encoder.model().precision.name(),
        encoder.pooling().name(),
        encoder.normalizes(),
        encoder.tokenizer().max_length()
    );
    fnv1a(options.as_bytes(), hash)
}

/// How to build an index.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Passages per chunk: the unit of resumption and sharding.
    pub chunk_size: usize,
    /// `(I, N)`: encode only chunks `k` with `k % N == I`.
    pub shard: Option<(usize, usize)>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            chunk_size: 4096,
            shard: None,
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub passages: usize,
    pub chunks: usize,
    /// Chunks this run encoded (the others existed already or belong to other shards).
    pub chunks_encoded: usize,
    /// Passages this run encoded.
    pub passages_encoded: usize,
    /// Chunks still missing (other shards' work); 0 once the index is complete.
    pub chunks_missing: usize,
}

impl BuildReport {
    /// Whether the index is complete (assembled and ready to search).
    pub fn is_complete(&self) -> bool {
        self.chunks_missing == 0
    }
}

/// Builds (or resumes building) the index of the passages in `passages_path` into `output`.
/// `progress(done, total)` is called after each chunk with passages done so far.
pub fn build_index(
    encoder: &Encoder,
    passages_path: &Path,
    output: &Path,
    options: &IndexOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BuildReport> {
    if options.chunk_size == 0 {
        return Err(Error::InvalidInput(
            "--chunk-size must be at least 1".into(),
        ));
    }
    let (shard, shards) = options.shard.unwrap_or((0, 1));
    if shards == 0 || shard >= shards {
        return Err(Error::InvalidInput(format!(
            "--shard {shard}/{shards}: I must be below N (shards are numbered from 0)"
        )));
    }
    let (passages, passages_fingerprint) = read_passages(passages_path)?;
    let total = passages.len();
    let chunks = total.div_ceil(options.chunk_size);
    let manifest = json!({
        "format": "densa-index",
        "version": INDEX_FORMAT_VERSION,
        "dim": encoder.dim(),
        "passages": total,
        "chunk_size": options.chunk_size,
        "chunks": chunks,
        "passages_fingerprint": format!("{passages_fingerprint:016x}"),
        "model_fingerprint": format!("{:016x}", model_fingerprint(encoder)),
        "precision": encoder.model().precision.name(),
        "pooling": encoder.pooling().name(),
        "normalized": encoder.normalizes(),
        "max_length": encoder.tokenizer().max_length(),
        "complete": false,
    });
    // Chunk files are named after the build, so chunks of another build (a shard run with
    // another model, passages file or chunk size, copied in by mistake) are never mixed in.
    let build_tag = format!(
        "{:08x}",
        fnv1a(
            format!(
                "{}|{}",
                manifest["model_fingerprint"], manifest["passages_fingerprint"]
            )
            .as_bytes(),
            fnv1a(&options.chunk_size.to_le_bytes(), FNV_OFFSET)
        ) as u32
    );
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let manifest_path = output.join("manifest.json");
    if manifest_path.is_file() {
        let existing = read_manifest(&manifest_path)?;
        check_same_build(&manifest_path, &existing, &manifest)?;
        if existing["complete"] == json!(true) {
            progress(total, total);
            return Ok(BuildReport {
                passages: total,
                chunks,
                chunks_encoded: 0,
                passages_encoded: 0,
                chunks_missing: 0,
            });
        }
    } else {
        write_file_atomically(&manifest_path, |out| {
            out.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())
        })?;
    }

    let chunk_dir = output.join("chunks");
    std::fs::create_dir_all(&chunk_dir).map_err(|e| Error::io(&chunk_dir, e))?;
    let chunk_range = |k: usize| k * options.chunk_size..((k + 1) * options.chunk_size).min(total);
    let chunk_file =
        |k: usize, extension: &str| chunk_dir.join(format!("{k:06}-{build_tag}.{extension}"));
    let chunk_done = |k: usize| chunk_file(k, "npy").is_file() && chunk_file(k, "jsonl").is_file();
    let mut done: usize = (0..chunks)
        .filter(|&k| chunk_done(k))
        .map(|k| chunk_range(k).len())
        .sum();
    progress(done, total);
    let (mut chunks_encoded, mut passages_encoded) = (0, 0);
    for k in (shard..chunks).step_by(shards) {
        if chunk_done(k) {
            continue;
        }
        let part = &passages[chunk_range(k)];
        let inputs: Vec<Input> = part.iter().map(Passage::input).collect();
        // embed_inputs sorts by length into batches and returns rows in input order.
        let vectors = encoder.embed_inputs(&inputs)?;
        // Passages first, vectors last: a chunk counts as done once both exist.
        write_file_atomically(&chunk_file(k, "jsonl"), |out| {
            for p in part {
                out.write_all(p.to_json_line().as_bytes())?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })?;
        write_file_atomically(&chunk_file(k, "npy"), |out| {
            crate::npy::write_f32_matrix(out, &vectors.data, part.len(), vectors.dim)
        })?;
        chunks_encoded += 1;
        passages_encoded += part.len();
        done += part.len();
        progress(done, total);
    }

    let missing = (0..chunks).filter(|&k| !chunk_done(k)).count();
    if missing == 0 {
        let files: Vec<(PathBuf, PathBuf, usize)> = (0..chunks)
            .map(|k| {
                (
                    chunk_file(k, "npy"),
                    chunk_file(k, "jsonl"),
                    chunk_range(k).len(),
                )
            })
            .collect();
        assemble(output, &chunk_dir, &files, encoder.dim(), &manifest)?;
    }
    Ok(BuildReport {
        passages: total,
        chunks,
        chunks_encoded,
        passages_encoded,
        chunks_missing: missing,
    })
}

fn read_manifest(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_owned(),
        message: format!("not valid JSON: {e}"),
    })
}

/// A resumed build must be the same build: same passages, model, options and chunking.
fn check_same_build(path: &Path, existing: &Value, wanted: &Value) -> Result<()> {
    for key in [
        "format",
        "version",
        "dim",
        "passages",
        "chunk_size",
        "passages_fingerprint",
        "model_fingerprint",
        "precision",
        "pooling",
        "normalized",
        "max_length",
    ] {
        if existing[key] != wanted[key] {
            return Err(Error::Config {
                path: path.to_owned(),
                message: format!(
                    "this folder holds an index built differently ({key}: {} there, {} now); use another --output or delete it",
                    existing[key], wanted[key]
                ),
            });
        }
    }
    Ok(())
}

/// Concatenates the chunks into the final files, marks the manifest complete, removes the
/// chunks. Every chunk is checked first (rows, dimension, lines); each final file is renamed
/// into place whole; until the manifest says complete, a rerun simply does this again.
fn assemble(
    output: &Path,
    chunk_dir: &Path,
    chunks: &[(PathBuf, PathBuf, usize)],
    dim: usize,
    manifest: &Value,
) -> Result<()> {
    let bad = |path: &Path, message: String| {
        Error::InvalidInput(format!(
            "{}: {message}; delete it and rerun to encode it again",
            path.display()
        ))
    };
    // Check everything before writing anything: (data offset of each vectors chunk).
    let mut offsets_in_chunks = Vec::with_capacity(chunks.len());
    for (vectors, passages, rows) in chunks {
        let bytes = std::fs::read(vectors).map_err(|e| Error::io(vectors, e))?;
        let (r, c, offset) = crate::npy::parse_f32_header(&bytes).map_err(|e| bad(vectors, e))?;
        if (r, c) != (*rows, dim) || bytes.len() != offset + rows * dim * 4 {
            return Err(bad(
                vectors,
                format!(
                    "holds ({r}, {c}) in {} bytes, expected ({rows}, {dim})",
                    bytes.len()
                ),
            ));
        }
        let text = std::fs::read(passages).map_err(|e| Error::io(passages, e))?;
        let lines = text.split_inclusive(|&b| b == b'\n').count();
        if lines != *rows || text.last().is_some_and(|&b| b != b'\n') {
            return Err(bad(
                passages,
                format!("holds {lines} lines, expected {rows}"),
            ));
        }
        offsets_in_chunks.push(offset);
    }
    let total: usize = chunks.iter().map(|c| c.2).sum();
    write_file_atomically(&output.join("vectors.npy"), |out| {
        crate::npy::write_f32_header(out, total, dim)?;
        for ((vectors, _, _), &offset) in chunks.iter().zip(&offsets_in_chunks) {
            out.write_all(&std::fs::read(vectors)?[offset..])?;
        }
        Ok(())
    })?;
    let mut offsets: Vec<u64> = vec![0];
    write_file_atomically(&output.join("passages.jsonl"), |out| {
        for (_, passages, _) in chunks {
            let bytes = std::fs::read(passages)?;
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                offsets.push(offsets.last().copied().unwrap_or(0) + line.len() as u64);
            }
            out.write_all(&bytes)?;
        }
        Ok(())
    })?;
    write_file_atomically(&output.join("passages.offsets"), |out| {
        offsets
            .iter()
            .try_for_each(|o| out.write_all(&o.to_le_bytes()))
    })?;
    let mut complete = manifest.clone();
    complete["complete"] = json!(true);
    write_file_atomically(&output.join("manifest.json"), |out| {
        out.write_all(serde_json::to_string_pretty(&complete)?.as_bytes())
    })?;
    // The renames are durable once the folder itself is synced.
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(output) {
        let _ = dir.sync_all();
    }
    std::fs::remove_dir_all(chunk_dir).map_err(|e| Error::io(chunk_dir, e))
}

/// The temporary name [`write_file_atomically`] writes `path` under: hidden, same folder,
/// with this process's id (two processes writing one folder never share a temporary file).
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.densa-tmp", std::process::id()))
}

/// Writes `path` through a temporary file in the same folder, synced and renamed: the file
/// exists whole or not at all.
pub fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Row in the index (0-based).
    pub index: usize,
    pub score: f32,
    pub passage: Passage,
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
    /// Opens a complete index folder written by [`build_index`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.is_file() {
            return Err(Error::MissingFile {
                path: manifest_path,
                hint: " (not a densa index folder)".into(),
            });
        }
        let manifest = read_manifest(&manifest_path)?;
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
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            Error::InvalidInput(format!("{}: passage {i}: {e}", self.dir.display()))
        })?;
        let field = |k: &str| value[k].as_str().map(str::to_owned);
        Ok(Passage {
            id: field("id").unwrap_or_default(),
            title: field("title"),
            text: field("text").unwrap_or_default(),
        })
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
        if encoder.dim() != self.dim() {
            return Err(Error::InvalidInput(format!(
                "the question encoder gives {}-dimensional vectors, the index holds {}-dimensional ones (wrong model pair?)",
                encoder.dim(),
                self.dim()
            )));
        }
        let queries = encoder.embed(questions)?;
        encoder.install(|| self.search(&queries.data, k))
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

    /// Rows of every passage id (for evaluation: gold ids to rows).
    pub fn id_rows(&self) -> Result<std::collections::HashMap<String, usize>> {
        (0..self.len())
            .map(|i| Ok((self.passage(i)?.id, i)))
            .collect()
    }
}
