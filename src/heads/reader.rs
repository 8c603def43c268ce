//! The extractive reader: the answer span of a question in a context, decoded as transformers
//! 4's question-answering pipeline did (transformers 5 removed it; `tools/qa_reference.py`
//! reimplements it for the tests).

use super::{head_architecture, head_encoder, head_layer};
use crate::batching::BatchTask;
use crate::encoder::{Encoder, Options};
use crate::error::{Error, Result};
use crate::io::read_json;
use crate::model::{Dense, DenseActivation};
use crate::pooling::Pooling;
use crate::tokenizer::{TextTokenizer, Tokenized, Window, WindowTokenizer};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// `(start, end)` logits of each token of one window.
pub type WindowLogits = Vec<(f32, f32)>;

/// How a context is read (transformers 4's pipeline defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Tokens per window, question and special tokens included.
    pub max_seq_len: usize,
    /// Tokens of context shared by consecutive windows.
    pub doc_stride: usize,
    /// Longest answer, in tokens.
    pub max_answer_len: usize,
    /// Answers to return, best first.
    pub top_k: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_seq_len: 384,
            doc_stride: 128,
            max_answer_len: 15,
            top_k: 1,
        }
    }
}

/// One answer: the context's characters `start..end` (Unicode scalar values, as Python
/// indexes strings) and `start_prob · end_prob`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub answer: String,
    pub score: f64,
    pub start: usize,
    pub end: usize,
}

/// An encoder with a question-answering head.
pub struct Reader {
    encoder: Encoder,
    /// `qa_outputs`: `(2, H)`, start and end logits of each token.
    qa_outputs: Dense,
    /// The windowing tokenizer of the last call's (max_seq_len, doc_stride): building one
    /// copies the vocabulary, so it is kept.
    windowing: Mutex<Option<Arc<WindowTokenizer>>>,
}

impl Reader {
    /// Loads a `*ForQuestionAnswering` folder; `options` applies to the encoder.
    pub fn from_dir(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        if head_architecture(&config, "ForQuestionAnswering").is_none() {
            return Err(Error::Config {
                path: config_path,
                message: format!(
                    "architectures {} names no question-answering head (BertForQuestionAnswering, XLMRobertaForQuestionAnswering, RobertaForQuestionAnswering, DistilBertForQuestionAnswering)",
                    config["architectures"]
                ),
            });
        }
        let encoder = head_encoder(dir, Pooling::Cls, options)?;
        let h = encoder.model().config.hidden_size;
        let qa_outputs = head_layer(
            encoder.checkpoint(),
            "qa_outputs",
            h,
            DenseActivation::Identity,
        )?;
        if qa_outputs.out_features != 2 {
            return Err(Error::Config {
                path: config_path,
                message: format!(
                    "qa_outputs has {} outputs; a question-answering head has 2 (start, end)",
                    qa_outputs.out_features
                ),
            });
        }
        Ok(Reader {
            encoder,
            qa_outputs,
            windowing: Mutex::new(None),
        })
    }

    /// The encoder under the head.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The windows of `question` and `context` and the `(start, end)` logits of each of their
    /// tokens, window by window.
    pub fn logits(
        &self,
        question: &str,
        context: &str,
        options: &ReadOptions,
    ) -> Result<(Vec<Window>, Vec<WindowLogits>)> {
        let windows = self.windows(question, context, options)?;
        let tokenized: Vec<&Tokenized> = windows.iter().map(|w| &w.tokens).collect();
        let logits = self.token_logits(&tokenized)?;
        Ok((windows, logits))
    }

    /// The best answers to `question` in `context`, best first (at most `top_k`).
    pub fn read(
        &self,
        question: &str,
        context: &str,
        options: &ReadOptions,
    ) -> Result<Vec<Answer>> {
        let (windows, logits) = self.logits(question, context, options)?;
        let mut found: Vec<(f64, usize, usize)> = Vec::new();
        for (window, logits) in windows.iter().zip(&logits) {
            let (start, end): (Vec<f32>, Vec<f32>) = logits.iter().copied().unzip();
            let (max_answer_len, top_k) = (options.max_answer_len, options.top_k);
            found.extend(decode_window(window, &start, &end, max_answer_len, top_k));
        }
        // Stable: among equal scores, earlier windows first (as the pipeline's sort).
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        found.truncate(options.top_k);
        Ok(found
            .into_iter()
            .map(|(score, start, end)| Answer {
                answer: context.chars().skip(start).take(end - start).collect(),
                score,
                start,
                end,
            })
            .collect())
    }

    /// The checked windows of a pair (token types zeroed for a model without them).
    fn windows(&self, question: &str, context: &str, options: &ReadOptions) -> Result<Vec<Window>> {
        let positions = self.encoder.model().config.max_positions();
        let ReadOptions {
            max_seq_len,
            doc_stride,
            max_answer_len,
            top_k,
        } = *options;
        if max_seq_len == 0 || max_seq_len > positions {
            return Err(Error::InvalidInput(format!(
                "max_seq_len {max_seq_len} must be between 1 and the model's {positions} positions"
            )));
        }
        if doc_stride >= max_seq_len || max_answer_len == 0 || top_k == 0 {
            return Err(Error::InvalidInput(format!(
                "doc_stride ({doc_stride}) must be below max_seq_len ({max_seq_len}), max_answer_len ({max_answer_len}) and top_k ({top_k}) at least 1"
            )));
        }
        let windowing = {
            let mut cached = self.windowing.lock().unwrap_or_else(|e| e.into_inner());
            match cached.as_ref() {
                Some(w) if (w.max_seq_len, w.doc_stride) == (max_seq_len, doc_stride) => w.clone(),
                _ => {
                    let tokenizer = self.encoder.tokenizer();
                    let built = Arc::new(tokenizer.windowing(max_seq_len, doc_stride)?);
                    *cached = Some(built.clone());
                    built
                }
            }
        };
        let mut windows = TextTokenizer::windows_with(&windowing, question, context)?;
        if !self.encoder.model().config.uses_token_types() {
            for w in &mut windows {
                w.tokens.type_ids.iter_mut().for_each(|t| *t = 0);
            }
        }
        Ok(windows)
    }

    /// `(start, end)` logits of every token of already tokenized sequences (each a whole
    /// window: question, context and special tokens), packed in one pass; one list per sequence.
    pub fn token_logits<T: std::borrow::Borrow<Tokenized>>(
        &self,
        tokenized: &[T],
    ) -> Result<Vec<WindowLogits>> {
        let hidden = self.encoder.last_hidden_state(tokenized)?;
        let tokens = hidden.len() / self.encoder.model().config.hidden_size;
        let logits = self.qa_outputs.forward(&hidden, tokens);
        let mut pairs = logits.chunks_exact(2).map(|p| (p[0], p[1]));
        Ok(tokenized
            .iter()
            .map(|t| pairs.by_ref().take(t.borrow().ids.len()).collect())
            .collect())
    }
}

/// A reader: start and end logits of every token of each window. Every call is read alike,
/// so all queued calls share a pass.
impl BatchTask for Reader {
    type Settings = ();
    type PassKey = ();
    type Output = WindowLogits;

    fn pass_key(_: &()) {}

    fn max_batch_tokens(&self) -> usize {
        self.encoder.max_batch_tokens()
    }

    fn run(&self, _: &(), inputs: &[Tokenized]) -> Result<Vec<WindowLogits>> {
        self.token_logits(inputs)
    }

    fn finish(&self, _: &(), logits: Vec<WindowLogits>) -> Result<Vec<WindowLogits>> {
        Ok(logits)
    }
}

/// The best `top_k` spans of one window: `(score, first char, end char)` in the context.
fn decode_window(
    window: &Window,
    start_logits: &[f32],
    end_logits: &[f32],
    max_answer_len: usize,
    top_k: usize,
) -> Vec<(f64, usize, usize)> {
    let n = window.tokens.ids.len();
    // Context tokens may start or end an answer; so may the first token ("no answer"),
    // whose probability is then set to 0.
    let allowed: Vec<bool> = (0..n)
        .map(|t| t == 0 || window.sequence_ids[t] == Some(1))
        .collect();
    let probabilities = |logits: &[f32]| -> Vec<f64> {
        let masked: Vec<f64> = (0..n)
            .map(|t| {
                if allowed[t] {
                    logits[t] as f64
                } else {
                    -10000.0
                }
            })
            .collect();
        let max = masked.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = masked.iter().map(|&l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        let mut p: Vec<f64> = exps.iter().map(|e| e / sum).collect();
        if let Some(first) = p.first_mut() {
            *first = 0.0;
        }
        p
    };
    let (start, end) = (probabilities(start_logits), probabilities(end_logits));
    let mut spans = Vec::new();
    for s in (0..n).filter(|&s| allowed[s]) {
        for e in (s..n.min(s + max_answer_len)).filter(|&e| allowed[e]) {
            spans.push((start[s] * end[e], s, e));
        }
    }
    spans.sort_by(|a, b| b.0.total_cmp(&a.0));
    spans.truncate(top_k);
    spans
        .into_iter()
        .map(|(score, s, e)| (score, word_chars(window, s).0, word_chars(window, e).1))
        .collect()
}

/// The characters of the context word holding token `t` within this window (`(0, 0)` for a
/// token outside the context): answers are aligned to whole words.
fn word_chars(window: &Window, t: usize) -> (usize, usize) {
    if window.sequence_ids[t] != Some(1) {
        return (0, 0);
    }
    let word = window.word_ids[t];
    (0..window.tokens.ids.len())
        .filter(|&u| window.sequence_ids[u] == Some(1) && window.word_ids[u] == word)
        .map(|u| window.offsets[u])
        .fold((usize::MAX, 0), |(a, b), (s, e)| (a.min(s), b.max(e)))
}
