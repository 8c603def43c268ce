//! Loading: finding the BERT trunk in a checkpoint (plain, `bert.`, DPR roots), checking
//! every tensor's shape against the config, stacking Q/K/V, packing or quantizing the linear
//! layers.

use super::linear::{Linear, Precision, StoredWeight};
use super::{BertAttention, BertLayer, BertModel, DenseLayerNorm, Embeddings, LayerNorm};
use crate::checkpoint::{Checkpoint, Tensor};
use crate::config::{BertConfig, ModelType};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// The prefixes under which checkpoints store the BERT trunk, tried in order.
pub const TRUNK_PREFIXES: [&str; 4] = [
    "",
    "bert.",
    "ctx_encoder.bert_model.",
    "question_encoder.bert_model.",
];

/// Finds the tensors of one model inside a checkpoint, whatever prefix it uses.
struct WeightLoader<'a> {
    checkpoint: &'a Checkpoint,
    prefix: &'static str,
    /// Precision of the linear layers this loader builds.
    precision: Precision,
    /// Accept NaN and ±Inf in weights (otherwise they are an error naming the tensor).
    allow_non_finite: bool,
}

impl WeightLoader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        if !self.checkpoint.contains(&full) {
            return Err(Error::MissingTensor {
                name: full,
                prefixes: format!("{:?}", self.prefix),
            });
        }
        let tensor = self.checkpoint.tensor(&full, shape)?;
        self.check_finite(&full, tensor.as_slice())?;
        Ok(tensor)
    }

    /// NaN or ±Inf in a weight poisons every vector it touches: refuse it, naming the tensor,
    /// unless the caller allowed it.
    fn check_finite(&self, name: &str, values: &[f32]) -> Result<()> {
        if self.allow_non_finite {
            return Ok(());
        }
        // In parallel (on the encoder's threads): this pass is the first to touch each page.
        let count: usize = values
            .par_chunks(1 << 16)
            .map(|c| c.iter().filter(|v| !v.is_finite()).count())
            .sum();
        if count == 0 {
            return Ok(());
        }
        let first = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        Err(Error::NonFinite {
            name: name.into(),
            count,
            first_index: first,
            first_value: values[first],
        })
    }

    /// `{name}.weight`: f32 (or F16/BF16), or int8 with `{name}.weight_scale` beside it.
    fn stored_weight(
        &self,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<StoredWeight<'_>> {
        let scale_name = format!("{name}.weight_scale");
        if !self
            .checkpoint
            .contains(&format!("{}{scale_name}", self.prefix))
        {
            return Ok(StoredWeight::F32(vec![self.tensor(
                &format!("{name}.weight"),
                &[out_features, in_features],
            )?]));
        }
        let full = format!("{}{name}.weight", self.prefix);
        let (dtype, shape, bytes) =
            self.checkpoint
                .raw(&full)
                .ok_or_else(|| Error::MissingTensor {
                    name: full.clone(),
                    prefixes: format!("{:?}", self.prefix),
                })?;
        if shape != [out_features, in_features] {
            return Err(Error::Shape {
                name: full,
                expected: vec![out_features, in_features],
                found: shape.to_vec(),
            });
        }
        if dtype != safetensors::Dtype::I8 || bytes.len() != out_features * in_features {
            return Err(Error::Dtype {
                name: full,
                dtype: format!("{dtype:?} (a tensor with a weight_scale must be I8)"),
            });
        }
        let q = vec![Checkpoint::as_i8(bytes)];
        let scales = self
            .tensor(&scale_name, &[out_features])?
            .as_slice()
            .to_vec();
        Ok(StoredWeight::Int8 {
            q,
            scales,
            out_features,
            in_features,
        })
    }

    fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<Linear> {
        let weight = self.stored_weight(name, in_features, out_features)?;
        let bias = self.tensor(&format!("{name}.bias"), &[out_features])?;
        let linear = Linear::new(name, weight, bias, self.precision)?;
        self.release(name);
        Ok(linear)
    }

    /// Several linear layers of the same input stacked into one: weights and biases
    /// concatenated along the output dimension.
    fn stacked_linear(
        &self,
        names: &[String],
        in_features: usize,
        out_features: usize,
    ) -> Result<Linear> {
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for name in names {
            weights.push(self.stored_weight(name, in_features, out_features)?);
            bias.extend_from_slice(
                self.tensor(&format!("{name}.bias"), &[out_features])?
                    .as_slice(),
            );
        }
        let n = names.len() * out_features;
        let linear = Linear::new(
            &names.join("+"),
            StoredWeight::stack(weights),
            Tensor::from_vec(vec![n], bias),
            self.precision,
        )?;
        names.iter().for_each(|name| self.release(name));
        Ok(linear)
    }

    /// Gives back the mapped pages of a linear layer's weight once it is packed.
    fn release(&self, name: &str) {
        let prefix = self.prefix;
        self.checkpoint
            .release_tensor_pages(&format!("{prefix}{name}.weight"));
        self.checkpoint
            .release_tensor_pages(&format!("{prefix}{name}.weight_scale"));
    }

    fn layer_norm(&self, name: &str, size: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.tensor(&format!("{name}.weight"), &[size])?,
            bias: self.tensor(&format!("{name}.bias"), &[size])?,
        })
    }
}

impl BertModel {
    /// Picks the BERT trunk out of a checkpoint (plain, `bert.`-prefixed or DPR) and checks
    /// every tensor's shape against `config`. `precision` applies to the encoder layers'
    /// linear layers; the pooler and projection stay f32.
    ///
    /// NaN and ±Inf in a weight are an error unless `allow_non_finite`.
    pub fn load(
        checkpoint: &Checkpoint,
        config: &BertConfig,
        precision: Precision,
        allow_non_finite: bool,
    ) -> Result<Self> {
        let prefix = TRUNK_PREFIXES
            .into_iter()
            .find(|p| checkpoint.contains(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| Error::MissingTensor {
                name: "embeddings.word_embeddings.weight".into(),
                prefixes: TRUNK_PREFIXES.map(|p| format!("{p:?}")).join(", "),
            })?;
        let w = WeightLoader {
            checkpoint,
            prefix,
            precision,
            allow_non_finite,
        };
        let w_f32 = WeightLoader {
            precision: Precision::F32,
            ..w
        };
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let embeddings = Embeddings {
            word_embeddings: w
                .tensor("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position_embeddings: w.tensor(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type_embeddings: w.tensor(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
            layer_norm: w.layer_norm("embeddings.LayerNorm", h)?,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let dense_norm = |dense: String, norm: String, k_in, n_out| -> Result<_> {
                    Ok(DenseLayerNorm {
                        dense: w.linear(&dense, k_in, n_out)?,
                        layer_norm: w.layer_norm(&norm, h)?,
                    })
                };
                Ok(BertLayer {
                    attention: BertAttention {
                        self_query_key_value: w.stacked_linear(
                            &["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}")),
                            h,
                            h,
                        )?,
                        output: dense_norm(
                            format!("{p}.attention.output.dense"),
                            format!("{p}.attention.output.LayerNorm"),
                            h,
                            h,
                        )?,
                    },
                    intermediate: w.linear(&format!("{p}.intermediate.dense"), h, f)?,
                    output: dense_norm(
                        format!("{p}.output.dense"),
                        format!("{p}.output.LayerNorm"),
                        f,
                        h,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let is_dpr = config.model_type == ModelType::Dpr || prefix.ends_with("bert_model.");
        // DPR checkpoints from 2021 still carry an unused `bert_model.pooler`: DPR never applies it.
        let pooler = if !is_dpr && checkpoint.contains(&format!("{prefix}pooler.dense.weight")) {
            Some(w_f32.linear("pooler.dense", h, h)?)
        } else {
            None
        };
        let projection = if is_dpr && config.projection_dim > 0 {
            // `ctx_encoder.bert_model.` -> `ctx_encoder.encode_proj`
            let root = WeightLoader {
                checkpoint,
                prefix: prefix.strip_suffix("bert_model.").map_or(prefix, dpr_root),
                precision: Precision::F32,
                allow_non_finite,
            };
            Some(root.linear("encode_proj", h, config.projection_dim)?)
        } else {
            None
        };
        let mut config = config.clone();
        if is_dpr {
            config.model_type = ModelType::Dpr;
        }
        Ok(BertModel {
            config,
            embeddings,
            layers,
            pooler,
            projection,
            precision,
        })
    }
}

/// Every tensor a BERT trunk of this configuration needs (no pooler, no projection), with its
/// name relative to the trunk prefix and its PyTorch shape, in `named_parameters()` order.
pub fn parameter_shapes(config: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (config.hidden_size, config.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![config.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![config.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for i in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ] {
            shapes.push((format!("{p}.{name}.weight"), vec![out, inp]));
            shapes.push((format!("{p}.{name}.bias"), vec![out]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}.{ln}.weight"), vec![h]));
            shapes.push((format!("{p}.{ln}.bias"), vec![h]));
        }
    }
    shapes
}

/// `ctx_encoder.` for `ctx_encoder.bert_model.`: the DPR encoder root holding `encode_proj`.
fn dpr_root(root: &str) -> &'static str {
    match root {
        "ctx_encoder." => "ctx_encoder.",
        "question_encoder." => "question_encoder.",
        _ => "",
    }
}
