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
//!   m3.bin, colbert.npy with a bge-m3 folder: lexical weights and ColBERT vectors
//!                       (`m3_store.rs`), searched by `Index::search_hybrid`
//!   chunks/             while building: NNNNNN-TAG.npy + NNNNNN-TAG.jsonl per chunk of passages
//!                       (TAG: a hash of the model, the passages and the chunk size)
//! ```
//!
//! Building is resumable and never leaves a torn index: passages are cut into chunks of
//! `chunk_size`; each chunk's files are written to a temporary name and renamed, so a chunk
//! exists whole or not at all, and a rerun skips the chunks that exist. Once every chunk is
//! there, they are concatenated into the final files (each renamed into place), the manifest
//! is marked complete, and the build's own chunk files are removed. [`Index::open`] refuses an
//! incomplete index. A build holds an advisory lock on the folder (`flock`), so a second
//! concurrent build of it fails at once; it removes only files it created itself (by name and
//! build tag), including the temporaries and chunks a killed run left behind.
//!
//! `--shard I/N` encodes the chunks `k` with `k % N == I` only: N processes on N machines share
//! a collection, and merging is copying every shard's `chunks/` into one folder and running the
//! same command there (it finds all chunks and only concatenates). See docs/RETRIEVAL.md.

mod ann;
mod build;
mod chunk;
mod collection;
mod eval;
pub mod hybrid;
mod m3_store;
mod passages;
mod reader;
mod search;
mod storage;

pub use ann::{build_ann, AnnOptions, AnnReport};
pub use build::{build_index, BuildReport, IndexOptions, INDEX_FORMAT_VERSION};
pub use chunk::{chunk_documents, Chunking, PassageEncoding};
pub use collection::{read_collection, Collection};
pub use eval::{answer_scores, read_qa_pairs, reranked_gold_ranks, RetrievalMetrics};
pub use passages::{read_passages, Id, Origin, Passage};
pub use reader::{Index, SearchHit, Shard};
pub use search::{SearchOptions, ANN_MIN_ROWS};
pub use storage::{write_codes, Calibration, VectorKind};
