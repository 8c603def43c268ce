//! # densa
//!
//! A CPU inference engine for BERT-family text encoders (BERT, DPR, sentence-transformers),
//! written from scratch to give the same vectors as Hugging Face `transformers`.
//!
//! ```no_run
//! use densa::{Encoder, Options};
//!
//! let encoder = Encoder::from_dir("models/dpr-question", Options::default())?;
//! let questions = encoder.embed(&["¿Quién escribió el Quijote?"])?;
//! println!("{} vectors of {} values", questions.len(), questions.dim);
//! # Ok::<(), densa::Error>(())
//! ```
//!
//! The forward pass reads top to bottom in [`model`]; the numeric kernels live in the
//! `densa-kernels` crate.

// Functions stay short enough to read at once (clippy.toml: 80 lines).
#![warn(clippy::too_many_lines)]

pub mod batching;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod encoder;
pub mod error;
pub mod heads;
pub mod io;
pub mod model;
pub mod pack;
pub mod pipeline;
pub mod pooling;
pub mod quantize;
pub mod retrieval;
pub mod sentence_transformers;
#[cfg(feature = "serve")]
pub mod serve;
pub mod tokenizer;

pub use batching::{BatchLimits, Batcher, Pending};
pub use config::BertConfig;
pub use encoder::{Embeddings, Encoder, Encoding, EncodingBuilder, Options, Prompt};
pub use error::{Error, Result};
pub use heads::{Answer, PairScores, ReadOptions, Reader, Reranker};
pub use model::{Precision, Rows, DEFAULT_MAX_BATCH_TOKENS};
pub use pipeline::{AnswerOptions, PassageAnswer, PipelineResult, QaPipeline};
pub use pooling::Pooling;
pub use retrieval::{build_index, BuildReport, Index, IndexOptions, Passage, SearchHit};
pub use tokenizer::{Input, Tokenized};

// An `Encoder` is shared between request threads: this fails to compile if it stops being
// `Send + Sync`.
const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Encoder>()
};
