//! `densa rerank` (cross-encoder scores of (query, text) pairs) and `densa read` (answer spans).

use crate::retrieval::questions_from;
use crate::{open_encoder, run_options, EncodeArgs, ModelArgs, Side};
use densa::io::output::write_output;
use densa::io::records::{lines, read_input};
use densa::{AnswerOptions, Error, QaPipeline, ReadOptions, Reader, Reranker};
use serde_json::{json, Value};
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

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

/// Pairs of a JSON lines file: `"query"`, `"text"` and an optional `"title"` joined to the text
/// by `template` (`{title}` and `{text}` replaced).
fn read_pairs(input: &str, template: &str) -> Result<Vec<(String, String)>, Error> {
    let rows = read_fields(input, &["query", "text"], &["title"])?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (query, text) = (
                row[0].clone().unwrap_or_default(),
                row[1].clone().unwrap_or_default(),
            );
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

pub(crate) fn rerank(
    model: ModelArgs,
    input: &str,
    output: Option<&Path>,
    template: &str,
    (max_length, batch_size): (Option<usize>, usize),
) -> Result<(), Error> {
    let options = run_options(&model, max_length, batch_size);
    let reranker = Reranker::from_dir(&model.model, options)?;
    let pairs = read_pairs(input, template)?;
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(q, t)| (q.as_str(), t.as_str()))
        .collect();
    let results = reranker.score(&refs)?;
    let labels = reranker.labels();
    write_output(output.unwrap_or(Path::new("-")), |out| {
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

pub(crate) fn read(
    model: ModelArgs,
    input: &str,
    output: Option<&Path>,
    options: ReadOptions,
) -> Result<(), Error> {
    let reader = Reader::from_dir(&model.model, run_options(&model, None, 32))?;
    let rows = read_fields(input, &["question", "context"], &[])?;
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
    write_output(output.unwrap_or(Path::new("-")), |out| {
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        Ok(())
    })
}

/// The models and index `densa answer` loads.
pub(crate) struct AnswerModels {
    pub question: ModelArgs,
    pub encode: EncodeArgs,
    pub index: PathBuf,
    pub reader: PathBuf,
    pub rerank: Option<PathBuf>,
}

pub(crate) fn answer(
    models: AnswerModels,
    options: &AnswerOptions,
    input: Option<&str>,
    question: Option<String>,
    json: bool,
) -> Result<(), Error> {
    let questions = questions_from(question, input)?;
    let index = densa::Index::open(&models.index)?;
    let question_encoder = open_encoder(&models.question, &models.encode, Side::Query, None, 32)?;
    let same_run = |dir: &Path| ModelArgs {
        model: dir.to_owned(),
        run: models.question.run,
    };
    let reader = Reader::from_dir(
        &models.reader,
        run_options(&same_run(&models.reader), None, 32),
    )?;
    let reranker = match &models.rerank {
        Some(dir) => Some(Reranker::from_dir(
            dir,
            run_options(&same_run(dir), None, 32),
        )?),
        None => None,
    };
    let pipeline = QaPipeline::new(
        Arc::new(question_encoder),
        Arc::new(index),
        reranker.map(Arc::new),
        Arc::new(reader),
    );
    let mut text = String::new();
    for question in &questions {
        let result = pipeline.answer(question, options)?;
        if json {
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
