//! `densa rerank`: cross-encoder scores of (query, text) pairs.

use crate::{run_options, ModelArgs};
use densa::io::output::write_output;
use densa::io::records::{lines, read_input};
use densa::{Error, Reranker};
use serde_json::{json, Value};
use std::path::Path;

/// Pairs of a JSON lines file: `"query"`, `"text"` and an optional `"title"` joined to the text
/// by `template` (`{title}` and `{text}` replaced). Errors name the line.
fn read_pairs(input: &str, template: &str) -> Result<Vec<(String, String)>, Error> {
    let bytes = read_input(input)?;
    let mut pairs = Vec::new();
    for (i, line) in lines(&bytes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |m: &str| Error::InvalidInput(format!("{input}: line {}: {m}", i + 1));
        let v: Value = serde_json::from_slice(line).map_err(|e| at(&format!("not JSON ({e})")))?;
        let field = |key: &str| -> Result<Option<&str>, Error> {
            match &v[key] {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.as_str())),
                _ => Err(at(&format!("\"{key}\" is not a string"))),
            }
        };
        let query = field("query")?.ok_or_else(|| at("no \"query\" string"))?;
        let text = field("text")?.ok_or_else(|| at("no \"text\" string"))?;
        let text = match field("title")? {
            Some(title) if !title.is_empty() => {
                template.replace("{title}", title).replace("{text}", text)
            }
            _ => text.to_owned(),
        };
        pairs.push((query.to_owned(), text));
    }
    Ok(pairs)
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
