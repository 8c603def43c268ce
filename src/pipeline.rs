//! Question answering end to end: question encoder → index → optional cross-encoder reranking
//! → reader over the best passages → the best answers, with the time spent in each stage.

use crate::encoder::{Encoder, Encoding};
use crate::error::{Error, Result};
use crate::heads::{Answer, ReadOptions, Reader, Reranker};
use crate::retrieval::{Index, Passage, SearchOptions};
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
    /// How the index is searched (exact scan or graph, its expansion, rescoring).
    pub search: SearchOptions,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            rerank_top: 20,
            read_top: 3,
            top_k: 1,
            passage_template: "{title}. {text}".into(),
            read: ReadOptions::default(),
            search: SearchOptions::default(),
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
                    "passage_id": a.passage.id.to_json(), "title": a.passage.title,
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
                &options.search,
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
