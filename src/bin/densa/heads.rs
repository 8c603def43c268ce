//! `densa rerank` (cross-encoder scores of (query, text) pairs) and `densa read` (answer spans).

use crate::retrieval::questions_from;
use crate::{open_encoder, run_options, EncodeArgs, ModelArgs, Side};
use densa::io::output::write_output;
use densa::io::records::{lines, read_input};
use densa::{AnswerOptions, Error, Input, QaPipeline, ReadOptions, Reader, Reranker};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub(crate) struct RerankArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// How a "title" is joined to the text.
    #[arg(long, default_value = "{title}. {text}")]
    passage_template: String,
    /// JSON lines {"query": ..., "text": ..., "title": optional}, or - for standard input. A
    /// line without "query" classifies its text alone (a sequence classifier's labels).
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
}

#[derive(clap::Args)]
pub(crate) struct ReadArgs {
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
}

#[derive(clap::Args)]
pub(crate) struct AnswerArgs {
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
}

/// The string fields `required` (then `optional`, None where absent) of each line of a JSON
/// lines file; blank lines are skipped. Errors name the line.
fn read_fields(
    input: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<Vec<Option<String>>>, Error> {
    let bytes = read_input(input)?;
    let mut rows = Vec::new();
    for (i, line) in lines(&bytes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |m: &str| Error::InvalidInput(format!("{input}: line {}: {m}", i + 1));
        let v: Value = serde_json::from_slice(line).map_err(|e| at(&format!("not JSON ({e})")))?;
        let mut row = Vec::new();
        for (k, key) in required.iter().chain(optional).enumerate() {
            let value = match &v[key] {
                Value::Null if k >= required.len() => None,
                Value::Null => return Err(at(&format!("no \"{key}\" string"))),
                Value::String(s) => Some(s.clone()),
                _ => return Err(at(&format!("\"{key}\" is not a string"))),
            };
            row.push(value);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Pairs of a JSON lines file: an optional `"query"` (none: the text is classified alone),
/// `"text"`, and an optional `"title"` joined to the text by `template` (`{title}` and
/// `{text}` replaced).
fn read_pairs(input: &str, template: &str) -> Result<Vec<(Option<String>, String)>, Error> {
    let rows = read_fields(input, &["text"], &["query", "title"])?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (text, query) = (row[0].clone().unwrap_or_default(), row[1].clone());
            let text = match &row[2] {
                Some(title) if !title.is_empty() => {
                    template.replace("{title}", title).replace("{text}", &text)
                }
                _ => text,
            };
            (query, text)
        })
        .collect())
}

pub(crate) fn rerank(args: RerankArgs) -> Result<(), Error> {
    let options = run_options(&args.model, args.max_length, args.batch_size);
    let reranker = Reranker::from_dir(&args.model.model, options)?;
    let pairs = read_pairs(&args.input, &args.passage_template)?;
    let inputs: Vec<Input> = pairs
        .iter()
        .map(|(query, text)| match query {
            Some(query) => Input::Pair(query, text),
            None => Input::Text(text),
        })
        .collect();
    let results = reranker.classify(&inputs)?;
    let labels = reranker.labels();
    write_output(args.output.as_deref().unwrap_or(Path::new("-")), |out| {
        for scores in &results {
            let line = match scores.logits.as_slice() {
                [logit] => json!({ "logit": logit, "score": scores.scores[0] }),
                logits => json!({
                    "logits": logits,
                    "label": labels[scores.label()],
                    "scores": scores.scores,
                }),
            };
            writeln!(out, "{line}")?;
        }
        Ok(())
    })
}

pub(crate) fn read(args: ReadArgs) -> Result<(), Error> {
    let options = ReadOptions {
        max_seq_len: args.max_seq_len,
        doc_stride: args.doc_stride,
        max_answer_len: args.max_answer_len,
        top_k: args.top_k,
    };
    let reader = Reader::from_dir(&args.model.model, run_options(&args.model, None, 32))?;
    let rows = read_fields(&args.input, &["question", "context"], &[])?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let (question, context) = (
            row[0].as_deref().unwrap_or(""),
            row[1].as_deref().unwrap_or(""),
        );
        let answers = reader.read(question, context, &options)?;
        let as_json = |a: &densa::Answer| json!({ "answer": a.answer, "score": a.score, "start": a.start, "end": a.end });
        lines.push(match options.top_k {
            1 => answers.first().map(as_json).unwrap_or(Value::Null),
            _ => json!({ "answers": answers.iter().map(as_json).collect::<Vec<_>>() }),
        });
    }
    write_output(args.output.as_deref().unwrap_or(Path::new("-")), |out| {
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        Ok(())
    })
}

pub(crate) fn answer(args: AnswerArgs) -> Result<(), Error> {
    let questions = questions_from(args.question.clone(), args.input.as_deref())?;
    let pipeline = answer_pipeline(&args)?;
    let options = AnswerOptions {
        rerank_top: args.rerank_top,
        read_top: args.read_top,
        top_k: args.top_k,
        ..Default::default()
    };
    let mut text = String::new();
    for question in &questions {
        let result = pipeline.answer(question, &options)?;
        if args.json {
            let line = result.to_json(question);
            text += &format!("{line}\n");
        } else {
            text += &format!("{question}\n");
            for a in &result.answers {
                let title = a.passage.title.as_deref().unwrap_or("");
                text += &format!(
                    "  {:?} (score {:.4}) in [{}] {title}\n",
                    a.answer.answer, a.answer.score, a.passage.id
                );
            }
            text += &format!(
                "  retrieve {:.1} ms, rerank {:.1} ms, read {:.1} ms\n\n",
                result.retrieve_ms, result.rerank_ms, result.read_ms
            );
        }
    }
    crate::print_stdout(&text)
}

/// The models and index `densa answer` loads, every model run as the question encoder is.
fn answer_pipeline(args: &AnswerArgs) -> Result<QaPipeline, Error> {
    let index = densa::Index::open(&args.index)?;
    let question_encoder = open_encoder(&args.model, &args.encode, Side::Query, None, 32)?;
    let same_run = |dir: &Path| ModelArgs {
        model: dir.to_owned(),
        run: args.model.run,
    };
    let reader = Reader::from_dir(&args.reader, run_options(&same_run(&args.reader), None, 32))?;
    let reranker = match &args.rerank {
        Some(dir) => Some(Reranker::from_dir(
            dir,
            run_options(&same_run(dir), None, 32),
        )?),
        None => None,
    };
    Ok(QaPipeline::new(
        Arc::new(question_encoder),
        Arc::new(index),
        reranker.map(Arc::new),
        Arc::new(reader),
    ))
}
