//! Building an index: chunks encoded and written whole, resumed, sharded, then assembled.

use super::chunk::{Chunking, PassageEncoding};
use super::collection::read_collection;
use super::passages::{fnv1a, model_fingerprint, Passage, FNV_OFFSET};
use super::storage::{write_codes, VectorKind};
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::heads::M3Heads;
use crate::io::npy::Dtype;
use crate::io::output::{is_temporary_of, sync_folder_of, write_output};
use crate::io::{failpoint, npy, read_json};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Version of the index layout in `manifest.json`.
pub const INDEX_FORMAT_VERSION: u64 = 1;

/// The files of a complete index (besides the build's chunks while it runs).
const FINAL_FILES: [&str; 6] = [
    "manifest.json",
    "vectors.npy",
    "passages.jsonl",
    "passages.offsets",
    "m3.bin",
    "colbert.npy",
];

/// Passages whose hidden states a bge-m3 build holds at once (at bge-m3's width and 512
/// tokens each, ~128 MiB).
const M3_PASSAGES_PER_PASS: usize = 64;

/// The files of one chunk: passages, dense vectors and (with bge-m3's heads) the lexical
/// weights and ColBERT vectors.
const CHUNK_FILES: [&str; 4] = ["npy", "jsonl", "m3", "colbert.npy"];

/// How to build an index.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Passages per chunk: the unit of resumption and sharding.
    pub chunk_size: usize,
    /// `(I, N)`: encode only chunks `k` with `k % N == I`, then (with `assemble_shard`)
    /// assemble them as shard `I`'s own index, searchable alone. The chunks stay, so that
    /// every shard's chunks copied into one folder assemble the whole collection's index.
    pub shard: Option<(usize, usize)>,
    /// With `shard`: assemble the shard's index once its chunks are encoded (default); off
    /// when the shards are only encoding for one merged index (as `densa.ray.build_index`).
    pub assemble_shard: bool,
    /// One text per passage from this template (`"{title}. {text}"`; a passage without a
    /// title gives its text alone) instead of the (title, text) pair.
    pub passage_template: Option<String>,
    /// The input holds documents, cut into passages this way (`None`: it holds passages).
    pub documents: Option<Chunking>,
    /// Encode passages longer than the model's max length truncated, instead of refusing them.
    pub truncate: bool,
    /// How the vectors are stored for search (f16 halves `vectors.npy`; int8 and binary add
    /// codes beside it).
    pub vectors: VectorKind,
    /// bge-m3's heads on the encoder: the same pass also stores each passage's lexical
    /// weights and ColBERT vectors (`m3.bin`, `colbert.npy`; f16 when `vectors` is not f32),
    /// and the dense vectors are bge-m3's (normalised `[CLS]`).
    pub m3: Option<std::sync::Arc<M3Heads>>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            chunk_size: 4096,
            shard: None,
            assemble_shard: true,
            passage_template: None,
            documents: None,
            truncate: false,
            vectors: VectorKind::F32,
            m3: None,
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
    /// Passages longer than the model's max length, encoded truncated (with `truncate`).
    pub truncated: usize,
    /// `(I, N)` when this run assembled shard `I` of `N`'s own index.
    pub shard_assembled: Option<(usize, usize)>,
}

impl BuildReport {
    /// Whether the folder holds a complete index, ready to search: the collection's, or
    /// (after a shard run) its shard's.
    pub fn is_complete(&self) -> bool {
        self.chunks_missing == 0 || self.shard_assembled.is_some()
    }
}

/// The chunk files of one build: `chunks/NNNNNN-TAG.{npy,jsonl}`.
struct ChunkFiles {
    dir: PathBuf,
    tag: String,
    count: usize,
    /// Whether chunks hold bge-m3's outputs too.
    m3: bool,
}

impl ChunkFiles {
    fn name(&self, k: usize, extension: &str) -> String {
        format!("{k:06}-{}.{extension}", self.tag)
    }

    fn path(&self, k: usize, extension: &str) -> PathBuf {
        self.dir.join(self.name(k, extension))
    }

    fn done(&self, k: usize) -> bool {
        self.extensions().iter().all(|e| self.path(k, e).is_file())
    }

    fn extensions(&self) -> &'static [&'static str] {
        if self.m3 {
            &CHUNK_FILES
        } else {
            &CHUNK_FILES[..2]
        }
    }

    /// Removes this build's chunk files and `chunks/` itself once empty: never a file of
    /// another build or one the user put there.
    fn remove(&self) -> Result<()> {
        for k in 0..self.count {
            for extension in CHUNK_FILES {
                match std::fs::remove_file(self.path(k, extension)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(self.path(k, extension), e))
                    }
                    _ => {}
                }
            }
        }
        // Fails (and is meant to) when anything else is in there.
        let _ = std::fs::remove_dir(&self.dir);
        sync_folder_of(&self.dir);
        Ok(())
    }
}

/// Removes the temporaries a killed run of this build left (`.NAME.PID.densa-tmp` of the final
/// files and of this build's chunks). Only called with the folder's lock held, so no other
/// process is writing them.
fn remove_orphaned_temporaries(output: &Path, chunks: &ChunkFiles) {
    let ours_in = |dir: &Path, names: &[String]| {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if names.iter().any(|of| is_temporary_of(&name, of)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    };
    ours_in(output, &FINAL_FILES.map(String::from));
    let chunk_names: Vec<String> = (0..chunks.count)
        .flat_map(|k| CHUNK_FILES.map(|e| chunks.name(k, e)))
        .collect();
    ours_in(&chunks.dir, &chunk_names);
}

/// Takes the folder's advisory lock (`flock` on the folder itself): a second build of the same
/// folder fails at once instead of encoding every chunk twice. Released when dropped, and by
/// the kernel when the process dies.
pub(super) fn lock_folder(output: &Path) -> Result<std::fs::File> {
    let folder = std::fs::File::open(output).map_err(|e| Error::io(output, e))?;
    match folder.try_lock() {
        Ok(()) => Ok(folder),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::InvalidInput(format!(
            "{}: another densa process is building an index in this folder; wait for it to end (or stop it), then run again",
            output.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(output, e)),
    }
}

/// Builds (or resumes building) the index of the passages (or, with
/// [`IndexOptions::documents`], of the documents) in `input` into `output`. `progress(done,
/// total)` is called after each chunk with passages done so far.
pub fn build_index(
    encoder: &Encoder,
    input: &Path,
    output: &Path,
    options: &IndexOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BuildReport> {
    let (shard, shards) = check_options(encoder, options)?;
    let encoding = PassageEncoding {
        encoder,
        template: options.passage_template.as_deref(),
    };
    let collection = read_collection(input, options.documents, &encoding, options.truncate)?;
    let (passages, passages_fingerprint) = (collection.passages, collection.fingerprint);
    let total = passages.len();
    let chunk_count = total.div_ceil(options.chunk_size);
    let chunk_range = |k: usize| k * options.chunk_size..((k + 1) * options.chunk_size).min(total);
    // The chunks this run encodes, and whether it assembles them alone (a shard's index).
    let mine: Vec<usize> = (shard..chunk_count).step_by(shards).collect();
    let as_shard = shards > 1 && options.assemble_shard;
    let mut manifest = manifest_of(encoder, options, total, passages_fingerprint);
    if as_shard {
        let rows: usize = mine.iter().map(|&k| chunk_range(k).len()).sum();
        manifest["shard"] = json!({"index": shard, "count": shards, "passages": rows});
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let _lock = lock_folder(output)?;
    let chunks = ChunkFiles {
        dir: output.join("chunks"),
        tag: build_tag(&manifest, options.chunk_size),
        count: chunk_count,
        m3: options.m3.is_some(),
    };
    remove_orphaned_temporaries(output, &chunks);
    let missing = || (0..chunk_count).filter(|&k| !chunks.done(k)).count();
    let report = |chunks_encoded, passages_encoded, chunks_missing| BuildReport {
        passages: total,
        chunks: chunk_count,
        chunks_encoded,
        passages_encoded,
        chunks_missing,
        truncated: collection.truncated,
        shard_assembled: as_shard.then_some((shard, shards)),
    };

    if start_or_resume(&output.join("manifest.json"), &manifest)? {
        if !as_shard {
            // A run killed after completing may have left its chunks: they go now.
            chunks.remove()?;
        }
        progress(total, total);
        return Ok(report(0, 0, missing()));
    }

    std::fs::create_dir_all(&chunks.dir).map_err(|e| Error::io(&chunks.dir, e))?;
    let mut done: usize = (0..chunk_count)
        .filter(|&k| chunks.done(k))
        .map(|k| chunk_range(k).len())
        .sum();
    progress(done, total);
    let (mut chunks_encoded, mut passages_encoded) = (0, 0);
    for &k in &mine {
        if chunks.done(k) {
            continue;
        }
        let part = &passages[chunk_range(k)];
        encode_chunk(&encoding, options.m3.as_deref(), part, &chunks, k)?;
        chunks_encoded += 1;
        passages_encoded += part.len();
        done += part.len();
        progress(done, total);
    }

    let missing = missing();
    let storage = Storage {
        dim: encoder.dim(),
        kind: options.vectors,
        m3: options
            .m3
            .as_ref()
            .map(|h| (h.colbert_dim(), encoder.model().config.vocab_size)),
    };
    if as_shard {
        // Every chunk of this shard is encoded (the loop above): its own index.
        assemble(output, &chunks, &mine, &chunk_range, storage, &manifest)?;
    } else if missing == 0 {
        let all: Vec<usize> = (0..chunk_count).collect();
        assemble(output, &chunks, &all, &chunk_range, storage, &manifest)?;
        failpoint("index-complete");
        chunks.remove()?;
    }
    Ok(report(chunks_encoded, passages_encoded, missing))
}

/// Writes this build's `manifest` (complete: false) into a new folder, or checks that the
/// folder's is the same build's. `true` when the folder already holds this build's complete
/// index (the same shard, or the whole collection); a complete index of another shard (or of
/// the whole collection, for a shard run) is marked incomplete until this run assembles its
/// own.
fn start_or_resume(manifest_path: &Path, manifest: &Value) -> Result<bool> {
    if manifest_path.is_file() {
        let existing = read_json(manifest_path)?;
        check_same_build(manifest_path, &existing, manifest)?;
        if existing["shard"] == manifest["shard"] {
            return Ok(existing["complete"] == json!(true));
        }
    }
    write_output(manifest_path, |out| {
        out.write_all(serde_json::to_string_pretty(manifest)?.as_bytes())
    })?;
    Ok(false)
}

/// An index of bge-m3's outputs stores bge-m3's own dense vectors (normalised `[CLS]`, the
/// hidden size wide) and its outputs of the passages as given: no prompt, no truncated width.
fn check_m3_encoder(encoder: &Encoder) -> Result<()> {
    let hidden = encoder.model().config.hidden_size;
    if encoder.prompt().is_some() || encoder.dim() != hidden {
        return Err(Error::InvalidInput(format!(
            "a bge-m3 folder's index stores bge-m3's own outputs: the passages without a prompt and {hidden}-wide dense vectors (this encoding: prompt {:?}, {} wide); leave out --prompt, --prompt-name and --truncate-dim",
            encoder.prompt(),
            encoder.dim()
        )));
    }
    Ok(())
}

/// `(I, N)` of `--shard I/N` (`(0, 1)` without one), once the options are checked.
fn check_options(encoder: &Encoder, options: &IndexOptions) -> Result<(usize, usize)> {
    if options.m3.is_some() {
        check_m3_encoder(encoder)?;
    }
    if options.chunk_size == 0 {
        return Err(Error::InvalidInput("chunk_size must be at least 1".into()));
    }
    let (shard, shards) = options.shard.unwrap_or((0, 1));
    if shards == 0 || shard >= shards {
        return Err(Error::InvalidInput(format!(
            "shard {shard} of {shards}: the shard must be below the number of shards (shards are numbered from 0)"
        )));
    }
    Ok((shard, shards))
}

/// What `manifest.json` says of a build: what was encoded with what (`complete` false until
/// it is assembled).
fn manifest_of(
    encoder: &Encoder,
    options: &IndexOptions,
    passages: usize,
    passages_fingerprint: u64,
) -> Value {
    json!({
        "format": "densa-index",
        "version": INDEX_FORMAT_VERSION,
        "dim": encoder.dim(),
        "passages": passages,
        "chunk_size": options.chunk_size,
        "chunks": passages.div_ceil(options.chunk_size),
        "passages_fingerprint": format!("{passages_fingerprint:016x}"),
        "model_fingerprint": format!("{:016x}", model_fingerprint(encoder)),
        "precision": encoder.model().precision.name(),
        // With bge-m3's heads the dense vectors are bge-m3's: normalised [CLS].
        "pooling": if options.m3.is_some() { "cls" } else { encoder.pooling().name() },
        "normalized": options.m3.is_some() || encoder.normalizes(),
        "max_length": encoder.tokenizer().max_length(),
        "prompt": encoder.prompt(),
        "passage_template": options.passage_template,
        "chunking": options.documents.map(|c| c.describe()),
        "vectors": options.vectors.name(),
        "m3": options.m3.as_ref().map(|h| json!({
            "colbert_dim": h.colbert_dim(),
            "vocabulary": encoder.model().config.vocab_size,
        })),
        "complete": false,
    })
}

/// The build's tag in its chunk files' names: chunks of another build (a shard run with
/// another model, passages file or chunk size, copied in by mistake) are never mixed in.
fn build_tag(manifest: &Value, chunk_size: usize) -> String {
    let build = format!(
        "{}|{}",
        manifest["model_fingerprint"], manifest["passages_fingerprint"]
    );
    let hash = fnv1a(
        build.as_bytes(),
        fnv1a(&chunk_size.to_le_bytes(), FNV_OFFSET),
    );
    format!("{:08x}", hash as u32)
}

/// Encodes chunk `k` (`part`) and writes its files whole: passages first, vectors last, so a
/// chunk counts as done once both exist.
fn encode_chunk(
    encoding: &PassageEncoding<'_>,
    m3: Option<&M3Heads>,
    part: &[Passage],
    chunks: &ChunkFiles,
    k: usize,
) -> Result<()> {
    let templated = encoding.templated(part);
    let inputs = PassageEncoding::inputs(part, &templated);
    let vectors = match m3 {
        // embed_inputs sorts by length into batches and returns rows in input order.
        None => encoding.encoder.embed_inputs(&inputs)?,
        // One pass for all three outputs: the dense vectors are bge-m3's.
        Some(heads) => {
            let tokenized = encoding.encoder.tokenize(&inputs)?;
            // A few passages at a time: every token's hidden state is held while their
            // outputs are computed.
            let mut outputs = Vec::with_capacity(tokenized.len());
            for part in tokenized.chunks(M3_PASSAGES_PER_PASS) {
                outputs.extend(heads.encode_tokenized(encoding.encoder, part)?);
            }
            write_output(&chunks.path(k, "m3"), |out| {
                super::m3_store::write_records(out, &outputs)
            })?;
            let colbert: Vec<f32> = outputs
                .iter()
                .flat_map(|o| o.colbert.iter().copied())
                .collect();
            let c = heads.colbert_dim();
            write_output(&chunks.path(k, "colbert.npy"), |out| {
                npy::write_f32_matrix(out, &colbert, colbert.len() / c.max(1), c)
            })?;
            let dim = outputs
                .first()
                .map_or(encoding.encoder.dim(), |o| o.dense.len());
            crate::encoder::Embeddings {
                dim,
                data: outputs.into_iter().flat_map(|o| o.dense).collect(),
                truncated: 0,
            }
        }
    };
    write_output(&chunks.path(k, "jsonl"), |out| {
        for p in part {
            out.write_all(p.to_json_line().as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    write_output(&chunks.path(k, "npy"), |out| {
        npy::write_f32_matrix(out, &vectors.data, part.len(), vectors.dim)
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
        "prompt",
        "passage_template",
        "chunking",
        "vectors",
        "m3",
    ] {
        if existing[key] != wanted[key] {
            return Err(Error::Config {
                path: path.to_owned(),
                message: format!(
                    "this folder holds an index built differently ({key}: {} there, {} now); write to another folder or delete it",
                    existing[key], wanted[key]
                ),
            });
        }
    }
    Ok(())
}

/// Concatenates the chunks `ks` (all, or one shard's) into the final files (the vectors as `kind` stores them, its codes
/// beside them) and marks the manifest complete. Every chunk is checked first (rows,
/// dimension, lines); each final file is renamed into place whole; until the manifest says
/// complete, a rerun simply does this again.
fn assemble(
    output: &Path,
    chunks: &ChunkFiles,
    ks: &[usize],
    chunk_range: &dyn Fn(usize) -> std::ops::Range<usize>,
    storage: Storage,
    manifest: &Value,
) -> Result<()> {
    let Storage { dim, kind, m3 } = storage;
    // Check everything before writing anything.
    let offsets_in_chunks = check_chunks(chunks, ks, chunk_range, dim)?;
    let total: usize = ks.iter().map(|&k| chunk_range(k).len()).sum();
    let dtype = kind.vectors_dtype();
    write_output(&output.join("vectors.npy"), |out| {
        npy::write_header(out, dtype, total, dim)?;
        for (i, (&k, &offset)) in ks.iter().zip(&offsets_in_chunks).enumerate() {
            let bytes = std::fs::read(chunks.path(k, "npy"))?;
            match dtype {
                Dtype::F16 => out.write_all(&f16_bytes(&bytes[offset..]))?,
                _ => out.write_all(&bytes[offset..])?,
            }
            if i == 0 {
                out.flush()?;
                failpoint("index-assembly");
            }
        }
        Ok(())
    })?;
    let mut offsets: Vec<u64> = vec![0];
    write_output(&output.join("passages.jsonl"), |out| {
        for &k in ks {
            let bytes = std::fs::read(chunks.path(k, "jsonl"))?;
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                offsets.push(offsets.last().copied().unwrap_or(0) + line.len() as u64);
            }
            out.write_all(&bytes)?;
        }
        Ok(())
    })?;
    write_output(&output.join("passages.offsets"), |out| {
        offsets
            .iter()
            .try_for_each(|o| out.write_all(&o.to_le_bytes()))
    })?;
    if kind.code_files(output).is_some() {
        write_codes(output, kind)?;
    }
    if let Some(shape) = m3 {
        super::m3_store::assemble(
            output,
            ks,
            &|k| chunk_range(k).len(),
            &|k| chunks.path(k, "m3"),
            &|k| chunks.path(k, "colbert.npy"),
            shape,
            kind,
        )?;
    }
    let mut complete = manifest.clone();
    complete["complete"] = json!(true);
    write_output(&output.join("manifest.json"), |out| {
        out.write_all(serde_json::to_string_pretty(&complete)?.as_bytes())
    })
}

/// Checks every chunk of `ks` (rows, dimension, lines) before any final file is written:
/// the data offset of each vectors chunk.
fn check_chunks(
    chunks: &ChunkFiles,
    ks: &[usize],
    chunk_range: &dyn Fn(usize) -> std::ops::Range<usize>,
    dim: usize,
) -> Result<Vec<usize>> {
    let bad = bad_chunk;
    let mut offsets_in_chunks = Vec::with_capacity(ks.len());
    for &k in ks {
        let (vectors, passages, rows) = (
            chunks.path(k, "npy"),
            chunks.path(k, "jsonl"),
            chunk_range(k).len(),
        );
        let bytes = std::fs::read(&vectors).map_err(|e| Error::io(&vectors, e))?;
        let (r, c, offset) = npy::parse_f32_header(&bytes).map_err(|e| bad(&vectors, e))?;
        if (r, c) != (rows, dim) || bytes.len() != offset + rows * dim * 4 {
            return Err(bad(
                &vectors,
                format!(
                    "holds ({r}, {c}) in {} bytes, expected ({rows}, {dim})",
                    bytes.len()
                ),
            ));
        }
        let text = std::fs::read(&passages).map_err(|e| Error::io(&passages, e))?;
        let lines = text.split_inclusive(|&b| b == b'\n').count();
        if lines != rows || text.last().is_some_and(|&b| b != b'\n') {
            return Err(bad(
                &passages,
                format!("holds {lines} lines, expected {rows}"),
            ));
        }
        offsets_in_chunks.push(offset);
    }
    Ok(offsets_in_chunks)
}

/// A chunk file that fails its checks: what is wrong, and how to mend it.
pub(super) fn bad_chunk(path: &Path, message: String) -> Error {
    Error::InvalidInput(format!(
        "{}: {message}; delete it and rerun to encode it again",
        path.display()
    ))
}

/// How the assembled index stores its outputs.
#[derive(Clone, Copy)]
struct Storage {
    dim: usize,
    kind: VectorKind,
    /// The ColBERT width and the vocabulary size, when chunks hold bge-m3's outputs.
    m3: Option<(usize, usize)>,
}

/// Little-endian float32 bytes as little-endian binary16 bytes (round to nearest, ties to even).
pub(super) fn f16_bytes(f32_bytes: &[u8]) -> Vec<u8> {
    f32_bytes
        .chunks_exact(4)
        .flat_map(|b| {
            let x = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            half::f16::from_f32(x).to_bits().to_le_bytes()
        })
        .collect()
}
