//! `densa embed` and `densa tokenize`.

use crate::{open_encoder, progress_bar, EncodeArgs, ModelArgs, Side};
use densa::heads::m3::OutputKind;
use densa::io::output::write_output;
use densa::io::records::{has_extension, read_records, Record};
use densa::{Embeddings, Encoder, Error, Input, Options};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub(crate) struct EmbedArgs {
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
    /// max_seq_length, else min(512, max_position_embeddings); ModernBERT: max_position_embeddings).
    #[arg(long)]
    max_length: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// A bge-m3 folder's output (its sparse_linear and colbert_linear heads beside the trunk):
    /// dense (normalised [CLS]), sparse ([{"index", "value"}] per text) or colbert (a vector
    /// per token after [CLS]).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(OutputKind::NAMES))]
    output_kind: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct TokenizeArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "-")]
    input: String,
    #[arg(long)]
    max_length: Option<usize>,
}

/// What the encoder sees of an input record.
fn input_of(record: &Record) -> Input<'_> {
    match record {
        Record::Text(t) => Input::Text(t),
        Record::Pair(a, b) => Input::Pair(a, b),
    }
}

pub(crate) fn write_json_lines(
    out: &mut (impl Write + ?Sized),
    embeddings: &Embeddings,
) -> std::io::Result<()> {
    for row in embeddings.rows() {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub(crate) fn embed(args: EmbedArgs) -> Result<(), Error> {
    let batch_size = args.batch_size;
    if let Some(kind) = args.output_kind.as_deref().and_then(OutputKind::from_name) {
        let output = args.output.as_deref().unwrap_or(Path::new("-"));
        return crate::m3::embed(
            &args.model,
            args.max_length,
            batch_size,
            &args.input,
            output,
            kind,
        );
    }
    let encoder = open_encoder(
        &args.model,
        &args.encode,
        Side::Any,
        args.max_length,
        batch_size,
    )?;
    let records = read_records(&args.input)?;
    let inputs: Vec<Input> = records.iter().map(input_of).collect();

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
    let output = args.output.as_deref().unwrap_or(Path::new("-"));
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
    let written = write_output(output, |out| {
        if npy {
            densa::io::npy::write_f32_matrix(out, &embeddings.data, n, dim)
        } else {
            write_json_lines(out, &embeddings)
        }
    });
    // The process ends after this command: freeing the tokenizer's maps and the model's buffers
    // would only delay the exit (5 % of a one-question start's samples, `perf record`); the
    // output is written and flushed above, and the system takes the memory back.
    std::mem::forget(encoder);
    written
}

pub(crate) fn tokenize(args: TokenizeArgs) -> Result<(), Error> {
    let encoder = Encoder::from_dir(
        &args.model,
        Options {
            threads: 1,
            max_length: args.max_length,
            ..Options::default()
        },
    )?;
    let records = read_records(&args.input)?;
    let inputs: Vec<Input> = records.iter().map(input_of).collect();
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
