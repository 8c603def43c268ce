//! Evaluating retrieval and answers: the rank of each question's gold passage (by the
//! retriever, and after a cross-encoder reranks), the usual metrics (recall@k, mean reciprocal
//! rank, average rank), and SQuAD's exact match and F1 of an answer.

use super::hybrid::HybridWeights;
use super::reader::Index;
use super::search::SearchOptions;
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::heads::{M3Heads, Reranker};
use crate::io::records::lines;
use crate::tokenizer::Input;
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
    /// measures where `gold[j]` (a row) lands for question `j`, as a search with `options`
    /// ranks it ([`Index::search_ranks`]).
    pub fn evaluate(
        encoder: &Encoder,
        index: &Index,
        questions: &[String],
        gold: &[usize],
        (cutoffs, options): (&[usize], &SearchOptions),
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
        let depth = cutoffs.iter().copied().max().unwrap_or(1);
        let ranks = encoder.install(|| index.search_ranks(&vectors.data, gold, depth, options))?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(Self::from_ranks(&ranks, index.len(), cutoffs, seconds))
    }

    /// bge-m3's retrieval over an index that holds its outputs ([`Index::search_hybrid`] with
    /// `weights`): the questions' outputs from `heads` on `encoder`, and where `gold[j]` lands
    /// among the first `max(cutoffs, candidates)` hits, or one past them when missing (so
    /// recall@k and MRR are the search's own up to that depth, and the average rank a lower
    /// bound).
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_m3(
        (encoder, heads): (&Encoder, &M3Heads),
        index: &Index,
        questions: &[String],
        gold: &[usize],
        cutoffs: &[usize],
        candidates: usize,
        weights: &HybridWeights,
        options: &SearchOptions,
    ) -> Result<Self> {
        let start = Instant::now();
        let inputs: Vec<Input> = questions.iter().map(|q| Input::Text(q)).collect();
        let tokenized = encoder.tokenize(&inputs)?;
        let queries = heads.encode_tokenized(encoder, &tokenized)?;
        let depth = cutoffs
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(candidates)
            .min(index.len());
        let ranks = queries
            .iter()
            .zip(gold)
            .map(|(q, &g)| {
                let hits =
                    index.search_hybrid(q, depth, candidates.max(depth), weights, options)?;
                // Missing: one past the depth searched (a sparse search may return fewer hits
                // than asked: passages sharing no token with the question are not hits).
                Ok(hits
                    .iter()
                    .position(|(h, _)| h.index == g)
                    .map_or(depth + 1, |at| at + 1))
            })
            .collect::<Result<Vec<usize>>>()?;
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

/// Where each question's gold passage ranks once the retriever's best `rerank_top` passages are
/// rescored by `reranker` (1-based). A gold passage outside those keeps its retriever rank
/// (above `rerank_top`): reranking cannot reach it. `passage_template` joins titles as for
/// [`crate::pipeline::AnswerOptions::passage_template`].
pub fn reranked_gold_ranks(
    encoder: &Encoder,
    index: &Index,
    reranker: &Reranker,
    questions: &[String],
    gold: &[usize],
    rerank_top: usize,
    passage_template: &str,
) -> Result<Vec<usize>> {
    if questions.len() != gold.len() || rerank_top == 0 {
        return Err(Error::InvalidInput(format!(
            "{} questions for {} gold passages, rerank_top {rerank_top}",
            questions.len(),
            gold.len()
        )));
    }
    let refs: Vec<&str> = questions.iter().map(String::as_str).collect();
    let vectors = encoder.embed(&refs)?;
    let retriever_ranks = encoder.install(|| index.gold_ranks(&vectors.data, gold))?;
    // The same question vectors serve both rankings (encoded once).
    let hits = encoder.install(|| index.search(&vectors.data, rerank_top))?;
    let mut ranks = Vec::with_capacity(questions.len());
    for (j, hits) in hits.iter().enumerate() {
        let Some(at) = hits.iter().position(|h| h.index == gold[j]) else {
            ranks.push(retriever_ranks[j]);
            continue;
        };
        let texts: Vec<String> = hits
            .iter()
            .map(|h| h.passage.templated(passage_template))
            .collect();
        let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (refs[j], t.as_str())).collect();
        let scores: Vec<f32> = reranker
            .score(&pairs)?
            .iter()
            .map(|s| s.scores.last().copied().unwrap_or(0.0))
            .collect();
        // A tie counts against the gold passage.
        let better = scores
            .iter()
            .enumerate()
            .filter(|&(i, &s)| i != at && s >= scores[at])
            .count();
        ranks.push(1 + better);
    }
    Ok(ranks)
}

/// SQuAD's answer normalisation, with MLQA's Spanish articles: lowercase, punctuation removed,
/// the articles (el, la, lo, las, los, un, una, unos, unas; a, an, the) dropped, whitespace
/// collapsed. Its tokens.
fn normalized_tokens(text: &str) -> Vec<String> {
    const ARTICLES: [&str; 12] = [
        "el", "la", "lo", "las", "los", "un", "una", "unos", "unas", "a", "an", "the",
    ];
    let lower = text.to_lowercase();
    let kept: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    kept.split_whitespace()
        .filter(|w| !ARTICLES.contains(w))
        .map(str::to_owned)
        .collect()
}

/// `(exact match, F1)` of a predicted answer against the gold answers (the best over them), as
/// SQuAD's evaluation script computes them: exact match of the normalised texts, and the F1 of
/// their token bags.
pub fn answer_scores(prediction: &str, golds: &[String]) -> (f64, f64) {
    let predicted = normalized_tokens(prediction);
    let mut best = (0.0f64, 0.0f64);
    for gold in golds {
        let gold = normalized_tokens(gold);
        let exact = f64::from(u8::from(predicted == gold));
        let mut remaining = gold.clone();
        let mut same = 0usize;
        for token in &predicted {
            if let Some(at) = remaining.iter().position(|g| g == token) {
                remaining.swap_remove(at);
                same += 1;
            }
        }
        let f1 = if same == 0 {
            // Two empty answers match.
            f64::from(u8::from(predicted.is_empty() && gold.is_empty()))
        } else {
            let precision = same as f64 / predicted.len() as f64;
            let recall = same as f64 / gold.len() as f64;
            2.0 * precision * recall / (precision + recall)
        };
        best = (best.0.max(exact), best.1.max(f1));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::answer_scores;

    /// Values worked out by hand from SQuAD's definitions.
    #[test]
    fn exact_match_and_f1_follow_squads_definitions() {
        let golds = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Articles, case and punctuation do not count.
        assert_eq!(
            answer_scores("El Quijote.", &golds(&["quijote"])),
            (1.0, 1.0)
        );
        // One shared token of 3 predicted and 2 gold: p = 1/3, r = 1/2, F1 = 0.4.
        let (em, f1) = answer_scores("Miguel de Cervantes", &golds(&["Cervantes Saavedra"]));
        assert_eq!(em, 0.0);
        assert!((f1 - 0.4).abs() < 1e-12, "{f1}");
        // The best gold answer counts.
        assert_eq!(
            answer_scores("1605", &golds(&["en 1615", "1605"])),
            (1.0, 1.0)
        );
        assert_eq!(answer_scores("Madrid", &golds(&["Barcelona"])), (0.0, 0.0));
        // Repeated tokens count as often as both sides hold them: p = 2/3, r = 1, F1 = 0.8.
        let (_, f1) = answer_scores("muy muy bien", &golds(&["muy muy"]));
        assert!((f1 - 0.8).abs() < 1e-12, "{f1}");
    }
}
