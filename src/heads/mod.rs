//! Task heads on the shared encoder. A cross-encoder ([`Reranker`], `reranker.rs`) scores
//! (query, passage) pairs with a `*ForSequenceClassification` head, chosen from `config.json`
//! `architectures`:
//!
//! | architecture | head, on the pair's first token |
//! |---|---|
//! | `BertForSequenceClassification` | `classifier` on BERT's tanh pooler |
//! | `XLMRobertaForSequenceClassification`, `RobertaForSequenceClassification`, `CamembertForSequenceClassification` | `classifier.dense`, tanh, `classifier.out_proj` |
//! | `DistilBertForSequenceClassification` | `pre_classifier`, ReLU, `classifier` |
//! | `ModernBertForSequenceClassification` | `head.dense`, GELU, `head.norm`, `classifier`, on the first token or the mean of all (`classifier_pooling`) |
//!
//! An extractive reader ([`Reader`], `reader.rs`) finds the answer span in a context with a
//! `*ForQuestionAnswering` head (`qa_outputs`: start and end logits per token).
//! [`crate::pipeline::QaPipeline`] chains question encoder, index, reranker and reader.
//!
//! The inputs are packed like embeddings (a call costs what its real tokens cost) and int8
//! works on the encoder under every head; the head itself stays f32.

pub mod m3;
mod modernbert;
mod reader;
mod reranker;

pub use m3::{M3Heads, M3Output, M3};
pub use reader::{Answer, ReadOptions, Reader, WindowLogits};
#[cfg(feature = "serve")]
pub(crate) use reranker::{sigmoid, softmax};
pub use reranker::{PairScores, Reranker};

use crate::checkpoint::Checkpoint;
use crate::encoder::{Encoder, Options, Prompt};
use crate::error::{Error, Result};
use crate::model::{Dense, DenseActivation};
use crate::pooling::Pooling;
use serde_json::Value;
use std::path::Path;

/// The first architecture of `config.json` whose name ends with `suffix`
/// (`ForSequenceClassification`, `ForQuestionAnswering`).
fn head_architecture<'a>(config: &'a Value, suffix: &str) -> Option<&'a str> {
    config["architectures"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.ends_with(suffix))
}

/// The encoder under a head: the caller's options with the head's pooling, and no prompt,
/// normalisation or truncation (a head reads its input as it was trained).
fn head_encoder(dir: &Path, pooling: Pooling, options: Options) -> Result<Encoder> {
    Encoder::from_dir(
        dir,
        Options {
            pooling,
            normalize: false,
            prompt: Prompt::None,
            truncate_dim: None,
            ..options
        },
    )
}

/// A linear layer of the head, `name.weight (out, in)` and `name.bias`, stored at the root of
/// the checkpoint.
fn head_layer(
    checkpoint: &Checkpoint,
    name: &str,
    in_features: usize,
    activation: DenseActivation,
) -> Result<Dense> {
    head_layer_with(checkpoint, name, in_features, activation, true)
}

/// [`head_layer`], with `name.bias` only if `bias` (ModernBERT's `classifier_bias`).
fn head_layer_with(
    checkpoint: &Checkpoint,
    name: &str,
    in_features: usize,
    activation: DenseActivation,
    bias: bool,
) -> Result<Dense> {
    let weight_name = format!("{name}.weight");
    let (_, shape, _) = checkpoint
        .raw(&weight_name)
        .ok_or_else(|| Error::MissingTensor {
            name: weight_name.clone(),
            prefixes: "\"\"".into(),
        })?;
    let out_features = shape.first().copied().unwrap_or(0);
    let weight = checkpoint
        .tensor(&weight_name, &[out_features, in_features])?
        .as_slice()
        .to_vec();
    let bias = match bias {
        true => Some(
            checkpoint
                .tensor(&format!("{name}.bias"), &[out_features])?
                .as_slice()
                .to_vec(),
        ),
        false => None,
    };
    Ok(Dense {
        in_features,
        out_features,
        weight,
        bias,
        activation,
        norm: None,
    })
}
