//! The `densa` command line: embed, tokenize, inspect, bench.

use clap::{Parser, Subcommand, ValueEnum};
use densa::io::output::{write_output, Pending};
use densa::io::records::{has_extension, read_records, Record};
use densa::{Embeddings, Encoder, Error, Input, Options, Pooling, Precision};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "densa",
    version,
    about = "BERT / DPR text encoders on the CPU, with the vectors of Hugging Face transformers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Auto,
    Cls,
    Mean,
    Max,
    MeanSqrtLen,
    Pooler,
    Dpr,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    /// int8 for a folder written by `densa quantize`, f32 otherwise.
    Auto,
    F32,
    /// Quantize the encoder's linear layers at load (per-channel weights, per-token activations).
    Int8,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// Model folder (config.json, model.safetensors, tokenizer files).
    #[arg(long)]
    model: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Arithmetic precision.
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionArg,
    /// Most tokens in one forward pass (bounds activation memory; larger batches are split;
    /// 0 = no limit).
    #[arg(long, default_value_t = densa::DEFAULT_MAX_BATCH_TOKENS)]
    max_batch_tokens: usize,
    /// Load weights that hold NaN or infinite values instead of refusing them.
    #[arg(long)]
    allow_non_finite: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts: one per input line, or JSON lines with "text" and optional "title".
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        /// Input file, or - for standard input. A name ending in .jsonl holds JSON objects.
        #[arg(long, default_value = "-")]
        input: String,
        /// Output file: .npy for a float32 [n, dim] array, anything else for JSON lines.
        /// Default: JSON lines on standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        pooling: PoolingArg,
        /// L2-normalise every vector.
        #[arg(long)]
        normalize: bool,
        /// Truncate inputs to this many tokens (default: a sentence-transformers folder's
        /// max_seq_length, else min(512, max_position_embeddings)).
        #[arg(long)]
        max_length: Option<usize>,
        /// Texts per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Print token ids and tokens of every input as JSON lines.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "-")]
        input: String,
        #[arg(long)]
        max_length: Option<usize>,
    },
    /// Write a copy of a model folder with int8 encoder linear layers (per-channel scales).
    Quantize {
        /// f32 (or F16/BF16) model folder.
        #[arg(long)]
        model: PathBuf,
        /// Folder to write (created if missing; never the model folder or inside it).
        #[arg(long)]
        output: PathBuf,
        /// Replace files an existing output folder already holds.
        #[arg(long)]
        force: bool,
    },
    /// Describe a model folder: architecture, tensors, parameters, mapped bytes, pooling.
    Inspect {
        #[arg(long)]
        model: PathBuf,
    },
    /// Encode a passage collection into a searchable index (resumable, shardable).
    Index {
        /// The context (passage) encoder.
        #[command(flatten)]
        model: ModelArgs,
        /// JSON lines with "text" and optional "id" and "title"; passages are encoded as the
        /// pair (title, text).
        #[arg(long)]
        passages: PathBuf,
        /// Index folder (created; an interrupted build there is resumed).
        #[arg(long)]
        output: PathBuf,
        /// Passages per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Passages per chunk: the unit written at once, resumed and sharded.
        #[arg(long, default_value_t = 4096)]
        chunk_size: usize,
        /// Encode only every N-th chunk, starting at I (I/N, I from 0): for N processes on N
        /// machines; copy all shards' chunks/ into one folder and rerun to assemble.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
    },
    /// Answer questions from an index: encode them and print the top-k passages.
    Search {
        /// The question encoder (its vectors must match the index's).
        #[command(flatten)]
        model: ModelArgs,
        /// Index folder written by densa index.
        #[arg(long)]
        index: PathBuf,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Questions, one per line (- for standard input).
        #[arg(long)]
        input: Option<String>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// A question (instead of --input).
        question: Option<String>,
    },
    /// Measure retrieval: recall@k, MRR and average rank of the gold passage of each question.
    Eval {
        /// The question encoder.
        #[arg(long)]
        model_q: PathBuf,
        /// The context encoder (to encode --passages; not needed with --index).
        #[arg(long)]
        model_ctx: Option<PathBuf>,
        /// JSON lines {"question": ..., "passage_id": ...}.
        #[arg(long)]
        qa: PathBuf,
        /// Passages to rank (JSON lines, as for densa index), encoded now with --model-ctx.
        #[arg(long, conflicts_with = "index")]
        passages: Option<PathBuf>,
        /// An index built with the context encoder, instead of --passages.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Cut-offs for recall@k.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1, 5, 20])]
        top_k: Vec<usize>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, value_enum, default_value = "auto")]
        precision: PrecisionArg,
    },
    /// Time the forward pass on synthetic inputs of a fixed shape; prints one JSON line.
    Bench {
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    remove_temporary_files_on_interrupt();
    let result = match cli.command {
        Command::Embed {
            model,
            input,
            output,
            pooling,
            normalize,
            max_length,
            batch_size,
        } => embed(
            model,
            &input,
            output.as_deref(),
            pooling,
            normalize,
            max_length,
            batch_size,
        ),
        Command::Tokenize {
            model,
            input,
            max_length,
        } => tokenize(&model, &input, max_length),
        Command::Quantize {
            model,
            output,
            force,
        } => quantize(&model, &output, force),
        Command::Inspect { model } => inspect(&model),
        Command::Bench {
            model,
            batch,
            seq,
            iters,
        } => bench(model, batch, seq, iters),
        Command::Index {
            model,
            passages,
            output,
            batch_size,
            chunk_size,
            shard,
        } => index(model, &passages, &output, batch_size, chunk_size, shard),
        Command::Search {
            model,
            index,
            top_k,
            input,
            json,
            question,
        } => search(model, &index, top_k, input.as_deref(), question, json),
        Command::Eval {
            model_q,
            model_ctx,
            qa,
            passages,
            index,
            top_k,
            threads,
            precision,
        } => {
            let model = |dir: PathBuf| ModelArgs {
                model: dir,
                threads,
                precision,
                max_batch_tokens: densa::DEFAULT_MAX_BATCH_TOKENS,
                allow_non_finite: false,
            };
            eval(
                model(model_q),
                model_ctx.map(model),
                &qa,
                passages.as_deref(),
                index.as_deref(),
                &top_k,
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("densa: error: {e}");
            if let Some(hint) = flag_hint(&e) {
                eprintln!("  hint: {hint}");
            }
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn open_encoder(
    model: &ModelArgs,
    pooling: Pooling,
    normalize: bool,
    max_length: Option<usize>,
    batch_size: usize,
) -> Result<Encoder, Error> {
    let precision = match model.precision {
        PrecisionArg::Auto => Precision::Auto,
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::Int8 => Precision::Int8,
    };
    let options = Options {
        threads: model.threads,
        pooling,
        normalize,
        max_length,
        batch_size,
        precision,
        allow_non_finite: model.allow_non_finite,
        max_batch_tokens: model.max_batch_tokens,
    };
    Encoder::from_dir(&model.model, options)
}

/// The command-line flag that acts on an error the library reports in its own terms.
fn flag_hint(error: &Error) -> Option<&'static str> {
    match error {
        Error::NonFinite { .. } => Some("pass --allow-non-finite to load such weights anyway"),
        Error::NonFiniteOutput { .. } => {
            Some("pass --allow-non-finite to write such values anyway (as null in JSON)")
        }
        _ => None,
    }
}

fn remove_temporary_files_on_interrupt() {
    // An error here (a handler already installed) only loses the clean-up; output files are
    // never partial either way (they are renamed into place whole).
    let _ = ctrlc::set_handler(|| {
        densa::io::output::remove_pending();
        eprintln!("densa: interrupted; no partial output written");
        std::process::exit(130);
    });
}

fn write_json_lines(
    out: &mut (impl Write + ?Sized),
    embeddings: &Embeddings,
) -> std::io::Result<()> {
    for row in embeddings.rows() {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn embed(
    model: ModelArgs,
    input: &str,
    output: Option<&Path>,
    pooling: PoolingArg,
    normalize: bool,
    max_length: Option<usize>,
    batch_size: usize,
) -> Result<(), Error> {
    let pooling = match pooling {
        PoolingArg::Auto => Pooling::Auto,
        PoolingArg::Cls => Pooling::Cls,
        PoolingArg::Mean => Pooling::Mean,
        PoolingArg::Max => Pooling::Max,
        PoolingArg::MeanSqrtLen => Pooling::MeanSqrtLen,
        PoolingArg::Pooler => Pooling::Pooler,
        PoolingArg::Dpr => Pooling::Dpr,
    };
    let encoder = open_encoder(&model, pooling, normalize, max_length, batch_size)?;
    let records = read_records(input)?;
    let inputs: Vec<Input> = records.iter().map(Record::as_input).collect();

    // Work in chunks so the progress bar moves; each chunk is sorted by length inside.
    let progress = progress_bar("texts");
    progress.set_length(inputs.len() as u64);
    let chunk = (batch_size * 16).max(1);
    let mut embeddings = Embeddings {
        dim: encoder.dim(),
        data: Vec::with_capacity(inputs.len() * encoder.dim()),
        truncated: 0,
    };
    for (c, part) in inputs.chunks(chunk).enumerate() {
        let e = encoder.embed_inputs(part).map_err(|e| match e {
            // The library counts inputs within the call: count them within the file.
            Error::NonFiniteOutput { input, count } => Error::NonFiniteOutput {
                input: input + c * chunk,
                count,
            },
            other => other,
        })?;
        embeddings.data.extend_from_slice(&e.data);
        embeddings.truncated += e.truncated;
        progress.inc(part.len() as u64);
    }
    progress.finish_and_clear();
    if embeddings.truncated > 0 {
        eprintln!(
            "densa: {} of {} inputs were truncated to {} tokens",
            embeddings.truncated,
            inputs.len(),
            encoder.tokenizer().max_length()
        );
    }
    let non_finite = embeddings.data.iter().filter(|v| !v.is_finite()).count();
    let (n, dim) = (embeddings.len(), embeddings.dim);
    let output = output.unwrap_or(Path::new("-"));
    let npy = has_extension(output, "npy");
    if non_finite > 0 {
        // Only reachable with --allow-non-finite (otherwise embedding failed above).
        eprintln!(
            "densa: warning: {non_finite} values are NaN or infinite{}",
            if npy {
                ""
            } else {
                "; JSON has no such numbers, they are written as null"
            }
        );
    }
    write_output(output, |out| {
        if npy {
            densa::io::npy::write_f32_matrix(out, &embeddings.data, n, dim)
        } else {
            write_json_lines(out, &embeddings)
        }
    })
}

fn tokenize(model: &Path, input: &str, max_length: Option<usize>) -> Result<(), Error> {
    let encoder = Encoder::from_dir(
        model,
        Options {
            threads: 1,
            max_length,
            ..Options::default()
        },
    )?;
    let records = read_records(input)?;
    let inputs: Vec<Input> = records.iter().map(Record::as_input).collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let io = |e| Error::Io {
        path: "<stdout>".into(),
        source: e,
    };
    for t in encoder.tokenize(&inputs)? {
        let line = serde_json::json!({ "ids": t.ids, "tokens": t.tokens, "type_ids": t.type_ids, "truncated": t.truncated });
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}

fn quantize(model: &Path, output: &Path, force: bool) -> Result<(), Error> {
    let report = densa::quantize::quantize_dir(model, output, force).map_err(|e| match e {
        Error::WouldOverwrite { dir, files } => Error::InvalidInput(format!(
            "{}: already holds {}; choose another --output, or pass --force to replace them",
            dir.display(),
            files.join(", ")
        )),
        other => other,
    })?;
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

fn inspect(model_dir: &Path) -> Result<(), Error> {
    // Load even a model with NaN or Inf weights, to report where they are.
    let encoder = Encoder::from_dir(
        model_dir,
        Options {
            threads: 1,
            allow_non_finite: true,
            ..Options::default()
        },
    )?;
    let mut report = String::new();
    let model = encoder.model();
    let c = &model.config;
    report += &format!("model:        {}\n", model_dir.display());
    report += &format!("architecture: {:?}, {} layers, hidden {}, {} heads (head dim {}), FFN {}, activation {:?}\n", c.model_type, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.head_dim(), c.intermediate_size, c.hidden_act);
    report += &format!(
        "vocabulary:   {} tokens, {} positions, {} token types, LayerNorm eps {:e}\n",
        c.vocab_size, c.max_position_embeddings, c.type_vocab_size, c.layer_norm_eps
    );
    report += &format!(
        "heads:        pooler {}, projection {}\n",
        if model.pooler.is_some() { "yes" } else { "no" },
        model
            .projection
            .as_ref()
            .map_or("no".to_string(), |p| format!(
                "{} -> {}",
                p.in_features, p.out_features
            ))
    );
    report += &format!(
        "pooling:      {} (default){}\n",
        encoder.pooling().name(),
        if encoder.normalizes() {
            ", L2-normalised"
        } else {
            ""
        }
    );
    report += &format!("output dim:   {}\n", encoder.dim());
    report += &format!(
        "precision:    {} (default)\n",
        encoder.model().precision.name()
    );
    report += &format!(
        "max length:   {} tokens\n",
        encoder.tokenizer().max_length()
    );
    report += &format!(
        "parameters:   {} used by the model\n",
        model.parameter_count()
    );
    report += &format!("mapped bytes: {}\n", encoder.checkpoint().mapped_bytes());
    let infos = encoder.checkpoint().tensor_infos();
    report += &format!("tensors:      {} stored\n", infos.len());
    let mut poisoned = Vec::new();
    for t in infos {
        let non_finite = encoder.checkpoint().non_finite_count(&t.name)?;
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
    print_stdout(&report)
}

/// The process's resident memory now (VmRSS), in MiB, where the OS reports it.
fn resident_megabytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Prints to standard output; a closed pipe (`densa inspect | head`) is not an error.
fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: "<stdout>".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn bench(model: ModelArgs, batch: usize, seq: usize, iters: usize) -> Result<(), Error> {
    let encoder = open_encoder(&model, Pooling::Auto, false, None, batch.max(1))?;
    let max = encoder.tokenizer().max_length();
    if batch == 0 || seq < 2 || seq > max || iters == 0 {
        return Err(Error::InvalidInput(format!(
            "bench needs --batch >= 1, 2 <= --seq <= {max}, --iters >= 1"
        )));
    }
    // Synthetic sequences: [CLS] + seq-2 ordinary tokens + [SEP], ids from a fixed LCG.
    let vocab = encoder.model().config.vocab_size as u64;
    let cls = encoder.tokenizer().token_to_id("[CLS]").unwrap_or(0);
    let sep = encoder.tokenizer().token_to_id("[SEP]").unwrap_or(0);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let tokenized: Vec<densa::Tokenized> = (0..batch)
        .map(|_| {
            let mut ids = vec![cls];
            ids.extend((0..seq - 2).map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (100 + (state >> 33) % (vocab - 100).max(1)) as u32
            }));
            ids.push(sep);
            densa::Tokenized {
                type_ids: vec![0; ids.len()],
                tokens: Vec::new(),
                ids,
                truncated: false,
            }
        })
        .collect();
    for _ in 0..2 {
        encoder.embed_tokenized(&tokenized)?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        encoder.embed_tokenized(&tokenized)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = if iters % 2 == 1 {
        times[iters / 2]
    } else {
        (times[iters / 2 - 1] + times[iters / 2]) / 2.0
    };
    let flops = encoder.model().flops(&vec![seq; batch]);
    let gflops = flops / (median / 1e3) / 1e9;
    // The machine's peak for this precision: the probe's single-core rate times the threads
    // used (f32 FMAs, or int8 vpdpbusd where the int8 path uses it).
    let (core_peak, isa) = densa_kernels::probe::fma_peak_gflops(300);
    let int8_peak = match encoder.model().precision {
        densa::Precision::Int8 => densa_kernels::probe::vnni_peak_gops(300),
        _ => None,
    };
    let (peak, peak_kind) = match int8_peak {
        // AMX's tiles are faster than the VNNI peak this probe measures: the fraction can
        // then exceed 1, and the kind says so.
        Some(gops) if densa_kernels::Int8Isa::selected() == densa_kernels::Int8Isa::Amx => (
            gops * encoder.threads() as f64,
            "vnni int8 (amx path, can exceed it)",
        ),
        Some(gops) => (gops * encoder.threads() as f64, "vnni int8"),
        None => (core_peak * encoder.threads() as f64, "fma f32"),
    };
    let line = serde_json::json!({
        "batch": batch, "seq": seq, "threads": encoder.threads(), "iters": iters, "precision": encoder.model().precision.name(),
        "isa": isa.name(),
        "median_ms": median, "min_ms": times[0], "max_ms": times[iters - 1],
        "tokens_per_s": (batch * seq) as f64 / (median / 1e3),
        "gflops": gflops,
        "peak_gflops": peak,
        "peak_kind": peak_kind,
        "fraction_of_peak": gflops / peak,
        "rss_mb": resident_megabytes(),
    });
    print_stdout(&format!("{line}\n"))
}

/// `I/N` with `I < N`.
fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected I/N, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .map_err(|_| format!("{text:?}: I is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("{text:?}: N is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("{text:?}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// A progress bar on a terminal (passages, rate, ETA), nothing otherwise.
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}");
    indicatif::ProgressBar::new(0)
        .with_style(indicatif::ProgressStyle::with_template(&template).expect("valid template"))
}

fn index(
    model: ModelArgs,
    passages: &Path,
    output: &Path,
    batch_size: usize,
    chunk_size: usize,
    shard: Option<(usize, usize)>,
) -> Result<(), Error> {
    let encoder = open_encoder(&model, Pooling::Auto, false, None, batch_size)?;
    let bar = progress_bar("passages");
    let start = Instant::now();
    let options = densa::IndexOptions { chunk_size, shard };
    let report = densa::build_index(&encoder, passages, output, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "densa: encoded {} of {} passages in {seconds:.1} s ({:.1} passages/s), {} of {} chunks this run",
        report.passages_encoded,
        report.passages,
        report.passages_encoded as f64 / seconds.max(1e-9),
        report.chunks_encoded,
        report.chunks
    );
    if report.is_complete() {
        eprintln!("densa: index complete: {}", output.display());
    } else {
        eprintln!(
            "densa: {} chunks belong to other shards; copy their {}/chunks/ files here and rerun this command to assemble",
            report.chunks_missing,
            output.display()
        );
    }
    Ok(())
}

/// Lines of `input` (a file or - for standard input; `.jsonl`: `"text"` of each object),
/// blank lines dropped.
fn read_questions(input: &str) -> Result<Vec<String>, Error> {
    let mut questions = Vec::new();
    for record in read_records(input)? {
        match record {
            Record::Text(t) if t.trim().is_empty() => {}
            Record::Text(t) => questions.push(t),
            Record::Pair(..) => {
                return Err(Error::InvalidInput(format!(
                    "{input}: a question has a \"title\"; questions are single texts"
                )))
            }
        }
    }
    Ok(questions)
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn search(
    model: ModelArgs,
    index_dir: &Path,
    top_k: usize,
    input: Option<&str>,
    question: Option<String>,
    json: bool,
) -> Result<(), Error> {
    let questions = match (question, input) {
        (Some(q), None) => vec![q],
        (None, Some(input)) => read_questions(input)?,
        (None, None) => read_questions("-")?,
        (Some(_), Some(_)) => {
            return Err(Error::InvalidInput(
                "give a question or --input, not both".into(),
            ))
        }
    };
    let index = densa::Index::open(index_dir)?;
    let encoder = open_encoder(&model, Pooling::Auto, false, None, 32)?;
    let refs: Vec<&str> = questions.iter().map(String::as_str).collect();
    let results = index.search_questions(&encoder, &refs, top_k)?;
    let mut out = String::new();
    for (question, hits) in questions.iter().zip(&results) {
        if json {
            let hits: Vec<serde_json::Value> = hits
                .iter()
                .enumerate()
                .map(|(rank, h)| {
                    serde_json::json!({
                        "rank": rank + 1, "id": h.passage.id, "score": h.score,
                        "title": h.passage.title, "text": h.passage.text,
                    })
                })
                .collect();
            out += &serde_json::json!({ "question": question, "hits": hits }).to_string();
            out.push('\n');
        } else {
            out += &format!("{question}\n");
            for (rank, h) in hits.iter().enumerate() {
                let title = h.passage.title.as_deref().unwrap_or("");
                out += &format!(
                    "  {:>2}. {:8.4}  [{}] {}: {}\n",
                    rank + 1,
                    h.score,
                    h.passage.id,
                    title,
                    shorten(&h.passage.text, 110)
                );
            }
            out.push('\n');
        }
    }
    print_stdout(&out)
}

fn eval(
    model_q: ModelArgs,
    model_ctx: Option<ModelArgs>,
    qa: &Path,
    passages: Option<&Path>,
    index_dir: Option<&Path>,
    cutoffs: &[usize],
) -> Result<(), Error> {
    // The collection: an existing index, or the passages encoded now into a temporary one.
    let scratch = tempfile::Builder::new()
        .prefix("densa-eval-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let _remove_on_interrupt = Pending::new(scratch.path());
    let index_dir = match (index_dir, passages, &model_ctx) {
        (Some(dir), _, _) => dir.to_owned(),
        (None, Some(passages), Some(ctx)) => {
            let encoder = open_encoder(ctx, Pooling::Auto, false, None, 32)?;
            let options = densa::IndexOptions::default();
            densa::build_index(&encoder, passages, scratch.path(), &options, &mut |_, _| {})?;
            scratch.path().to_owned()
        }
        (None, Some(_), None) => {
            return Err(Error::InvalidInput(
                "--passages needs --model-ctx to encode them".into(),
            ))
        }
        (None, None, _) => return Err(Error::InvalidInput("give --index or --passages".into())),
    };
    let index = densa::Index::open(&index_dir)?;
    let (questions, gold) = densa::retrieval::read_qa_pairs(qa, &index)?;
    let encoder = open_encoder(&model_q, Pooling::Auto, false, None, 32)?;
    let metrics =
        densa::retrieval::RetrievalMetrics::evaluate(&encoder, &index, &questions, &gold, cutoffs)?;
    print_stdout(&format!("{}\n", metrics.to_json()))
}
