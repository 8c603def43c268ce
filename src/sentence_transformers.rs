//! sentence-transformers folders, read in full: `modules.json` (`Transformer`, `Pooling`,
//! `Dense`, `Normalize`), the `Pooling` module's config (every mode, `include_prompt`),
//! `Dense` weights and activation, `config_sentence_transformers.json` (`prompts`,
//! `default_prompt_name`) and `sentence_bert_config.json` (`max_seq_length`, `do_lower_case`).
//!
//! Folders written by sentence-transformers 2 through 6 are read: 6 writes
//! `"pooling_mode": "mean"` where older versions wrote `"pooling_mode_mean_tokens": true`,
//! and module types under `sentence_transformers.base.modules` or
//! `sentence_transformers.sentence_transformer.modules` where older ones wrote
//! `sentence_transformers.models`.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::io::read_json;
use crate::model::{Dense, DenseActivation};
use crate::pooling::Pooling;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What a sentence-transformers folder says (all empty for a plain transformers folder).
#[derive(Debug, Default)]
pub struct SentenceTransformers {
    /// The `Pooling` module's mode, and the file it came from.
    pub pooling: Option<(Pooling, PathBuf)>,
    /// `include_prompt` (default true): false leaves the prompt's tokens out of the pooling.
    pub include_prompt: bool,
    /// `Dense` modules after pooling, in order.
    pub dense: Vec<Dense>,
    /// A `Normalize` module follows.
    pub normalize: bool,
    /// `sentence_bert_config.json` `max_seq_length`.
    pub max_seq_length: Option<usize>,
    /// `sentence_bert_config.json` `do_lower_case`.
    pub do_lower_case: bool,
    /// `config_sentence_transformers.json` `prompts`: (name, text), in the file's order.
    pub prompts: Vec<(String, String)>,
    /// `config_sentence_transformers.json` `default_prompt_name`.
    pub default_prompt_name: Option<String>,
}

/// The last component of a module type (`sentence_transformers.models.Pooling` → `Pooling`).
fn module_kind(kind: &str) -> &str {
    kind.rsplit('.').next().unwrap_or(kind)
}

fn config_error(path: &Path, message: String) -> Error {
    Error::Config {
        path: path.to_owned(),
        message,
    }
}

impl SentenceTransformers {
    /// Reads the folder's sentence-transformers files (none: all defaults).
    pub fn read(dir: &Path) -> Result<Self> {
        let mut st = SentenceTransformers {
            include_prompt: true,
            ..Default::default()
        };
        let modules_path = dir.join("modules.json");
        if modules_path.is_file() {
            let modules = read_json(&modules_path)?;
            let modules = modules
                .as_array()
                .ok_or_else(|| config_error(&modules_path, "expected a list of modules".into()))?;
            for module in modules {
                let kind = module.get("type").and_then(Value::as_str).unwrap_or("");
                let sub = module.get("path").and_then(Value::as_str).unwrap_or("");
                match module_kind(kind) {
                    "Transformer" => {}
                    "Normalize" => st.normalize = true,
                    "Pooling" => st.read_pooling(&dir.join(sub).join("config.json"))?,
                    "Dense" => st.dense.push(read_dense(&dir.join(sub))?),
                    _ => {
                        return Err(config_error(
                            &modules_path,
                            format!("module type {kind:?} is not supported (Transformer, Pooling, Dense, Normalize)"),
                        ))
                    }
                }
            }
        }
        let sbert = dir.join("sentence_bert_config.json");
        if sbert.is_file() {
            let cfg = read_json(&sbert)?;
            st.max_seq_length = cfg
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map(|v| v as usize);
            st.do_lower_case = cfg
                .get("do_lower_case")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
        // sentence-transformers 6 keeps max_seq_length as the tokenizer's model_max_length.
        let tokenizer_config = dir.join("tokenizer_config.json");
        if st.max_seq_length.is_none() && modules_path.is_file() && tokenizer_config.is_file() {
            st.max_seq_length = read_json(&tokenizer_config)?
                .get("model_max_length")
                .and_then(Value::as_u64)
                .filter(|&v| v <= 1 << 20)
                .map(|v| v as usize);
        }
        let st_config = dir.join("config_sentence_transformers.json");
        if st_config.is_file() {
            let cfg = read_json(&st_config)?;
            if let Some(prompts) = cfg.get("prompts").and_then(Value::as_object) {
                for (name, text) in prompts {
                    let text = text.as_str().ok_or_else(|| {
                        config_error(&st_config, format!("prompt {name:?} is not a string"))
                    })?;
                    st.prompts.push((name.clone(), text.to_owned()));
                }
            }
            st.default_prompt_name = cfg
                .get("default_prompt_name")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Ok(st)
    }

    fn read_pooling(&mut self, path: &Path) -> Result<()> {
        let cfg = read_json(path)?;
        let on = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
        // sentence-transformers 6: one "pooling_mode" (a name, or a list of them).
        let modes: Vec<String> = match cfg.get("pooling_mode") {
            Some(Value::String(mode)) => vec![mode.clone()],
            Some(Value::Array(modes)) => modes
                .iter()
                .map(|m| m.as_str().unwrap_or("?").to_owned())
                .collect(),
            Some(other) => {
                return Err(config_error(
                    path,
                    format!("pooling_mode {other} is not a mode name"),
                ))
            }
            // Older versions: one boolean per mode.
            None => [
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_mean_tokens", "mean"),
                ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
                ("pooling_mode_weightedmean_tokens", "weightedmean"),
                ("pooling_mode_lasttoken", "lasttoken"),
            ]
            .into_iter()
            .filter(|(key, _)| on(key))
            .map(|(_, mode)| mode.to_owned())
            .collect(),
        };
        let mode = match modes.as_slice() {
            [] => "mean",
            [one] => one.as_str(),
            _ => {
                return Err(config_error(
                    path,
                    format!(
                        "densa supports exactly one pooling mode; this config asks for {} ({})",
                        modes.len(),
                        modes.join(", ")
                    ),
                ))
            }
        };
        let pooling = match mode {
            "cls" => Pooling::Cls,
            "max" => Pooling::Max,
            "mean" => Pooling::Mean,
            "mean_sqrt_len_tokens" => Pooling::MeanSqrtLen,
            "weightedmean" => Pooling::WeightedMean,
            "lasttoken" => Pooling::LastToken,
            other => {
                return Err(config_error(
                    path,
                    format!("pooling mode {other:?} is not supported"),
                ))
            }
        };
        self.pooling = Some((pooling, path.to_owned()));
        self.include_prompt = cfg
            .get("include_prompt")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Ok(())
    }

    /// The prompt text a name stands for, or an error listing the folder's prompts.
    pub fn prompt(&self, name: &str) -> Result<&str> {
        self.prompts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.as_str())
            .ok_or_else(|| {
                let known: Vec<&str> = self.prompts.iter().map(|(n, _)| n.as_str()).collect();
                Error::InvalidInput(format!(
                    "prompt name {name:?} is not among this model's prompts ({})",
                    if known.is_empty() {
                        "it defines none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }
}

/// A `Dense` module folder: `config.json` and `model.safetensors` (`linear.weight`,
/// `linear.bias`).
fn read_dense(dir: &Path) -> Result<Dense> {
    let path = dir.join("config.json");
    let cfg = read_json(&path)?;
    let size = |key: &str| {
        cfg.get(key)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0 && v <= 1 << 16)
            .map(|v| v as usize)
            .ok_or_else(|| config_error(&path, format!("{key} is missing or out of range")))
    };
    let (in_features, out_features) = (size("in_features")?, size("out_features")?);
    let has_bias = cfg.get("bias").and_then(Value::as_bool).unwrap_or(true);
    let activation_name = cfg
        .get("activation_function")
        .and_then(Value::as_str)
        .unwrap_or("torch.nn.modules.linear.Identity");
    let activation = DenseActivation::from_name(activation_name).ok_or_else(|| {
        config_error(
            &path,
            format!("activation_function {activation_name:?} is not supported (Identity, Tanh, ReLU, Sigmoid, GELU)"),
        )
    })?;
    if !dir.join("model.safetensors").is_file() {
        return Err(Error::MissingFile {
            path: dir.join("model.safetensors"),
            hint: " (a Dense module's weights; convert pytorch_model.bin with tools/convert_to_safetensors.py)".into(),
        });
    }
    let checkpoint = Checkpoint::open_dir(dir)?;
    let weight = checkpoint
        .tensor("linear.weight", &[out_features, in_features])?
        .as_slice()
        .to_vec();
    let bias = match has_bias {
        true => Some(
            checkpoint
                .tensor("linear.bias", &[out_features])?
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
