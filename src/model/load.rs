//! Loading: finding the encoder trunk in a checkpoint (plain, `bert.`, `roberta.`,
//! `distilbert.`, DPR roots), checking every tensor's shape against the config, stacking
//! Q/K/V, packing or quantizing the linear layers.
//!
//! The architectures differ here only by their tensor names ([`TensorNames`]): BERT, DPR and
//! RoBERTa / XLM-R share BERT's; DistilBERT calls the same layers `q_lin`, `sa_layer_norm`,
//! `ffn.lin1`, ….

use super::linear::{Linear, Precision, StoredWeight};
use super::names::{fused_name, TensorNames};
use super::{
    BertAttention, BertIntermediate, BertLayer, BertModel, BertSelfAttention, DenseLayerNorm,
    Embeddings, LayerNorm,
};
use crate::checkpoint::{Checkpoint, Tensor};
use crate::config::{Activation, BertConfig, ModelType};
use crate::error::{Error, Result};
use densa_kernels as k;
use rayon::prelude::*;

/// Finds the tensors of one model inside a checkpoint, whatever prefix it uses.
struct WeightLoader<'a> {
    checkpoint: &'a Checkpoint,
    prefix: &'static str,
    /// Precision of the linear layers this loader builds.
    precision: Precision,
    /// Accept NaN and ±Inf in weights (otherwise they are an error naming the tensor).
    allow_non_finite: bool,
    /// `layer_norm_eps`, for every LayerNorm this loader builds.
    eps: f32,
    /// Whether the LayerNorms have biases (`norm_bias`).
    norm_bias: bool,
    /// The panel width of a `densa pack` folder's f32 weights (`None`: not packed).
    packed_width: Option<usize>,
}

impl WeightLoader<'_> {
    fn contains(&self, name: &str) -> bool {
        self.checkpoint
            .contains(&format!("{}{}", self.prefix, name))
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.checked_tensor(name, shape, false)
    }

    /// A table of which a pass reads a few rows (a vocabulary's embeddings): checked like
    /// every tensor, its pages given back as they are checked (see `check_finite`).
    fn sparse_table(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.checked_tensor(name, shape, true)
    }

    fn checked_tensor(&self, name: &str, shape: &[usize], sparse: bool) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        if !self.checkpoint.contains(&full) {
            return Err(Error::MissingTensor {
                name: full,
                prefixes: format!("{:?}", self.prefix),
            });
        }
        let tensor = self.checkpoint.tensor(&full, shape)?;
        self.check_finite(&full, tensor.as_slice(), sparse)?;
        Ok(tensor)
    }

    /// NaN or ±Inf in a weight poisons every vector it touches: refuse it, naming the tensor,
    /// unless the caller allowed it.
    fn check_finite(&self, name: &str, values: &[f32], sparse: bool) -> Result<()> {
        if self.allow_non_finite {
            return Ok(());
        }
        // In parallel (on the encoder's threads): this pass is the first to touch each page. A
        // table read sparsely afterwards (a vocabulary's embeddings, 95 MB for BETO's at f32,
        // a few rows per text) gives its pages back as they are checked, so that they never
        // count against the process all at once.
        let count: usize = values
            .par_chunks(1 << 16)
            .map(|chunk| {
                let bad = chunk.iter().filter(|v| !v.is_finite()).count();
                if sparse {
                    self.checkpoint.release_pages_within(chunk);
                }
                bad
            })
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

    /// `{name}.weight_panels` (I8 in the int8 kernels' panel layout, as `densa quantize`
    /// writes it; `name` is [`fused_name`] of the layers stacked into it) with
    /// `{name}.weight_scale`: the weight checked and used in place from the mapped file.
    /// `None` if the checkpoint stores the weight otherwise.
    fn stored_panels(
        &self,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Option<k::QuantizedWeight>> {
        let full = format!("{}{name}.weight_panels", self.prefix);
        let Some((dtype, shape, panels)) = self.checkpoint.shared(&full) else {
            return Ok(None);
        };
        let expected = k::int8::packed_shape(out_features, in_features);
        if shape != expected || dtype != safetensors::Dtype::I8 {
            return Err(Error::InvalidInput(format!(
                "tensor {full}: {dtype:?} {shape:?}, the panels of a ({out_features}, {in_features}) layer are I8 {expected:?} (re-run densa quantize on the original folder)"
            )));
        }
        let scales = self
            .tensor(&format!("{name}.weight_scale"), &[out_features])?
            .as_slice()
            .to_vec();
        k::QuantizedWeight::from_panels(panels, scales, out_features, in_features)
            .map(Some)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "tensor {full}: {e}: not the panels densa quantize writes (re-run densa quantize on the original folder)"
                ))
            })
    }

    /// `{name}.weight_packed` (f32 in the GEMM's panels, as `densa pack` writes it; `name` is
    /// [`fused_name`] of the layers stacked into it): used in place from the mapped file when
    /// its panel width is this CPU's kernel's, else unpacked and packed (or quantized) again.
    /// `None` if the checkpoint stores the weight otherwise.
    fn packed_linear(
        &self,
        name: &str,
        in_features: usize,
        out_features: usize,
        bias: impl FnOnce() -> Result<Option<Tensor>>,
    ) -> Result<Option<Linear>> {
        let Some(nr) = self.packed_width else {
            return Ok(None);
        };
        let full = format!("{}{name}.weight_packed", self.prefix);
        let Some((dtype, shape, panels)) = self.checkpoint.shared(&full) else {
            return Ok(None);
        };
        let expected = k::PackedWeight::packed_shape(out_features, in_features, nr);
        if shape != expected || dtype != safetensors::Dtype::F32 {
            return Err(Error::InvalidInput(format!(
                "tensor {full}: {dtype:?} {shape:?}, the panels of a ({out_features}, {in_features}) layer {nr} wide are F32 {expected:?} (re-run densa pack on the original folder)"
            )));
        }
        let damaged = |e: k::PackedError| {
            Error::InvalidInput(format!(
                "tensor {full}: {e}: not the panels densa pack writes (re-run densa pack on the original folder)"
            ))
        };
        let isa = k::Isa::selected();
        match k::PackedWeight::from_panels(panels.clone(), out_features, in_features, nr, isa) {
            Ok(weight) => Ok(Some(Linear::from_packed(weight, bias()?, self.precision))),
            // Packed for another CPU's kernel: the same values, packed again for this one.
            Err(k::PackedError::Width { .. }) => {
                let values = panels
                    .as_f32()
                    .ok_or_else(|| damaged(k::PackedError::Alignment))?;
                k::gemm::check_panels(values, out_features, in_features, nr).map_err(damaged)?;
                let rows = k::gemm::unpack_rows(values, out_features, in_features, nr);
                let weight = StoredWeight::F32(vec![Tensor::from_vec(
                    vec![out_features, in_features],
                    rows,
                )]);
                Linear::new(name, weight, bias()?, self.precision).map(Some)
            }
            Err(e) => Err(damaged(e)),
        }
    }

    /// `{name}.weight` `(out_features, in_features)`, and `{name}.bias` if `bias`.
    fn linear(
        &self,
        name: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        self.stacked_linear(&[name.to_string()], in_features, out_features, bias)
    }

    /// Several linear layers of the same input stacked into one: weights and biases (if
    /// `bias`) concatenated along the output dimension.
    fn stacked_linear(
        &self,
        names: &[String],
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        let n = names.len() * out_features;
        let bias = || -> Result<Option<Tensor>> {
            if !bias {
                return Ok(None);
            }
            if let [name] = names {
                return self.tensor(&format!("{name}.bias"), &[n]).map(Some);
            }
            let mut bias = Vec::with_capacity(n);
            for name in names {
                let one = self.tensor(&format!("{name}.bias"), &[out_features])?;
                bias.extend_from_slice(one.as_slice());
            }
            Ok(Some(Tensor::from_vec(vec![n], bias)))
        };
        if let Some(linear) = self.packed_linear(&fused_name(names), in_features, n, bias)? {
            return Ok(linear);
        }
        if let Some(panels) = self.stored_panels(&fused_name(names), in_features, n)? {
            return Ok(Linear::from_quantized(panels, bias()?, self.precision));
        }
        let weights = names
            .iter()
            .map(|name| self.stored_weight(name, in_features, out_features))
            .collect::<Result<Vec<_>>>()?;
        let bias = bias()?;
        let linear = Linear::new(
            &names.join("+"),
            StoredWeight::stack(&self.full_names(names), weights)?,
            bias,
            self.precision,
        )?;
        names.iter().for_each(|name| self.release(name));
        Ok(linear)
    }

    /// `names` under this loader's prefix, as the checkpoint spells them.
    fn full_names(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .map(|n| format!("{}{n}", self.prefix))
            .collect()
    }

    /// Gives back the mapped pages of a linear layer's weight once it is packed.
    fn release(&self, name: &str) {
        let prefix = self.prefix;
        self.checkpoint
            .release_tensor_pages(&format!("{prefix}{name}.weight"));
        self.checkpoint
            .release_tensor_pages(&format!("{prefix}{name}.weight_scale"));
    }

    /// `{name}.weight`, and `{name}.bias` where the model's LayerNorms have biases.
    fn layer_norm(&self, name: &str, size: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.tensor(&format!("{name}.weight"), &[size])?,
            bias: match self.norm_bias {
                true => Some(self.tensor(&format!("{name}.bias"), &[size])?),
                false => None,
            },
            eps: self.eps,
        })
    }

    /// `embeddings.*`: the tables (DistilBERT's sinusoidal positions computed when the
    /// checkpoint leaves them out; none with rotary positions) and their LayerNorm.
    fn embeddings(&self, names: &TensorNames, config: &BertConfig) -> Result<Embeddings> {
        let h = config.hidden_size;
        let positions = "embeddings.position_embeddings.weight";
        let position_shape = [config.max_position_embeddings, h];
        let words = format!("{}.weight", names.word_embeddings);
        Ok(Embeddings {
            word_embeddings: self.sparse_table(&words, &[config.vocab_size, h])?,
            position_embeddings: match (config.rotary, config.sinusoidal_positions) {
                (Some(_), _) => None,
                (None, true) if !self.contains(positions) => {
                    Some(sinusoidal_positions(config.max_position_embeddings, h))
                }
                (None, _) => Some(self.tensor(positions, &position_shape)?),
            },
            token_type_embeddings: match config.type_vocab_size {
                0 => None,
                types => Some(self.tensor("embeddings.token_type_embeddings.weight", &[types, h])?),
            },
            layer_norm: self.layer_norm(names.embeddings_layer_norm, h)?,
            first_position: config.position_offset,
        })
    }

    /// `{layer}.{i}.*`: one encoder layer, Q/K/V stacked into one linear layer.
    fn layer(&self, names: &TensorNames, i: usize, config: &BertConfig) -> Result<BertLayer> {
        let h = config.hidden_size;
        let [qkv, attention_output, intermediate, output] = names.linear_groups(i, config);
        let [attention_norm, output_norm] = names.layer_norms(i, config.num_hidden_layers);
        let qkv_names: Vec<String> = qkv.iter().map(|(name, ..)| name.clone()).collect();
        let linear =
            |(name, out, inp): &(String, usize, usize), bias| self.linear(name, *inp, *out, bias);
        let activation = match config.hidden_act {
            Activation::GeluErf => k::Activation::GeluErf,
            Activation::GeluTanh => k::Activation::GeluTanh,
        };
        let (attention_bias, mlp_bias) = (config.attention_bias, config.mlp_bias);
        Ok(BertLayer {
            attention: BertAttention {
                self_attention: BertSelfAttention {
                    query_key_value: self.stacked_linear(
                        &qkv_names,
                        h,
                        qkv[0].1,
                        attention_bias,
                    )?,
                    num_heads: config.num_attention_heads,
                    head_dim: config.head_dim(),
                    rotary_theta: config.rotary_theta(i),
                    window: config.attention_window(i),
                },
                output: DenseLayerNorm {
                    dense: linear(&attention_output[0], attention_bias)?,
                    layer_norm: self.layer_norm(&attention_norm, h)?,
                },
            },
            intermediate: BertIntermediate {
                dense: linear(&intermediate[0], mlp_bias)?,
                activation,
                gated: config.gated_mlp,
            },
            output: DenseLayerNorm {
                dense: linear(&output[0], mlp_bias)?,
                layer_norm: self.layer_norm(&output_norm, h)?,
            },
        })
    }
}

impl BertModel {
    /// Picks the BERT trunk out of a checkpoint (plain, `bert.`-prefixed or DPR) and checks
    /// every tensor's shape against `config`. `precision` applies to the encoder layers'
    /// linear layers; the pooler and projection stay f32.
    ///
    /// NaN and ±Inf in a weight are an error unless `allow_non_finite`. `packed_width` is the
    /// panel width of a `densa pack` checkpoint's f32 weights (`crate::pack::packed_width`).
    pub fn load(
        checkpoint: &Checkpoint,
        config: &BertConfig,
        precision: Precision,
        allow_non_finite: bool,
        packed_width: Option<usize>,
    ) -> Result<Self> {
        let names = TensorNames::of(config.model_type);
        let prefix = names.find_prefix(checkpoint)?;
        let w = WeightLoader {
            checkpoint,
            prefix,
            precision,
            allow_non_finite,
            eps: config.layer_norm_eps,
            norm_bias: config.norm_bias,
            packed_width,
        };
        // The embeddings and every layer at once: each tensor's check (or packing) is a short
        // parallel region, and one region per tensor in turn leaves the other threads asleep
        // between them. Measured on 2 threads (fresh processes, 25 interleaved starts): the
        // published BERT-base folder's first embedding in 164–181 ms instead of 190–202 ms.
        let (embeddings, layers) = rayon::join(
            || w.embeddings(&names, config),
            || {
                (0..config.num_hidden_layers)
                    .into_par_iter()
                    .map(|i| w.layer(&names, i, config))
                    .collect::<Result<Vec<_>>>()
            },
        );
        let (embeddings, layers) = (embeddings?, layers?);
        let is_dpr = config.model_type == ModelType::Dpr || prefix.ends_with("bert_model.");
        let (pooler, projection) = w.pooler_and_projection(config, is_dpr)?;
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

impl WeightLoader<'_> {
    /// BERT's `pooler.dense`, or DPR's `encode_proj` (both f32 at every precision). DPR
    /// checkpoints from 2021 still carry an unused `bert_model.pooler`: DPR never applies it.
    fn pooler_and_projection(
        &self,
        config: &BertConfig,
        is_dpr: bool,
    ) -> Result<(Option<Linear>, Option<Linear>)> {
        let h = config.hidden_size;
        let f32_loader = |prefix| WeightLoader {
            prefix,
            precision: Precision::F32,
            ..*self
        };
        if !is_dpr {
            let pooler = match self.contains("pooler.dense.weight") {
                true => Some(f32_loader(self.prefix).linear("pooler.dense", h, h, true)?),
                false => None,
            };
            return Ok((pooler, None));
        }
        if config.projection_dim == 0 {
            return Ok((None, None));
        }
        // `ctx_encoder.bert_model.` -> `ctx_encoder.encode_proj`
        let root = self
            .prefix
            .strip_suffix("bert_model.")
            .map_or(self.prefix, dpr_root);
        let projection = f32_loader(root).linear("encode_proj", h, config.projection_dim, true)?;
        Ok((None, Some(projection)))
    }
}

/// DistilBERT's fixed position embeddings `(positions, dim)`: `sin(pos / 10000^(2j/dim))` in
/// the even columns and `cos` of the same angle in the odd ones (`create_sinusoidal_embeddings`).
fn sinusoidal_positions(positions: usize, dim: usize) -> Tensor {
    let mut table = vec![0.0f32; positions * dim];
    for pos in 0..positions {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
            table[pos * dim + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_vec(vec![positions, dim], table)
}

/// `ctx_encoder.` for `ctx_encoder.bert_model.`: the DPR encoder root holding `encode_proj`.
fn dpr_root(root: &str) -> &'static str {
    match root {
        "ctx_encoder." => "ctx_encoder.",
        "question_encoder." => "question_encoder.",
        _ => "",
    }
}
