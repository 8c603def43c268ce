//! ModernBERT's sequence-classification head (`ModernBertForSequenceClassification`): the
//! last hidden state pooled (`classifier_pooling`: the first token, or the mean of every
//! token), then `head.dense`, its activation, `head.norm`, and `classifier`.

use super::head_layer_with;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{Dense, DenseActivation, HeadNorm};
use crate::pooling::Pooling;
use serde_json::Value;
use std::path::Path;

/// The pooling `classifier_pooling` names (`cls` when absent, transformers' default).
pub(super) fn pooling(config: &Value, path: &Path) -> Result<Pooling> {
    match config["classifier_pooling"].as_str().unwrap_or("cls") {
        "cls" => Ok(Pooling::Cls),
        "mean" => Ok(Pooling::Mean),
        other => Err(Error::Config {
            path: path.to_owned(),
            message: format!("classifier_pooling {other:?} is not supported (cls, mean)"),
        }),
    }
}

/// `norm(act(head.dense(x)))`, then `classifier`, on `hidden` wide pooled rows.
pub(super) fn classification_head(
    checkpoint: &Checkpoint,
    config: &Value,
    hidden: usize,
    path: &Path,
) -> Result<Vec<Dense>> {
    let error = |message: String| Error::Config {
        path: path.to_owned(),
        message,
    };
    let activation = match config["classifier_activation"].as_str().unwrap_or("gelu") {
        "gelu" => DenseActivation::Gelu,
        "relu" => DenseActivation::Relu,
        "tanh" => DenseActivation::Tanh,
        other => {
            return Err(error(format!(
                "classifier_activation {other:?} is not supported (gelu, relu, tanh)"
            )))
        }
    };
    let flag = |name: &str| config[name].as_bool().unwrap_or(false);
    let mut dense = head_layer_with(
        checkpoint,
        "head.dense",
        hidden,
        activation,
        flag("classifier_bias"),
    )?;
    // `head.norm` and `classifier` read `hidden` values: so must `head.dense` give.
    if dense.out_features != hidden {
        return Err(Error::Shape {
            name: "head.dense.weight".into(),
            expected: vec![hidden, hidden],
            found: vec![dense.out_features, hidden],
        });
    }
    let eps = config["norm_eps"].as_f64().unwrap_or(1e-5);
    let vector = |name: &str| -> Result<Vec<f32>> {
        Ok(checkpoint.tensor(name, &[hidden])?.as_slice().to_vec())
    };
    dense.norm = Some(HeadNorm {
        weight: vector("head.norm.weight")?,
        bias: match flag("norm_bias") {
            true => Some(vector("head.norm.bias")?),
            false => None,
        },
        eps,
    });
    let classifier = head_layer_with(
        checkpoint,
        "classifier",
        hidden,
        DenseActivation::Identity,
        true,
    )?;
    Ok(vec![dense, classifier])
}
