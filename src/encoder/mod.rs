//! The public entry point: an [`Encoder`] loaded from a model folder.

use crate::checkpoint::Checkpoint;
use crate::config::{BertConfig, ModelType};
use crate::error::{Error, Result};
use crate::model::{BertModel, Precision, Workspace, DEFAULT_MAX_BATCH_TOKENS};
use crate::pooling::Pooling;
use crate::sentence_transformers::SentenceTransformers;
use crate::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod embed;
mod encoding;

pub use encoding::{Encoding, EncodingBuilder, PassKey, Prompt, VectorSettings};

/// How to load and run an encoder. `Options::default()` is what the CLI does without flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads of this encoder's own pool; 0 means one per available core.
    pub threads: usize,
    /// How token vectors become one vector; [`Pooling::Auto`] follows the checkpoint.
    pub pooling: Pooling,
    /// L2-normalise every embedding (on top of what the checkpoint asks for), after
    /// `truncate_dim`.
    pub normalize: bool,
    /// The prompt before every text (by default the folder's `default_prompt_name`'s, if any).
    pub prompt: Prompt,
    /// Keep the first N values of every embedding (Matryoshka), after the folder's own
    /// modules and before `normalize`, as sentence-transformers' `truncate_dim`.
    pub truncate_dim: Option<usize>,
    /// Truncation length in tokens, special tokens included. `None`: sentence-transformers'
    /// `max_seq_length` if the folder has one, else the smaller of 512 and
    /// `max_position_embeddings`.
    pub max_length: Option<usize>,
    /// Most sequences per forward pass of a call (the token bound below applies too). Calls
    /// merged by a [`crate::batching::Batcher`] are bounded by tokens alone.
    pub batch_size: usize,
    /// Precision of the encoder's linear layers ([`Precision::Int8`] quantizes an f32
    /// checkpoint at load; [`Precision::Auto`] is int8 for a `densa quantize` folder, else f32).
    pub precision: Precision,
    /// Load weights that hold NaN or ±Inf (otherwise loading fails naming the tensor).
    pub allow_non_finite: bool,
    /// Most tokens (real, unpadded) in one forward pass: a batch of `batch_size` inputs that
    /// holds more is split, so activation memory stays bounded whatever the inputs' lengths.
    /// 0 means no limit beyond `batch_size`. A single input longer than this still runs alone.
    pub max_batch_tokens: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: 0,
            pooling: Pooling::Auto,
            normalize: false,
            prompt: Prompt::FolderDefault,
            truncate_dim: None,
            max_length: None,
            batch_size: 32,
            precision: Precision::Auto,
            allow_non_finite: false,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
        }
    }
}

/// The most threads an encoder starts per available core ([`Options::threads`]).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// Embeddings of several inputs: `len()` rows of `dim` values, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    /// Row-major `(len, dim)`.
    pub data: Vec<f32>,
    /// How many inputs were cut to the maximum length.
    pub truncated: usize,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The embedding of input `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All embeddings, in input order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
}

/// A loaded text encoder: tokenizer, weights and its own thread pool.
///
/// `Encoder` is `Send + Sync`: share one (`Arc<Encoder>`) between threads and call it from all
/// of them at once. Each call runs on the encoder's pool of [`Options::threads`] threads.
pub struct Encoder {
    model: BertModel,
    tokenizer: TextTokenizer,
    checkpoint: Checkpoint,
    pooling: Pooling,
    /// The folder's sentence-transformers modules (Dense, Normalize) and prompts.
    st: SentenceTransformers,
    /// The prompt, pooling's skip, truncation and normalisation of calls that name none.
    encoding: Encoding,
    batch_size: usize,
    /// Most tokens per pass (`usize::MAX`: no bound).
    max_batch_tokens: usize,
    /// Return embeddings holding NaN/Inf instead of failing (as for the weights).
    allow_non_finite: bool,
    pool: rayon::ThreadPool,
    dir: PathBuf,
    /// Idle forward-pass workspaces: a call takes one (or makes one) and puts it back, so
    /// steady-state calls allocate no activation memory, and concurrent calls never share.
    workspaces: Mutex<Vec<Workspace>>,
}

impl Encoder {
    /// Loads a Hugging Face model folder (`config.json`, `model.safetensors` or its shards, the
    /// tokenizer files, optionally sentence-transformers' `modules.json`).
    pub fn from_dir(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.to_owned(),
                hint: " (expected a model folder)".into(),
            });
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let checkpoint = Checkpoint::open_dir(dir)?;
        let st = SentenceTransformers::read(dir)?;
        let max_length = options
            .max_length
            .or(st.max_seq_length)
            .unwrap_or(config.default_max_length());
        let (tokenizer_length, lowercase) = (
            max_length.min(config.max_positions()).max(1),
            st.do_lower_case,
        );
        let tokenizer = || {
            let mut tokenizer = TextTokenizer::from_dir(dir, tokenizer_length)?;
            tokenizer.set_lowercase_input(lowercase);
            Ok(tokenizer)
        };
        Self::build(
            config,
            checkpoint,
            tokenizer,
            st,
            options,
            dir.to_owned(),
            max_length,
        )
    }

    /// An encoder from parts made elsewhere: a config, in-memory or mapped weights, and a
    /// tokenizer. Used by tests that build weights themselves.
    pub fn from_parts(
        config: BertConfig,
        checkpoint: Checkpoint,
        tokenizer: TextTokenizer,
        options: Options,
    ) -> Result<Self> {
        let max_length = tokenizer.max_length();
        Self::build(
            config,
            checkpoint,
            || Ok(tokenizer),
            SentenceTransformers {
                include_prompt: true,
                ..Default::default()
            },
            options,
            PathBuf::new(),
            max_length,
        )
    }

    fn build(
        config: BertConfig,
        checkpoint: Checkpoint,
        tokenizer: impl FnOnce() -> Result<TextTokenizer> + Send,
        st: SentenceTransformers,
        options: Options,
        dir: PathBuf,
        max_length: usize,
    ) -> Result<Self> {
        densa_kernels::Isa::check_env().map_err(Error::InvalidInput)?;
        if options.batch_size == 0 {
            return Err(Error::InvalidInput("batch_size must be at least 1".into()));
        }
        let precision = crate::quantize::resolve_precision(&checkpoint, options.precision, &dir)?;
        let packed_width = crate::pack::packed_width(&checkpoint, &dir)?;
        let pool = thread_pool(options.threads)?;
        // Packing runs on the encoder's own threads, as every later call does.
        let allow_non_finite = options.allow_non_finite;
        // The tokenizer (its vocabulary read and checked against the embedding table) loads
        // on its own thread while the weights load on the pool: a cold start waits for the
        // slower of the two, not for both.
        let (tokenizer, model) = std::thread::scope(|scope| {
            let tokenizer = scope.spawn(|| {
                let tokenizer = tokenizer()?;
                check_tokenizer(&config, &tokenizer, max_length, &dir)?;
                Ok::<_, Error>(tokenizer)
            });
            let model = pool.install(|| {
                BertModel::load(
                    &checkpoint,
                    &config,
                    precision,
                    allow_non_finite,
                    packed_width,
                )
            });
            let tokenizer = tokenizer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (tokenizer, model)
        });
        let (tokenizer, model) = (tokenizer?, model?);
        // The linear weights now live in packed form: give back the pages packing read. (Not
        // when they are densa quantize's or densa pack's panels: they are used from those
        // pages.)
        if !model.borrows_weights() {
            checkpoint.release_resident_pages();
        }
        let pooling = resolve_pooling(options.pooling, &model, &st);
        let width = modules_width(&st, pooling, &model)?;
        let encoding = EncodingBuilder::new(&st, &tokenizer, width)
            .prompt(options.prompt.clone())
            .truncate_dim(options.truncate_dim)
            .normalize(options.normalize)
            .build()?;
        Ok(Encoder {
            model,
            tokenizer,
            checkpoint,
            pooling,
            st,
            encoding,
            batch_size: options.batch_size,
            max_batch_tokens: match options.max_batch_tokens {
                0 => usize::MAX,
                n => n,
            },
            allow_non_finite,
            pool,
            dir,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    /// An idle workspace, or a new one.
    pub(crate) fn take_workspace(&self) -> Workspace {
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Returns a workspace for the next call.
    pub(crate) fn put_workspace(&self, workspace: Workspace) {
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(workspace);
    }

    /// Width of the embeddings this encoder returns.
    pub fn dim(&self) -> usize {
        self.dim_of(&self.encoding)
    }

    /// Width of the pooled vector, before the folder's Dense modules.
    pub(crate) fn pooled_dim(&self) -> usize {
        // Checked at load: the pooling can produce this model's vectors.
        self.pooling.output_dim(&self.model).unwrap_or(0)
    }

    /// The pooling in use (never [`Pooling::Auto`]).
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether embeddings are L2-normalised (by the folder's Normalize module, or asked for).
    pub fn normalizes(&self) -> bool {
        self.encoding.gives_unit_vectors()
    }

    /// The prompt put before every text, if any.
    pub fn prompt(&self) -> Option<&str> {
        self.encoding.prompt()
    }

    /// How many leading tokens (the prompt's) pooling leaves out.
    pub fn prompt_tokens(&self) -> usize {
        self.encoding.prompt_tokens()
    }

    /// The folder's sentence-transformers settings.
    pub fn sentence_transformers(&self) -> &SentenceTransformers {
        &self.st
    }

    /// The loaded network.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// The checkpoint's stored tensors.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Threads in this encoder's pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Most tokens in one forward pass (`usize::MAX`: no bound): what a
    /// [`crate::batching::Batcher`] fills each pass up to.
    pub fn max_batch_tokens(&self) -> usize {
        self.max_batch_tokens
    }

    /// The folder this encoder was loaded from (empty for [`Encoder::from_parts`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` on this encoder's thread pool (for benchmarks that time the model alone).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Refuses a tokenizer the checkpoint cannot follow: `max_length` below the special tokens
/// every text gets or past the positions, ids beyond the embedding table.
fn check_tokenizer(
    config: &BertConfig,
    tokenizer: &TextTokenizer,
    max_length: usize,
    dir: &Path,
) -> Result<()> {
    let specials = tokenizer.special_tokens(false);
    if max_length < specials.max(1) || max_length > config.max_positions() {
        return Err(Error::InvalidInput(format!(
            "max_length {max_length} must be at least {} (the special tokens every text gets) and at most the {} positions of max_position_embeddings ({})",
            specials.max(1),
            config.max_positions(),
            config.max_position_embeddings
        )));
    }
    // Every id the tokenizer can emit must have an embedding row.
    if tokenizer.id_bound() > config.vocab_size {
        return Err(Error::Config {
            path: dir.join("config.json"),
            message: format!(
                "the tokenizer has ids up to {} ({} tokens) but vocab_size is {}: ids beyond the embedding table would have no vector (wrong tokenizer for this checkpoint?)",
                tokenizer.id_bound() - 1,
                tokenizer.id_bound(),
                config.vocab_size
            ),
        });
    }
    Ok(())
}

/// The encoder's own pool of `threads` threads (0: one per core), at most
/// [`MAX_THREADS_PER_CORE`] per core.
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match threads {
        0 => cores,
        n if n > MAX_THREADS_PER_CORE * cores => {
            return Err(Error::InvalidInput(format!(
                "{n} threads is more than {MAX_THREADS_PER_CORE} per core ({cores} cores here): more would only slow every call down"
            )))
        }
        n => n,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("densa-{i}"))
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot start {threads} threads: {e}")))
}

/// What [`Pooling::Auto`] means for this checkpoint: DPR pools DPR's way; a
/// sentence-transformers folder as its Pooling module says; plain BERT with a pooler through
/// it; anything else `[CLS]`.
fn resolve_pooling(asked: Pooling, model: &BertModel, st: &SentenceTransformers) -> Pooling {
    match asked {
        Pooling::Auto if model.config.model_type == ModelType::Dpr => Pooling::Dpr,
        Pooling::Auto => match (&st.pooling, &model.pooler) {
            (Some((pooling, _)), _) => *pooling,
            (None, Some(_)) => Pooling::Pooler,
            (None, None) => Pooling::Cls,
        },
        other => other,
    }
}

/// The vector's width after the folder's Dense modules, which must chain from the pooled
/// width.
fn modules_width(st: &SentenceTransformers, pooling: Pooling, model: &BertModel) -> Result<usize> {
    let mut width = pooling.output_dim(model)?;
    for (i, dense) in st.dense.iter().enumerate() {
        if dense.in_features != width {
            return Err(Error::InvalidInput(format!(
                "Dense module {i} takes {} values but receives {width} (pooling {})",
                dense.in_features,
                pooling.name()
            )));
        }
        width = dense.out_features;
    }
    Ok(width)
}
