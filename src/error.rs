//! The error type of the whole crate.

use std::path::PathBuf;

/// Everything that can go wrong in densa, as a typed enum.
///
/// Messages name the file, the tensor and what was expected, so that an operator who points
/// densa at the wrong folder learns what is wrong without reading the code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the model folder needs is absent.
    #[error("{path}: file not found{hint}")]
    MissingFile { path: PathBuf, hint: String },
    /// The folder holds only a PyTorch pickle checkpoint.
    #[error("{dir}: holds pytorch_model.bin but no model.safetensors; densa reads safetensors only (it never unpickles). Convert once with: python tools/convert_to_safetensors.py {dir}")]
    PytorchOnly { dir: PathBuf },
    /// A safetensors file is malformed.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// `config.json` (or another JSON configuration file) is invalid or unsupported.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor {name} not found in the checkpoint (looked for prefixes: {prefixes})")]
    MissingTensor { name: String, prefixes: String },
    /// A tensor has a shape other than the configuration implies.
    #[error("tensor {name}: shape {found:?}, expected {expected:?} from config.json")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor has a dtype densa cannot use for it.
    #[error("tensor {name}: dtype {dtype} is not supported (use F32, F16 or BF16)")]
    Dtype { name: String, dtype: String },
    /// A weight holds NaN or ±Inf (allowed only with `Options::allow_non_finite`).
    #[error("tensor {name}: {count} values are NaN or infinite (first at index {first_index}: {first_value}); refusing to embed with it (allow_non_finite loads it anyway)")]
    NonFinite {
        name: String,
        count: usize,
        first_index: usize,
        first_value: f32,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An embedding came out holding NaN or ±Inf (refused unless `Options::allow_non_finite`).
    #[error("input {input} (counting from 0): its embedding holds {count} NaN or infinite values; refusing to return it (allow_non_finite lets such values through)")]
    NonFiniteOutput { input: usize, count: usize },
    /// An output folder already holds files that writing it would replace.
    #[error("{dir}: already holds {}; refusing to overwrite (choose another folder, or ask to overwrite)", files.join(", "))]
    WouldOverwrite { dir: PathBuf, files: Vec<String> },
    /// A request the engine cannot satisfy (bad option or input).
    #[error("{0}")]
    InvalidInput(String),
    /// A batching queue is full: the call was refused, not queued (retry later).
    #[error(
        "the queue holds {queued_tokens} tokens; {tokens} more would pass its limit of {limit}"
    )]
    Overloaded {
        queued_tokens: usize,
        tokens: usize,
        limit: usize,
    },
    /// A failure inside the engine, not the caller's (a panic caught, an inconsistency).
    #[error("internal error: {0}")]
    Internal(String),
    /// A batching queue was shut down before the call ran.
    #[error("the batching queue is shut down")]
    ShutDown,
}

/// `Result` with densa's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An error opening or reading `path`: [`Error::MissingFile`] when it does not exist.
    pub fn reading(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: path.into(),
                hint: String::new(),
            },
            _ => Error::io(path, source),
        }
    }
}
