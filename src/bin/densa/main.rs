//! The `densa` command line: it parses arguments, calls the library and prints. One module per
//! family of subcommands: `encode` (embed, tokenize), `model` (quantize, inspect, bench),
//! `retrieval` (index, search, eval).

mod args;
mod encode;
mod heads;
mod model;
mod retrieval;
#[cfg(feature = "serve")]
mod serve;

use args::RunArgs;
pub(crate) use args::{
    describe_encoding, open_encoder, run_options, side_prompt_name, EncodeArgs, ModelArgs, Side,
};
use encode::{embed, tokenize};
use heads::{answer, read, rerank};
use model::{bench, inspect, quantize, BenchHead};
use retrieval::{eval, index, search};

use clap::{Parser, Subcommand};
use densa::Error;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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
        #[command(flatten)]
        encode: EncodeArgs,
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
        /// How passages are encoded (default prompt: the folder's "passage" or "document").
        #[command(flatten)]
        encode: EncodeArgs,
        /// One text per passage made from this template ("{title}. {text}"), instead of the
        /// (title, text) pair.
        #[arg(long)]
        passage_template: Option<String>,
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
        /// How questions are encoded (default prompt: the folder's "query").
        #[command(flatten)]
        encode: EncodeArgs,
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
        /// How questions are encoded (default prompt: the folder's "query").
        #[command(flatten)]
        encode: EncodeArgs,
        /// The prompt of --passages (default: the folder's "passage" or "document"); they are
        /// pooled, truncated and normalised as the questions.
        #[arg(long)]
        passage_prompt: Option<String>,
        /// As --passage-template of densa index, for --passages.
        #[arg(long)]
        passage_template: Option<String>,
        /// A cross-encoder: also report recall@k once it rescores the retriever's best
        /// --rerank-top passages ("reranked").
        #[arg(long)]
        rerank: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        rerank_top: usize,
        /// A reader: also report exact match and F1 of the best answer against each
        /// question's "answers" (after reranking when --rerank is given).
        #[arg(long)]
        reader: Option<PathBuf>,
        /// Passages the reader reads per question.
        #[arg(long, default_value_t = 3)]
        read_top: usize,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Score (query, text) pairs with a cross-encoder (a *ForSequenceClassification model):
    /// one JSON line per input, in input order.
    Rerank {
        #[command(flatten)]
        model: ModelArgs,
        /// How a "title" is joined to the text.
        #[arg(long, default_value = "{title}. {text}")]
        passage_template: String,
        /// JSON lines {"query": ..., "text": ..., "title": optional}, or - for standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// Output file (JSON lines); default standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Truncate pairs to this many tokens (longest first; default: the model's).
        #[arg(long)]
        max_length: Option<usize>,
        /// Pairs per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Extract answers with a reader (a *ForQuestionAnswering model), as transformers 4's
    /// question-answering pipeline did: one JSON line per input.
    Read {
        #[command(flatten)]
        model: ModelArgs,
        /// Tokens per window, question and special tokens included.
        #[arg(long, default_value_t = 384)]
        max_seq_len: usize,
        /// Context tokens shared by consecutive windows.
        #[arg(long, default_value_t = 128)]
        doc_stride: usize,
        /// Longest answer, in tokens.
        #[arg(long, default_value_t = 15)]
        max_answer_len: usize,
        /// Answers per input (more than 1: {"answers": [...]}).
        #[arg(long, default_value_t = 1)]
        top_k: usize,
        /// JSON lines {"question": ..., "context": ...}, or - for standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// Output file (JSON lines); default standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Answer questions end to end: question encoder, index, optional reranker, reader.
    Answer {
        /// The question encoder (its vectors must match the index's).
        #[command(flatten)]
        model: ModelArgs,
        /// How questions are encoded (default prompt: the folder's "query").
        #[command(flatten)]
        encode: EncodeArgs,
        /// Index folder written by densa index.
        #[arg(long)]
        index: PathBuf,
        /// The reader (a *ForQuestionAnswering model).
        #[arg(long)]
        reader: PathBuf,
        /// A cross-encoder that rescores the retrieved passages before reading.
        #[arg(long)]
        rerank: Option<PathBuf>,
        /// Passages the reranker rescores.
        #[arg(long, default_value_t = 20)]
        rerank_top: usize,
        /// Passages the reader reads.
        #[arg(long, default_value_t = 3)]
        read_top: usize,
        /// Answers per question.
        #[arg(long, default_value_t = 1)]
        top_k: usize,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Questions, one per line (- for standard input).
        #[arg(long)]
        input: Option<String>,
        /// A question (instead of --input).
        question: Option<String>,
    },
    /// Serve embeddings, reranking, search and answers over HTTP (the APIs of Hugging Face
    /// text-embeddings-inference and OpenAI), with dynamic batching.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
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
        /// Time a task head on the encoder instead of the embedding: a cross-encoder's
        /// logits (`--batch` pairs) or a reader's start and end logits (`--batch` windows).
        #[arg(long, value_enum)]
        head: Option<BenchHead>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server handles its own signals (SIGTERM and Ctrl-C finish the requests in flight).
    #[cfg(feature = "serve")]
    let serving = matches!(cli.command, Command::Serve(_));
    #[cfg(not(feature = "serve"))]
    let serving = false;
    if !serving {
        remove_temporary_files_on_interrupt();
    }
    let result = match cli.command {
        Command::Embed {
            model,
            input,
            output,
            encode,
            max_length,
            batch_size,
        } => embed(
            model,
            &input,
            output.as_deref(),
            &encode,
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
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::serve(args),
        Command::Answer {
            model,
            encode,
            index,
            reader,
            rerank,
            rerank_top,
            read_top,
            top_k,
            json,
            input,
            question,
        } => {
            let options = densa::AnswerOptions {
                rerank_top,
                read_top,
                top_k,
                ..Default::default()
            };
            let models = heads::AnswerModels {
                question: model,
                encode,
                index,
                reader,
                rerank,
            };
            answer(models, &options, input.as_deref(), question, json)
        }
        Command::Read {
            model,
            input,
            output,
            max_seq_len,
            doc_stride,
            max_answer_len,
            top_k,
        } => read(
            model,
            &input,
            output.as_deref(),
            densa::ReadOptions {
                max_seq_len,
                doc_stride,
                max_answer_len,
                top_k,
            },
        ),
        Command::Rerank {
            model,
            input,
            output,
            passage_template,
            max_length,
            batch_size,
        } => rerank(
            model,
            &input,
            output.as_deref(),
            &passage_template,
            (max_length, batch_size),
        ),
        Command::Bench {
            model,
            batch,
            seq,
            iters,
            head,
        } => bench(model, (batch, seq), iters, head),
        Command::Index {
            model,
            passages,
            output,
            encode,
            passage_template,
            batch_size,
            chunk_size,
            shard,
        } => index(
            model,
            &encode,
            passage_template.as_deref(),
            &passages,
            &output,
            (batch_size, chunk_size),
            shard,
        ),
        Command::Search {
            model,
            index,
            encode,
            top_k,
            input,
            json,
            question,
        } => search(
            model,
            &encode,
            &index,
            top_k,
            input.as_deref(),
            question,
            json,
        ),
        Command::Eval {
            model_q,
            model_ctx,
            qa,
            passages,
            index,
            top_k,
            encode,
            passage_prompt,
            passage_template,
            rerank,
            rerank_top,
            reader,
            read_top,
            run,
        } => {
            let model = |dir: PathBuf| ModelArgs { model: dir, run };
            // Passages are pooled, truncated and normalised as the questions; only the prompt
            // differs (default: the folder's "passage" or "document").
            let passage_side = EncodeArgs {
                prompt: passage_prompt,
                prompt_name: None,
                ..encode.clone()
            };
            eval(
                (model(model_q), &encode),
                model_ctx.map(|m| (model(m), passage_side)),
                passage_template.as_deref(),
                &qa,
                (passages.as_deref(), index.as_deref()),
                &top_k,
                (
                    rerank.map(|dir| (model(dir), rerank_top)),
                    reader.map(|dir| (model(dir), read_top)),
                ),
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

/// The side of retrieval an encoder serves: which of the folder's prompts applies when none
/// is asked for.
/// The command-line flag that acts on an error the library reports in its own terms.
pub(crate) fn flag_hint(error: &Error) -> Option<&'static str> {
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

/// Prints to standard output; a closed pipe (`densa inspect | head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: "<stdout>".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// `I/N` with `I < N`.
pub(crate) fn parse_shard(text: &str) -> Result<(usize, usize), String> {
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
pub(crate) fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}");
    indicatif::ProgressBar::new(0)
        .with_style(indicatif::ProgressStyle::with_template(&template).expect("valid template"))
}
