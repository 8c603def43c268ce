//! Loading: finding the encoder trunk in a checkpoint (plain, `bert.`, `roberta.`,
//! `distilbert.`, DPR roots), checking every tensor's shape against the config, stacking
//! Q/K/V, packing or quantizing the linear layers.
//!
//! The architectures differ here only by their tensor names ([`TensorNames`]): BERT, DPR and
//! RoBERTa / XLM-R share BERT's; DistilBERT calls the same layers `q_lin`, `sa_layer_norm`,
//! `ffn.lin1`, ….

use super::linear::{Linear, Precision, StoredWeight};
use super::{
    BertAttention, BertIntermediate, BertLayer, BertModel, BertSelfAttention, DenseLayerNorm,
    Embeddings, LayerNorm,
};
use crate::checkpoint::{Checkpoint, Tensor};
use crate::config::{Activation, BertConfig, ModelType};
use crate::error::{Error, Result};
use densa_kernels as k;
use rayon::prelude::*;

/// Where one architecture keeps its tensors: the prefixes of the trunk (tried in order) and
/// each layer's names relative to `{layer}.{N}.`.
#[derive(Debug, Clone, Copy)]
pub struct TensorNames {
    pub prefixes: &'static [&'static str],
    pub layer: &'static str,
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_layer_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_layer_norm: &'static str,
}

const BERT_LAYER: TensorNames = TensorNames {
    prefixes: &[
        "",
        "bert.",
        "ctx_encoder.bert_model.",
        "question_encoder.bert_model.",
    ],
    layer: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_layer_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_layer_norm: "output.LayerNorm",
};

impl TensorNames {
    /// The names `model_type` uses.
    pub fn of(model_type: ModelType) -> TensorNames {
        match model_type {
            ModelType::Bert | ModelType::Dpr => BERT_LAYER,
            ModelType::Roberta => TensorNames {
                prefixes: &["", "roberta."],
                ..BERT_LAYER
            },
            ModelType::DistilBert => TensorNames {
                prefixes: &["", "distilbert."],
                layer: "transformer.layer",
                query: "attention.q_lin",
                key: "attention.k_lin",
                value: "attention.v_lin",
                attention_output: "attention.out_lin",
                attention_layer_norm: "sa_layer_norm",
                intermediate: "ffn.lin1",
                output: "ffn.lin2",
                output_layer_norm: "output_layer_norm",
            },
        }
    }

    /// The six linear layers of layer `i` with their `(out, in)` shapes: Q, K, V, attention
    /// output, intermediate, output.
    pub fn linear_layers(&self, i: usize, h: usize, f: usize) -> [(String, usize, usize); 6] {
        let l = |name: &str| format!("{}.{i}.{name}", self.layer);
        [
            (l(self.query), h, h),
            (l(self.key), h, h),
            (l(self.value), h, h),
            (l(self.attention_output), h, h),
            (l(self.intermediate), f, h),
            (l(self.output), h, f),
        ]
    }

    /// The prefix under which `checkpoint` stores this trunk.
    pub fn find_prefix(&self, checkpoint: &Checkpoint) -> Result<&'static str> {
        let embeddings = "embeddings.word_embeddings.weight";
        self.prefixes
            .iter()
            .copied()
            .find(|p| checkpoint.contains(&format!("{p}{embeddings}")))
            .ok_or_else(|| Error::MissingTensor {
                name: embeddings.into(),
                prefixes: self
                    .prefixes
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The name of several linear layers of the same input stacked into one, as `densa quantize`
/// stores their packed weight: the first's parent and every last component, joined by `_`
/// (`….attention.self.query`, `key`, `value` → `….attention.self.query_key_value`). One name
/// is itself.
pub(crate) fn fused_name(names: &[String]) -> String {
    let last = |n: &str| n.rsplit_once('.').map_or(n, |(_, last)| last).to_string();
    match names {
        [one] => one.clone(),
        _ => {
            let parent = names[0].rsplit_once('.').map_or("", |(parent, _)| parent);
            let joined: Vec<String> = names.iter().map(|n| last(n)).collect();
            match parent {
                "" => joined.join("_"),
                parent => format!("{parent}.{}", joined.join("_")),
            }
        }
    }
}

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
        bias: impl FnOnce() -> Result<Tensor>,
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

    fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<Linear> {
        let bias = || self.tensor(&format!("{name}.bias"), &[out_features]);
        if let Some(linear) = self.packed_linear(name, in_features, out_features, bias)? {
            return Ok(linear);
        }
        if let Some(panels) = self.stored_panels(name, in_features, out_features)? {
            return Ok(Linear::from_quantized(panels, bias()?, self.precision));
        }
        let weight = self.stored_weight(name, in_features, out_features)?;
        let bias = bias()?;
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
        let n = names.len() * out_features;
        let bias = || -> Result<Tensor> {
            let mut bias = Vec::with_capacity(n);
            for name in names {
                let one = self.tensor(&format!("{name}.bias"), &[out_features])?;
                bias.extend_from_slice(one.as_slice());
            }
            Ok(Tensor::from_vec(vec![n], bias))
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

    fn layer_norm(&self, name: &str, size: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.tensor(&format!("{name}.weight"), &[size])?,
            bias: self.tensor(&format!("{name}.bias"), &[size])?,
            eps: self.eps,
        })
    }

    /// `embeddings.*`: the tables (DistilBERT's sinusoidal positions computed when the
    /// checkpoint leaves them out) and their LayerNorm.
    fn embeddings(&self, config: &BertConfig) -> Result<Embeddings> {
        let h = config.hidden_size;
        let positions = "embeddings.position_embeddings.weight";
        let position_shape = [config.max_position_embeddings, h];
        Ok(Embeddings {
            word_embeddings: self
                .sparse_table("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position_embeddings: match config.sinusoidal_positions && !self.contains(positions) {
                true => sinusoidal_positions(config.max_position_embeddings, h),
                false => self.tensor(positions, &position_shape)?,
            },
            token_type_embeddings: match config.type_vocab_size {
                0 => None,
                types => Some(self.tensor("embeddings.token_type_embeddings.weight", &[types, h])?),
            },
            layer_norm: self.layer_norm("embeddings.LayerNorm", h)?,
            first_position: config.position_offset,
        })
    }

    /// `{layer}.{i}.*`: one encoder layer, Q/K/V stacked into one linear layer.
    fn layer(&self, names: &TensorNames, i: usize, config: &BertConfig) -> Result<BertLayer> {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let [q, k, v, attention_output, intermediate, output] = names.linear_layers(i, h, f);
        let norm = |name: &str| self.layer_norm(&format!("{}.{i}.{name}", names.layer), h);
        let activation = match config.hidden_act {
            Activation::GeluErf => k::Activation::GeluErf,
            Activation::GeluTanh => k::Activation::GeluTanh,
        };
        Ok(BertLayer {
            attention: BertAttention {
                self_attention: BertSelfAttention {
                    query_key_value: self.stacked_linear(&[q.0, k.0, v.0], h, h)?,
                    num_heads: config.num_attention_heads,
                    head_dim: config.head_dim(),
                },
                output: DenseLayerNorm {
                    dense: self.linear(&attention_output.0, h, h)?,
                    layer_norm: norm(names.attention_layer_norm)?,
                },
            },
            intermediate: BertIntermediate {
                dense: self.linear(&intermediate.0, h, f)?,
                activation,
            },
            output: DenseLayerNorm {
                dense: self.linear(&output.0, f, h)?,
                layer_norm: norm(names.output_layer_norm)?,
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
            packed_width,
        };
        let embeddings = w.embeddings(config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| w.layer(&names, i, config))
            .collect::<Result<Vec<_>>>()?;
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
                true => Some(f32_loader(self.prefix).linear("pooler.dense", h, h)?),
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
        let projection = f32_loader(root).linear("encode_proj", h, config.projection_dim)?;
        Ok((None, Some(projection)))
    }
}

/// Every tensor a trunk of this configuration needs (no pooler, no projection), with its
/// name relative to the trunk prefix and its PyTorch shape, in `named_parameters()` order.
pub fn parameter_shapes(config: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (config.hidden_size, config.intermediate_size);
    let names = TensorNames::of(config.model_type);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![config.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
        ),
    ];
    if config.type_vocab_size > 0 {
        shapes.push((
            "embeddings.token_type_embeddings.weight".into(),
            vec![config.type_vocab_size, h],
        ));
    }
    shapes.push(("embeddings.LayerNorm.weight".into(), vec![h]));
    shapes.push(("embeddings.LayerNorm.bias".into(), vec![h]));
    for i in 0..config.num_hidden_layers {
        let [q, k, v, attention_output, intermediate, output] = names.linear_layers(i, h, f);
        let norm = |name: &str| format!("{}.{i}.{name}", names.layer);
        let linear = |(name, out, inp): (String, usize, usize)| {
            [
                (format!("{name}.weight"), vec![out, inp]),
                (format!("{name}.bias"), vec![out]),
            ]
        };
        let layer_norm = |name: &str| {
            let name = norm(name);
            [
                (format!("{name}.weight"), vec![h]),
                (format!("{name}.bias"), vec![h]),
            ]
        };
        // named_parameters() order: Q, K, V, attention output, its LayerNorm, FFN, LayerNorm.
        [q, k, v, attention_output]
            .into_iter()
            .for_each(|l| shapes.extend(linear(l)));
        shapes.extend(layer_norm(names.attention_layer_norm));
        shapes.extend(linear(intermediate));
        shapes.extend(linear(output));
        shapes.extend(layer_norm(names.output_layer_norm));
    }
    shapes
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
