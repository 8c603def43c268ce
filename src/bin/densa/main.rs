//! The `densa` command line: it parses arguments, calls the library and prints. Each
//! subcommand's flags are one `clap::Args` struct, handed whole to its handler in the file of
//! its family:
//!
//! - `encode.rs`: `embed` ([`encode::EmbedArgs`]), `tokenize` ([`encode::TokenizeArgs`]);
//! - `model.rs`: `quantize`, `pack`, `inspect`, `bench` ([`model::QuantizeArgs`],
//!   [`model::InspectArgs`], [`model::BenchArgs`]);
//! - `retrieval.rs`: `chunk`, `index`, `search`, `eval` ([`retrieval::ChunkCommandArgs`],
//!   [`retrieval::IndexArgs`], [`retrieval::SearchArgs`], [`retrieval::EvalArgs`]);
//! - `ann.rs`: `ann`, `bench-search` ([`ann::AnnArgs`], [`ann::BenchSearchArgs`]), and the
//!   graph and search flags `index`, `search`, `eval` and `serve` share;
//! - `heads.rs`: `rerank`, `read`, `answer` ([`heads::RerankArgs`], [`heads::ReadArgs`],
//!   [`heads::AnswerArgs`]);
//! - `serve.rs`: `serve` ([`serve::ServeArgs`]);
//! - `args.rs`: the flags several subcommands share (the model, how it runs, how it encodes)
//!   and how they open an encoder.

// Functions stay short enough to read at once (clippy.toml: 80 lines).
#![warn(clippy::too_many_lines)]

mod ann;
mod args;
mod encode;
mod heads;
mod m3;
mod model;
mod retrieval;
#[cfg(feature = "serve")]
mod serve;

pub(crate) use args::{describe_encoding, open_encoder, run_options, EncodeArgs, ModelArgs, Side};

use clap::{Parser, Subcommand};
use densa::Error;
use std::io::{IsTerminal, Write};
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
    Embed(encode::EmbedArgs),
    /// Print token ids and tokens of every input as JSON lines.
    Tokenize(encode::TokenizeArgs),
    /// Write a copy of a model folder with int8 encoder linear layers (per-channel scales).
    Quantize(model::QuantizeArgs),
    /// Write a copy of a model folder with f32 encoder linear layers in this CPU's GEMM panel
    /// layout, used in place at load (a faster cold start).
    Pack(model::QuantizeArgs),
    /// Describe a model folder: architecture, tensors, parameters, mapped bytes, pooling.
    Inspect(model::InspectArgs),
    /// Cut documents into passages at word boundaries, by the model's tokens or DPR's 100
    /// words, with each passage's character offsets in its document.
    Chunk(retrieval::ChunkCommandArgs),
    /// Encode a passage collection (or documents, cut first) into a searchable index
    /// (resumable, shardable).
    Index(retrieval::IndexArgs),
    /// Build an HNSW graph for an index (approximate search), without encoding again.
    Ann(ann::AnnArgs),
    /// Answer questions from an index: encode them and print the top-k passages.
    Search(retrieval::SearchArgs),
    /// Measure retrieval: recall@k, MRR and average rank of the gold passage of each question.
    Eval(retrieval::EvalArgs),
    /// Score (query, text) pairs with a cross-encoder, or texts with a sequence classifier
    /// (a *ForSequenceClassification model): one JSON line per input, in input order.
    #[command(visible_alias = "classify")]
    Rerank(heads::RerankArgs),
    /// Extract answers with a reader (a *ForQuestionAnswering model), as transformers 4's
    /// question-answering pipeline did: one JSON line per input.
    Read(heads::ReadArgs),
    /// Answer questions end to end: question encoder, index, optional reranker, reader.
    Answer(heads::AnswerArgs),
    /// Serve embeddings, reranking, search and answers over HTTP (the APIs of Hugging Face
    /// text-embeddings-inference and OpenAI), with dynamic batching.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Time the forward pass on synthetic inputs of a fixed shape; prints one JSON line.
    Bench(model::BenchArgs),
    /// Time searching an index with query vectors (the exact scan and the search asked for,
    /// interleaved): latency percentiles, speed-up, recall@k; prints one JSON line.
    BenchSearch(ann::BenchSearchArgs),
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // The server handles its own signals (SIGTERM and Ctrl-C finish the requests in flight).
    #[cfg(feature = "serve")]
    let serving = matches!(command, Command::Serve(_));
    #[cfg(not(feature = "serve"))]
    let serving = false;
    if !serving {
        remove_temporary_files_on_interrupt();
    }
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand.
fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Embed(args) => encode::embed(args),
        Command::Tokenize(args) => encode::tokenize(args),
        Command::Quantize(args) => model::quantize(args),
        Command::Pack(args) => model::pack(args),
        Command::Inspect(args) => model::inspect(args),
        Command::Chunk(args) => retrieval::chunk(args),
        Command::Index(args) => retrieval::index(args),
        Command::Ann(args) => ann::ann(args),
        Command::Search(args) => retrieval::search(args),
        Command::Eval(args) => retrieval::eval(args),
        Command::Rerank(args) => heads::rerank(args),
        Command::Read(args) => heads::read(args),
        Command::Answer(args) => heads::answer(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::serve(args),
        Command::Bench(args) => model::bench(args),
        Command::BenchSearch(args) => ann::bench_search(args),
    }
}

/// The error on standard error, with the flag that acts on it and its causes.
fn report(e: &Error) {
    eprintln!("densa: error: {e}");
    if let Some(hint) = flag_hint(e) {
        eprintln!("  hint: {hint}");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

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
/// A progress callback `(done, total)` that moves `bar`.
pub(crate) fn advance(bar: &indicatif::ProgressBar) -> impl Fn(usize, usize) + Sync + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

pub(crate) fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}");
    indicatif::ProgressBar::new(0)
        .with_style(indicatif::ProgressStyle::with_template(&template).expect("valid template"))
}
