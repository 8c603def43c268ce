//! The flags every subcommand that loads a model shares, and how they open one.

use densa::sentence_transformers::SentenceTransformers;
use densa::{Encoder, Error, Options, Pooling, Precision, Prompt};
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct ModelArgs {
    /// Model folder (config.json, model.safetensors, tokenizer files).
    #[arg(long)]
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// How a model runs: the flags every subcommand that loads one shares (`eval`'s two models
/// too).
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct RunArgs {
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Arithmetic precision: auto (int8 for a folder written by densa quantize, f32
    /// otherwise), f32, or int8 (the encoder's linear layers quantized at load: per-channel
    /// weights, per-token activations).
    #[arg(long, value_parser = Precision::parse, default_value = "auto")]
    pub(crate) precision: Precision,
    /// Most tokens in one forward pass (bounds activation memory; larger batches are split;
    /// 0 = no limit).
    #[arg(long, default_value_t = densa::DEFAULT_MAX_BATCH_TOKENS)]
    pub(crate) max_batch_tokens: usize,
    /// Load weights that hold NaN or infinite values instead of refusing them.
    #[arg(long)]
    pub(crate) allow_non_finite: bool,
}

/// How texts become vectors: pooling, prompts, truncation and normalisation. Each defaults
/// to what the model folder says (sentence-transformers' modules and prompts included).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct EncodeArgs {
    /// Pooling: auto, cls, mean, max, mean_sqrt_len, weighted_mean, last_token, pooler or
    /// dpr (auto: what the folder implies).
    #[arg(long, value_parser = Pooling::parse, default_value = "auto")]
    pub(crate) pooling: Pooling,
    /// L2-normalise every vector (after --truncate-dim).
    #[arg(long)]
    pub(crate) normalize: bool,
    /// A literal prefix for every text, e.g. "query: " (wins over --prompt-name).
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// A prompt of the folder's config_sentence_transformers.json, by name.
    #[arg(long)]
    pub(crate) prompt_name: Option<String>,
    /// Keep the first N values of every vector (Matryoshka), before --normalize.
    #[arg(long)]
    pub(crate) truncate_dim: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// embed, bench: the folder's default_prompt_name only.
    Any,
    /// index: a prompt named "passage" or "document".
    Passage,
    /// search, eval questions: a prompt named "query".
    Query,
}

/// The run flags (threads, precision, batching, non-finite) as library options.
pub(crate) fn run_options(
    model: &ModelArgs,
    max_length: Option<usize>,
    batch_size: usize,
) -> Options {
    let run = &model.run;
    Options {
        threads: run.threads,
        max_length,
        batch_size,
        precision: run.precision,
        allow_non_finite: run.allow_non_finite,
        max_batch_tokens: run.max_batch_tokens,
        ..Options::default()
    }
}

/// The prompt the flags ask for on `side`: theirs, else the folder's prompt for the side
/// ("passage" or "document" for passages, "query" for questions), else the folder's default.
pub(crate) fn side_prompt(encode: &EncodeArgs, side: Side, st: &SentenceTransformers) -> Prompt {
    let flags = Prompt::from_flags(encode.prompt.as_deref(), encode.prompt_name.as_deref());
    let names: &[&str] = match side {
        Side::Any => &[],
        Side::Passage => &["passage", "document"],
        Side::Query => &["query"],
    };
    let folders = names
        .iter()
        .find(|name| st.prompts.iter().any(|(n, _)| n == *name))
        .map(|name| Prompt::Named(name.to_string()));
    flags.or(folders).unwrap_or_default()
}

pub(crate) fn open_encoder(
    model: &ModelArgs,
    encode: &EncodeArgs,
    side: Side,
    max_length: Option<usize>,
    batch_size: usize,
) -> Result<Encoder, Error> {
    let st = SentenceTransformers::read(&model.model)?;
    let options = Options {
        pooling: encode.pooling,
        normalize: encode.normalize,
        prompt: side_prompt(encode, side, &st),
        truncate_dim: encode.truncate_dim,
        ..run_options(model, max_length, batch_size)
    };
    Encoder::from_dir(&model.model, options)
}

/// One line on standard error saying how an encoder turns text into vectors.
pub(crate) fn describe_encoding(what: &str, encoder: &Encoder) {
    let prompt = match encoder.prompt() {
        Some(p) => format!("prompt {p:?}"),
        None => "no prompt".into(),
    };
    eprintln!(
        "{what}: pooling {}, {prompt}, {}, dimension {}",
        encoder.pooling().name(),
        if encoder.normalizes() {
            "normalized"
        } else {
            "not normalized"
        },
        encoder.dim()
    );
}
