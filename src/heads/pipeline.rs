//! Question answering end to end: question encoder → index → optional cross-encoder reranking
//! → reader over the best passages → the best answers, with the time spent in each stage.

use super::{Answer, ReadOptions, Reader, Reranker};
use crate::encoder::{Encoder, Encoding};
use crate::error::{Error, Result};
use crate::retrieval::{Index, Passage};
use std::sync::Arc;
use std::time::Instant;

/// How many passages each stage keeps.
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// Passages the reranker rescores (when there is one).
    pub rerank_top: usize,
    /// Passages the reader reads (the best after retrieval, or after reranking).
    pub read_top: usize,
    /// Answers returned, best first.
    pub top_k: usize,
    /// How a passage's title is joined to its text for the reranker.
    pub passage_template: String,
    /// How the reader reads each passage (its `top_k` is this struct's).
    pub read: ReadOptions,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            rerank_top: 20,
            read_top: 3,
            top_k: 1,
            passage_template: "{title}. {text}".into(),
            read: ReadOptions::default(),
        }
    }
}

/// One answer with the passage it came from.
#[derive(Debug, Clone)]
pub struct PassageAnswer {
    pub answer: Answer,
    pub passage: Passage,
    /// The passage's inner product with the question.
    pub retrieval_score: f32,
    /// The cross-encoder's score (sigmoid or top softmax probability), when reranked.
    pub rerank_score: Option<f32>,
}

/// Answers and the milliseconds each stage took.
#[derive(Debug, Clone)]
pub struct PipelineResult {
    pub answers: Vec<PassageAnswer>,
    pub retrieve_ms: f64,
    pub rerank_ms: f64,
    pub read_ms: f64,
}

impl PipelineResult {
    /// `{"question", "answers": [{"answer", "score", "start", "end", "passage_id", "title",
    /// "retrieval_score", "rerank_score"}], "ms": {"retrieve", "rerank", "read"}}`: what
    /// `densa answer --json` prints and `densa serve`'s `/answer` returns.
    pub fn to_json(&self, question: &str) -> serde_json::Value {
        let answers: Vec<serde_json::Value> = self
            .answers
            .iter()
            .map(|a| {
                serde_json::json!({
                    "answer": a.answer.answer, "score": a.answer.score,
                    "start": a.answer.start, "end": a.answer.end,
                    "passage_id": a.passage.id, "title": a.passage.title,
                    "retrieval_score": a.retrieval_score, "rerank_score": a.rerank_score,
                })
            })
            .collect();
        serde_json::json!({
            "question": question,
            "answers": answers,
            "ms": { "retrieve": self.retrieve_ms, "rerank": self.rerank_ms, "read": self.read_ms },
        })
    }
}

/// A loaded question-answering service: `Send + Sync`, so one can serve many threads. The
/// models are shared (`Arc`), so a server can also use them on their own.
pub struct QaPipeline {
    pub question_encoder: Arc<Encoder>,
    /// How questions are encoded (the question encoder's default, unless set).
    pub question_encoding: Encoding,
    pub index: Arc<Index>,
    pub reranker: Option<Arc<Reranker>>,
    pub reader: Arc<Reader>,
}

impl QaPipeline {
    /// A pipeline that encodes questions with the question encoder's default encoding.
    pub fn new(
        question_encoder: Arc<Encoder>,
        index: Arc<Index>,
        reranker: Option<Arc<Reranker>>,
        reader: Arc<Reader>,
    ) -> Self {
        QaPipeline {
            question_encoding: question_encoder.encoding().clone(),
            question_encoder,
            index,
            reranker,
            reader,
        }
    }

    /// The best answers to `question`.
    pub fn answer(&self, question: &str, options: &AnswerOptions) -> Result<PipelineResult> {
        if options.read_top == 0 || options.top_k == 0 || options.rerank_top == 0 {
            return Err(Error::InvalidInput(
                "rerank_top, read_top and top_k must be at least 1".into(),
            ));
        }
        let started = Instant::now();
        let first_k = match self.reranker {
            Some(_) => options.rerank_top.max(options.read_top),
            None => options.read_top,
        };
        let hits = self
            .index
            .search_questions_with(
                &self.question_encoder,
                &self.question_encoding,
                &[question],
                first_k,
            )?
            .remove(0);
        let retrieve_ms = started.elapsed().as_secs_f64() * 1e3;

        let started = Instant::now();
        // (hit, rerank score), best first.
        let mut ranked: Vec<(usize, Option<f32>)> = (0..hits.len()).map(|i| (i, None)).collect();
        if let Some(reranker) = &self.reranker {
            let texts: Vec<String> = hits
                .iter()
                .map(|h| h.passage.templated(&options.passage_template))
                .collect();
            let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (question, t.as_str())).collect();
            let scores = reranker.score(&pairs)?;
            // One label: its sigmoid; several: the probability of the last (the "relevant"
            // class of binary cross-encoders).
            ranked = scores
                .iter()
                .enumerate()
                .map(|(i, s)| (i, s.scores.last().copied()))
                .collect();
            ranked.sort_by(|a, b| b.1.unwrap_or(0.0).total_cmp(&a.1.unwrap_or(0.0)));
        }
        let rerank_ms = started.elapsed().as_secs_f64() * 1e3;

        let started = Instant::now();
        let read = ReadOptions {
            top_k: options.top_k,
            ..options.read
        };
        let mut answers = Vec::new();
        for &(i, rerank_score) in ranked.iter().take(options.read_top) {
            let hit = &hits[i];
            for answer in self.reader.read(question, &hit.passage.text, &read)? {
                answers.push(PassageAnswer {
                    answer,
                    passage: hit.passage.clone(),
                    retrieval_score: hit.score,
                    rerank_score,
                });
            }
        }
        // Stable: equal scores keep the passages' order.
        answers.sort_by(|a, b| b.answer.score.total_cmp(&a.answer.score));
        answers.truncate(options.top_k);
        Ok(PipelineResult {
            answers,
            retrieve_ms,
            rerank_ms,
            read_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// Where each question's gold passage ranks once the retriever's best `rerank_top` passages are
/// rescored by `reranker` (1-based). A gold passage outside those keeps its retriever rank
/// (above `rerank_top`): reranking cannot reach it. `passage_template` joins titles as for
/// [`AnswerOptions::passage_template`].
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
