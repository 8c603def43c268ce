//! Evaluating retrieval: the rank of each question's gold passage, and the usual metrics
//! (recall@k, mean reciprocal rank, average rank).

use super::reader::Index;
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::io::records::lines;
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// Reads a QA file: JSON lines `{"question": ..., "passage_id": ...}` (the id a string or a
/// number). Returns the questions and their gold passages' rows in `index`. Blank lines are
/// skipped; errors name the file and line.
pub fn read_qa_pairs(path: &Path, index: &Index) -> Result<(Vec<String>, Vec<usize>)> {
    let rows = index.id_rows()?;
    let bytes = std::fs::read(path).map_err(|e| Error::reading(path, e))?;
    let (mut questions, mut gold) = (Vec::new(), Vec::new());
    for (i, line) in lines(&bytes) {
        let at =
            |m: String| Error::InvalidInput(format!("{}: line {}: {m}", path.display(), i + 1));
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| at(format!("not JSON ({e})")))?;
        let question = v["question"]
            .as_str()
            .ok_or_else(|| at("no \"question\" string".into()))?;
        let id = match &v["passage_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(at("no \"passage_id\"".into())),
        };
        let row = *rows
            .get(&id)
            .ok_or_else(|| at(format!("passage_id {id:?} is not in the collection")))?;
        questions.push(question.to_string());
        gold.push(row);
    }
    if questions.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no questions",
            path.display()
        )));
    }
    Ok((questions, gold))
}

/// How well a question encoder finds the gold passages of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalMetrics {
    pub questions: usize,
    pub passages: usize,
    /// `(k, fraction of questions whose gold passage ranks k-th or better)`.
    pub recall_at: Vec<(usize, f64)>,
    /// Mean of 1 / rank.
    pub mrr: f64,
    pub average_rank: f64,
    /// Questions encoded and ranked per second.
    pub questions_per_s: f64,
}

impl RetrievalMetrics {
    /// The metrics of 1-based `ranks` at the cut-offs `cutoffs`, timed over `seconds`.
    pub fn from_ranks(ranks: &[usize], passages: usize, cutoffs: &[usize], seconds: f64) -> Self {
        let n = ranks.len().max(1) as f64;
        RetrievalMetrics {
            questions: ranks.len(),
            passages,
            recall_at: cutoffs
                .iter()
                .map(|&k| (k, ranks.iter().filter(|&&r| r <= k).count() as f64 / n))
                .collect(),
            mrr: ranks.iter().map(|&r| 1.0 / r.max(1) as f64).sum::<f64>() / n,
            average_rank: ranks.iter().sum::<usize>() as f64 / n,
            questions_per_s: ranks.len() as f64 / seconds.max(1e-9),
        }
    }

    /// Encodes `questions` with `encoder`, ranks every passage of `index` for each, and
    /// measures where `gold[j]` (a row) lands for question `j`.
    pub fn evaluate(
        encoder: &Encoder,
        index: &Index,
        questions: &[String],
        gold: &[usize],
        cutoffs: &[usize],
    ) -> Result<Self> {
        if encoder.dim() != index.dim() {
            return Err(Error::InvalidInput(format!(
                "question vectors have {} values, passage vectors {}",
                encoder.dim(),
                index.dim()
            )));
        }
        let start = Instant::now();
        let refs: Vec<&str> = questions.iter().map(String::as_str).collect();
        let vectors = encoder.embed(&refs)?;
        let ranks = encoder.install(|| index.gold_ranks(&vectors.data, gold))?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(Self::from_ranks(&ranks, index.len(), cutoffs, seconds))
    }

    /// As one JSON object: `questions`, `passages`, `recall@K`…, `mrr`, `average_rank`,
    /// `questions_per_s`.
    pub fn to_json(&self) -> Value {
        let mut report = serde_json::Map::new();
        report.insert("questions".into(), self.questions.into());
        report.insert("passages".into(), self.passages.into());
        for &(k, recall) in &self.recall_at {
            report.insert(format!("recall@{k}"), recall.into());
        }
        report.insert("mrr".into(), self.mrr.into());
        report.insert("average_rank".into(), self.average_rank.into());
        report.insert("questions_per_s".into(), self.questions_per_s.into());
        Value::Object(report)
    }
}
