//! `densa quantize`, `densa pack`, `densa inspect` and `densa bench`.

use crate::{open_encoder, print_stdout, run_options, EncodeArgs, ModelArgs, Side};
use densa::config::ModelType;
use densa::{Encoder, Error, Options, Reader, Reranker};
use std::path::{Path, PathBuf};

/// `densa quantize` and `densa pack`: a model folder in, a converted copy out.
#[derive(clap::Args)]
pub(crate) struct QuantizeArgs {
    /// f32 (or F16/BF16) model folder.
    #[arg(long)]
    model: PathBuf,
    /// Folder to write (created if missing; never the model folder or inside it).
    #[arg(long)]
    output: PathBuf,
    /// Replace files an existing output folder already holds.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    #[arg(long)]
    model: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Sequences per forward pass.
    #[arg(long)]
    batch: usize,
    /// Tokens per sequence, [CLS] and [SEP] included.
    #[arg(long)]
    seq: usize,
    /// Timed iterations (after two untimed warm-up runs).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Time a task head on the encoder instead of the embedding: a cross-encoder's
    /// logits (`--batch` pairs) or a reader's start and end logits (`--batch` windows).
    #[arg(long, value_enum)]
    head: Option<BenchHead>,
}

/// An output folder's refusal to be overwritten, with the flag that allows it.
fn overwrite_hint(e: Error) -> Error {
    match e {
        Error::WouldOverwrite { dir, files } => Error::InvalidInput(format!(
            "{}: already holds {}; choose another --output, or pass --force to replace them",
            dir.display(),
            files.join(", ")
        )),
        other => other,
    }
}

pub(crate) fn pack(args: QuantizeArgs) -> Result<(), Error> {
    let isa = densa_kernels::Isa::selected();
    let report = densa::pack::pack_dir(&args.model, &args.output, args.force, isa)
        .map_err(overwrite_hint)?;
    eprintln!(
        "densa: {} linear weights packed at f32 for {} ({} columns per panel), {} tensors copied; {} bytes -> {} bytes ({})",
        report.quantized_tensors,
        isa.name(),
        densa_kernels::gemm::kernel_shape(isa).1,
        report.copied_tensors,
        report.bytes_in,
        report.bytes_out,
        args.output.display()
    );
    Ok(())
}

pub(crate) fn quantize(args: QuantizeArgs) -> Result<(), Error> {
    let (model, output) = (&args.model, &args.output);
    let report =
        densa::quantize::quantize_dir(model, output, args.force).map_err(overwrite_hint)?;
    eprintln!(
        "densa: {} linear weights quantized to int8, {} tensors copied; {} bytes -> {} bytes ({})",
        report.quantized_tensors,
        report.copied_tensors,
        report.bytes_in,
        report.bytes_out,
        output.display()
    );
    Ok(())
}

/// `path` relative to `dir` when inside it.
fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// Whether the checkpoint stores the trunk tensor `name` under any of its prefixes.
fn model_has_tensor(encoder: &Encoder, name: &str) -> bool {
    let names = densa::model::TensorNames::of(encoder.model().config.model_type);
    names
        .prefixes
        .iter()
        .any(|p| encoder.checkpoint().contains(&format!("{p}{name}")))
}

pub(crate) fn inspect(args: InspectArgs) -> Result<(), Error> {
    let model_dir = &args.model;
    // Load even a model with NaN or Inf weights, to report where they are.
    let encoder = Encoder::from_dir(
        model_dir,
        Options {
            threads: 1,
            allow_non_finite: true,
            ..Options::default()
        },
    )?;
    let mut report = format!("model:        {}\n", model_dir.display());
    report += &inspect_network(&encoder);
    report += &inspect_encoding(&encoder, model_dir);
    report += &inspect_tensors(&encoder)?;
    print_stdout(&report)
}

/// `inspect`'s line on a ModernBERT's layers: which attend globally, the window of the others,
/// the gated feed-forward and the biases.
fn inspect_modern_layers(c: &densa::BertConfig) -> String {
    let plan: String = (0..c.num_hidden_layers)
        .map(|i| match c.attention_window(i) {
            None => 'G',
            Some(_) => 'L',
        })
        .collect();
    let window = (0..c.num_hidden_layers)
        .find_map(|i| c.attention_window(i))
        .map_or("none".to_string(), |w| format!("±{w}"));
    let biases = [
        ("attention", c.attention_bias),
        ("mlp", c.mlp_bias),
        ("norm", c.norm_bias),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect::<Vec<_>>();
    let biases = match biases.is_empty() {
        true => "none".to_string(),
        false => biases.join(", "),
    };
    format!("layers:       pre-norm, {plan} (G global, L local window {window}), GeGLU feed-forward, biases {biases}\n")
}

/// `inspect`'s lines on the network: architecture, positions, vocabulary, heads.
fn inspect_network(encoder: &Encoder) -> String {
    let model = encoder.model();
    let c = &model.config;
    let mut report = format!("architecture: {} (config.json model_type), {} layers, hidden {}, {} heads (head dim {}), FFN {}, activation {:?}\n", c.model_type.name(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.head_dim(), c.intermediate_size, c.hidden_act);
    let positions = if let Some(bases) = c.rotary {
        format!(
            "rotary (base {} global, {} local), from 0 ({})",
            bases.global, bases.local, c.max_position_embeddings
        )
    } else if c.sinusoidal_positions {
        let stored = model_has_tensor(encoder, "embeddings.position_embeddings.weight");
        let source = match stored {
            true => "stored",
            false => "computed: not in the checkpoint",
        };
        format!("sinusoidal ({source}), from 0")
    } else if c.position_offset > 0 {
        format!(
            "learned, from pad_token_id + 1 = {} in every sequence ({} usable of {})",
            c.position_offset,
            c.max_positions(),
            c.max_position_embeddings
        )
    } else {
        format!("learned, from 0 ({})", c.max_position_embeddings)
    };
    report += &format!("positions:    {positions}\n");
    if c.norm_placement == densa::config::NormPlacement::Pre {
        report += &inspect_modern_layers(c);
    }
    let types = match c.type_vocab_size {
        0 => "none".to_string(),
        1 => "1 (always 0)".to_string(),
        n => n.to_string(),
    };
    report += &format!(
        "vocabulary:   {} tokens, token types {types}, LayerNorm eps {:e}\n",
        c.vocab_size, c.layer_norm_eps
    );
    let projection = model.projection.as_ref().map_or("no".to_string(), |p| {
        format!("{} -> {}", p.in_features, p.out_features)
    });
    let pooler = if model.pooler.is_some() { "yes" } else { "no" };
    report + &format!("heads:        pooler {pooler}, projection {projection}\n")
}

/// `inspect`'s lines on how texts become vectors: pooling, modules, prompts, width,
/// precision, length.
fn inspect_encoding(encoder: &Encoder, model_dir: &Path) -> String {
    let model = encoder.model();
    let st = encoder.sentence_transformers();
    let pooling_source = match (&st.pooling, model.config.model_type) {
        (_, ModelType::Dpr) => "DPR: [CLS], then encode_proj if present".to_string(),
        (Some((_, path)), _) => format!("from {}", relative(path, model_dir)),
        (None, _) if model.pooler.is_some() => "pooler.dense in the checkpoint".to_string(),
        (None, _) => "default: [CLS]".to_string(),
    };
    let left_out = match st.pooling.is_some() && !st.include_prompt {
        true => ", prompt tokens left out (include_prompt: false)",
        false => "",
    };
    let pooling = encoder.pooling().name();
    let mut report = format!("pooling:      {pooling} ({pooling_source}){left_out}\n");
    let mut modules: Vec<String> = st
        .dense
        .iter()
        .map(|d| {
            format!(
                "Dense {} -> {} ({:?})",
                d.in_features, d.out_features, d.activation
            )
        })
        .collect();
    if st.normalize {
        modules.push("Normalize".into());
    }
    if !modules.is_empty() {
        report += &format!("modules:      {} (modules.json)\n", modules.join(", "));
    }
    if !st.prompts.is_empty() {
        let prompts: Vec<String> = st
            .prompts
            .iter()
            .map(|(name, text)| format!("{name} = {text:?}"))
            .collect();
        report += &format!(
            "prompts:      {} (config_sentence_transformers.json; default: {})\n",
            prompts.join(", "),
            st.default_prompt_name.as_deref().unwrap_or("none")
        );
    }
    report += &format!("output dim:   {}\n", encoder.dim());
    report += &format!("precision:    {} (default)\n", model.precision.name());
    let length_source = match st.max_seq_length {
        Some(_) => "sentence-transformers' max_seq_length",
        None if model.config.rotary.is_some() => "max_position_embeddings, rotary positions",
        None => "the position embeddings, at most 512",
    };
    let max_length = encoder.tokenizer().max_length();
    report + &format!("max length:   {max_length} tokens ({length_source})\n")
}

/// `inspect`'s lines on the checkpoint: parameters, bytes, every tensor and whether its
/// values are finite.
fn inspect_tensors(encoder: &Encoder) -> Result<String, Error> {
    let checkpoint = encoder.checkpoint();
    let parameters = encoder.model().parameter_count();
    let mut report = format!("parameters:   {parameters} used by the model\n");
    report += &format!("mapped bytes: {}\n", checkpoint.mapped_bytes());
    let infos = checkpoint.tensor_infos();
    report += &format!("tensors:      {} stored\n", infos.len());
    let mut poisoned = Vec::new();
    for t in infos {
        let non_finite = checkpoint.non_finite_count(&t.name)?;
        let warning = if non_finite > 0 {
            poisoned.push(t.name.clone());
            format!("  {non_finite} NaN/Inf values")
        } else {
            String::new()
        };
        report += &format!("  {:<60} {:<5} {:?}{warning}\n", t.name, t.dtype, t.shape);
    }
    report += &match poisoned.len() {
        0 => "finite:       every weight is finite\n".to_string(),
        n => format!(
            "finite:       NO: {n} tensors hold NaN or Inf ({}); embed refuses this model unless --allow-non-finite\n",
            poisoned.join(", ")
        ),
    };
    Ok(report)
}

/// What `densa bench --head` times instead of the embedding.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchHead {
    /// A cross-encoder (`*ForSequenceClassification`): the logit of each pair.
    Rerank,
    /// A reader (`*ForQuestionAnswering`): start and end logits of every token.
    Read,
}

/// The model `densa bench` times.
enum Timed {
    Encoder(Encoder),
    Reranker(Reranker),
    Reader(Reader),
}

impl Timed {
    fn encoder(&self) -> &Encoder {
        match self {
            Timed::Encoder(encoder) => encoder,
            Timed::Reranker(reranker) => reranker.encoder(),
            Timed::Reader(reader) => reader.encoder(),
        }
    }

    /// One timed run: embeddings, pair logits, or token logits.
    fn run(&self, tokenized: &[densa::Tokenized]) -> Result<(), Error> {
        match self {
            Timed::Encoder(encoder) => encoder.embed_tokenized(tokenized).map(|_| ()),
            Timed::Reranker(reranker) => reranker.score_tokenized(tokenized).map(|_| ()),
            Timed::Reader(reader) => reader.token_logits(tokenized).map(|_| ()),
        }
    }
}

/// Times `batch` synthetic sequences of exactly `seq` tokens through the encoder (or the
/// head on it) and prints one JSON line: time, throughput and the fraction of the machine's
/// measured peak. The head's own layers are not in the FLOP count (under 0.01 % of BERT's).
pub(crate) fn bench(args: BenchArgs) -> Result<(), Error> {
    let BenchArgs {
        model,
        batch,
        seq,
        iters,
        head,
    } = args;
    let options = run_options(&model, None, batch.max(1));
    let timed = match head {
        Some(BenchHead::Rerank) => Timed::Reranker(Reranker::from_dir(&model.model, options)?),
        Some(BenchHead::Read) => Timed::Reader(Reader::from_dir(&model.model, options)?),
        None => Timed::Encoder(open_encoder(
            &model,
            &EncodeArgs::default(),
            Side::Any,
            None,
            batch.max(1),
        )?),
    };
    let encoder = timed.encoder();
    let max = encoder.tokenizer().max_length();
    if batch == 0 || seq < 2 || seq > max || iters == 0 {
        return Err(Error::InvalidInput(format!(
            "bench needs --batch >= 1, 2 <= --seq <= {max}, --iters >= 1"
        )));
    }
    // Synthetic sequences: [CLS] + seq-2 ordinary tokens + [SEP].
    let vocab = encoder.model().config.vocab_size as u32;
    let cls = encoder.tokenizer().token_to_id("[CLS]").unwrap_or(0);
    let sep = encoder.tokenizer().token_to_id("[SEP]").unwrap_or(0);
    let tokenized = densa::bench::synthetic_inputs(batch, seq, vocab, cls, sep);
    let timings = densa::bench::time_runs(2, iters, || timed.run(&tokenized))?;
    let median = timings.median_ms;
    let flops = encoder.model().flops(&vec![seq; batch]);
    let gflops = flops / (median / 1e3) / 1e9;
    let rss_mb = densa::bench::resident_megabytes();
    let (peak, peak_kind, isa) = machine_peak(encoder);
    // The memory limit: every thread of the pool streaming its share of 1 GiB (far beyond the
    // last-level cache), best of a few passes.
    let bandwidth = encoder.install(|| densa_kernels::probe::read_bandwidth_gbs(1 << 30, 400));
    let weight_bytes = encoder.model().linear_weight_bytes();
    let weight_gbs = weight_bytes / (median / 1e3) / 1e9;
    // The machine's limit for this shape: its arithmetic at the peak or its weights streamed at
    // the measured bandwidth, whichever takes longer (a question is memory-bound on a CPU
    // with many cores per channel, compute-bound on a 2-core VM with AVX-512).
    let (compute_ms, memory_ms) = (flops / peak / 1e6, weight_bytes / bandwidth / 1e6);
    let limit_ms = compute_ms.max(memory_ms);
    let limit_kind = if compute_ms >= memory_ms {
        "compute"
    } else {
        "memory"
    };
    let line = serde_json::json!({
        "head": head.map(|h| match h { BenchHead::Rerank => "rerank", BenchHead::Read => "read" }),
        "batch": batch, "seq": seq, "threads": encoder.threads(), "iters": iters, "precision": encoder.model().precision.name(),
        "isa": isa.name(),
        "median_ms": median, "min_ms": timings.min_ms, "max_ms": timings.max_ms,
        "tokens_per_s": (batch * seq) as f64 / (median / 1e3),
        "gflops": gflops,
        "peak_gflops": peak,
        "peak_kind": peak_kind,
        "fraction_of_peak": gflops / peak,
        "weight_bytes": weight_bytes,
        "weight_gbs": weight_gbs,
        "read_bandwidth_gbs": bandwidth,
        "fraction_of_bandwidth": weight_gbs / bandwidth,
        "limit_ms": limit_ms,
        "limit_kind": limit_kind,
        "fraction_of_limit": limit_ms / median,
        "rss_mb": rss_mb,
    });
    print_stdout(&format!("{line}\n"))
}

/// The machine's peak for the encoder's precision, in GFLOP/s (or GOP/s) over its threads:
/// the probe's single-core rate of f32 FMAs, or of int8 `vpdpbusd` where the int8 path uses
/// it; what kind of peak it is; the f32 instruction set.
fn machine_peak(encoder: &Encoder) -> (f64, &'static str, densa_kernels::Isa) {
    let threads = encoder.threads() as f64;
    let (core_peak, isa) = densa_kernels::probe::fma_peak_gflops(300);
    let int8_peak = match encoder.model().precision {
        densa::Precision::Int8 => densa_kernels::probe::vnni_peak_gops(300),
        _ => None,
    };
    match int8_peak {
        // AMX's tiles are faster than the VNNI peak this probe measures: the fraction can
        // then exceed 1, and the kind says so.
        Some(gops) if densa_kernels::Int8Isa::selected() == densa_kernels::Int8Isa::Amx => {
            (gops * threads, "vnni int8 (amx path, can exceed it)", isa)
        }
        Some(gops) => (gops * threads, "vnni int8", isa),
        None => (core_peak * threads, "fma f32", isa),
    }
}
