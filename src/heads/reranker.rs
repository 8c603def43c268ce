//! The cross-encoder: a sequence-classification head on the encoder's pooled first token.

use super::{head_architecture, head_encoder, head_layer};
use crate::batching::BatchTask;
use crate::encoder::{Encoder, Options};
use crate::error::{Error, Result};
use crate::io::read_json;
use crate::model::{Dense, DenseActivation};
use crate::pooling::Pooling;
use crate::tokenizer::{Input, Tokenized};
use serde_json::Value;
use std::path::Path;

/// A cross-encoder: an encoder with a sequence-classification head.
pub struct Reranker {
    encoder: Encoder,
    /// The head's layers, applied in order to the pooled first token.
    head: Vec<Dense>,
    /// `id2label`, in label order (`LABEL_i` where the config names none).
    labels: Vec<String>,
}

/// One pair's output: the raw logits and, as sentence-transformers' `CrossEncoder.predict`
/// returns by default, their sigmoid (one label) or softmax (several).
#[derive(Debug, Clone, PartialEq)]
pub struct PairScores {
    pub logits: Vec<f32>,
    pub scores: Vec<f32>,
}

impl PairScores {
    /// The index of the highest logit.
    pub fn label(&self) -> usize {
        (0..self.logits.len())
            .max_by(|&a, &b| self.logits[a].total_cmp(&self.logits[b]))
            .unwrap_or(0)
    }
}

impl Reranker {
    /// Loads a cross-encoder folder. `options` applies to the encoder (threads, precision,
    /// max length, batching); pooling, prompts and normalisation are the head's.
    pub fn from_dir(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        let architecture = head_architecture(&config, "ForSequenceClassification").ok_or_else(|| Error::Config {
            path: config_path.clone(),
            message: format!(
                "architectures {} names no sequence-classification head (BertForSequenceClassification, XLMRobertaForSequenceClassification, RobertaForSequenceClassification, CamembertForSequenceClassification, DistilBertForSequenceClassification, ModernBertForSequenceClassification)",
                config["architectures"]
            ),
        })?;
        let (pooling, layers): (Pooling, &[(&str, DenseActivation)]) = match architecture {
            "BertForSequenceClassification" => (
                Pooling::Pooler,
                &[("classifier", DenseActivation::Identity)],
            ),
            "XLMRobertaForSequenceClassification"
            | "RobertaForSequenceClassification"
            | "CamembertForSequenceClassification" => (
                Pooling::Cls,
                &[
                    ("classifier.dense", DenseActivation::Tanh),
                    ("classifier.out_proj", DenseActivation::Identity),
                ],
            ),
            "DistilBertForSequenceClassification" => (
                Pooling::Cls,
                &[
                    ("pre_classifier", DenseActivation::Relu),
                    ("classifier", DenseActivation::Identity),
                ],
            ),
            "ModernBertForSequenceClassification" => {
                let pooling = super::modernbert::pooling(&config, &config_path)?;
                let encoder = head_encoder(dir, pooling, options)?;
                let h = encoder.model().config.hidden_size;
                let head = super::modernbert::classification_head(
                    encoder.checkpoint(),
                    &config,
                    h,
                    &config_path,
                )?;
                return Reranker::with_head(encoder, head, &config, config_path);
            }
            other => {
                return Err(Error::Config {
                    path: config_path,
                    message: format!("{other} is not a supported head"),
                })
            }
        };
        let encoder = head_encoder(dir, pooling, options)?;
        let mut head = Vec::new();
        let mut width = encoder.model().config.hidden_size;
        for &(name, activation) in layers {
            let layer = head_layer(encoder.checkpoint(), name, width, activation)?;
            width = layer.out_features;
            head.push(layer);
        }
        Reranker::with_head(encoder, head, &config, config_path)
    }

    /// The cross-encoder of `encoder` and its `head`, labelled by the config's `id2label`.
    fn with_head(
        encoder: Encoder,
        head: Vec<Dense>,
        config: &Value,
        config_path: std::path::PathBuf,
    ) -> Result<Self> {
        let width = head.last().map_or(0, |layer| layer.out_features);
        let labels = labels(config, width).map_err(|message| Error::Config {
            path: config_path,
            message,
        })?;
        Ok(Reranker {
            encoder,
            head,
            labels,
        })
    }

    /// Logits and scores of each `(query, text)` pair, in input order.
    pub fn score(&self, pairs: &[(&str, &str)]) -> Result<Vec<PairScores>> {
        let inputs: Vec<Input> = pairs.iter().map(|&(a, b)| Input::Pair(a, b)).collect();
        self.classify(&inputs)
    }

    /// Logits and scores of each input, a text or a pair, in input order (a sequence
    /// classifier's labels of single texts, as transformers' text-classification).
    pub fn classify(&self, inputs: &[Input]) -> Result<Vec<PairScores>> {
        let tokenized = self.encoder.tokenize(inputs)?;
        self.score_tokenized(&tokenized)
    }

    /// Logits and scores of already tokenized pairs (`[CLS] query [SEP] text [SEP]`, as
    /// [`Encoder::tokenize`] makes them), in input order.
    pub fn score_tokenized(&self, tokenized: &[Tokenized]) -> Result<Vec<PairScores>> {
        let pooled = self.encoder.embed_tokenized(tokenized)?;
        Ok(self.head_scores(pooled.data, tokenized.len()))
    }

    /// The head on `n` pooled vectors: each pair's logits and scores.
    fn head_scores(&self, pooled: Vec<f32>, n: usize) -> Vec<PairScores> {
        let mut values = pooled;
        for layer in &self.head {
            values = layer.forward(&values, n);
        }
        values
            .chunks_exact(self.labels.len().max(1))
            .map(|logits| PairScores {
                logits: logits.to_vec(),
                scores: scores(logits),
            })
            .collect()
    }

    /// `id2label`, in label order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The encoder under the head.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

/// A cross-encoder: the logits and scores of each pair. Every call is scored alike, so all
/// queued calls share a pass.
impl BatchTask for Reranker {
    type Settings = ();
    type PassKey = ();
    type Output = PairScores;

    fn pass_key(_: &()) {}

    fn max_batch_tokens(&self) -> usize {
        self.encoder.max_batch_tokens()
    }

    /// The merged call in passes bounded by tokens alone (the batcher bounded it already).
    fn run(&self, _: &(), inputs: &[Tokenized]) -> Result<Vec<PairScores>> {
        let encoding = self.encoder.encoding();
        let pooled = self.encoder.embed_in_passes(inputs, encoding, usize::MAX)?;
        Ok(self.head_scores(pooled.data, inputs.len()))
    }

    fn finish(&self, _: &(), scores: Vec<PairScores>) -> Result<Vec<PairScores>> {
        Ok(scores)
    }
}

/// sigmoid of a single logit, softmax of several.
fn scores(logits: &[f32]) -> Vec<f32> {
    if let [logit] = logits {
        return vec![sigmoid(*logit)];
    }
    softmax(logits)
}

/// `1 / (1 + e^-x)`, in f64.
pub(crate) fn sigmoid(logit: f32) -> f32 {
    (1.0 / (1.0 + (-(logit as f64)).exp())) as f32
}

/// The softmax of `logits`, in f64 (shifted by the largest, so no exponential overflows).
pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// The label names of a head of `n` outputs: `id2label` when it names them all, else `LABEL_i`.
fn labels(config: &Value, n: usize) -> std::result::Result<Vec<String>, String> {
    let mut labels: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
    if let Some(map) = config["id2label"].as_object() {
        for (key, name) in map {
            let i: usize = key
                .parse()
                .map_err(|_| format!("id2label key {key:?} is not a label index"))?;
            let name = name
                .as_str()
                .ok_or_else(|| format!("id2label[{key}] is not a string"))?;
            if i >= n {
                return Err(format!(
                    "id2label names label {i}, but the head has {n} outputs"
                ));
            }
            labels[i] = name.to_owned();
        }
    }
    Ok(labels)
}
