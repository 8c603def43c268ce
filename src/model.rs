//! The BERT encoder: weights and forward pass.
//!
//! Module names mirror Hugging Face's (`embeddings`, `encoder.layer.N.attention.self.query`,
//! `pooler.dense`), so this file can be read side by side with `modeling_bert.py`.
//!
//! The forward pass works on a *packed* batch: the tokens of all sequences concatenated,
//! `(total_tokens, hidden)`, with `seq_offsets` marking where each sequence starts. The linear
//! layers, LayerNorm and GELU see only real tokens; attention runs per sequence. So a batch
//! costs what its tokens cost, and one text's vector never depends on its batch-mates.

use crate::checkpoint::{Checkpoint, Tensor};
use crate::config::{Activation, BertConfig, ModelType};
use crate::error::{Error, Result};
use densa_kernels as k;
use rayon::prelude::*;

/// Arithmetic precision of the encoder's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// int8 for a checkpoint written by `densa quantize`, f32 otherwise.
    #[default]
    Auto,
    /// f32 weights and arithmetic: transformers' numbers.
    F32,
    /// int8 weights (symmetric, per output channel, quantized at load) and per-token int8
    /// activations in the encoder's linear layers; embeddings, LayerNorm, softmax, attention,
    /// pooler and projection stay f32.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

/// A linear layer's weight, prepared once at load for its kernel.
pub enum LinearWeight {
    /// Packed into the f32 GEMM's panels.
    F32(k::PackedWeight),
    /// Quantized and packed for the int8 GEMM.
    Int8(k::QuantizedWeight),
}

/// A linear layer's weight as the checkpoint stores it.
pub enum StoredWeight<'a> {
    /// `(out, in)` f32 (converted from F16/BF16 if need be), as one or more row blocks stacked
    /// along the output dimension (Q, K and V kept apart: packing reads them in place).
    F32(Vec<Tensor>),
    /// `(out, in)` int8 with per-output-channel scales, `W ≈ scales[:, None] · q`, as row
    /// blocks read in place from the mapped file.
    Int8 {
        q: Vec<&'a [i8]>,
        scales: Vec<f32>,
        out_features: usize,
        in_features: usize,
    },
}

impl<'a> StoredWeight<'a> {
    /// `(out_features, in_features)`
    fn shape(&self) -> (usize, usize) {
        match self {
            StoredWeight::F32(parts) => (
                parts.iter().map(|t| t.shape()[0]).sum(),
                parts[0].shape()[1],
            ),
            StoredWeight::Int8 {
                out_features,
                in_features,
                ..
            } => (*out_features, *in_features),
        }
    }

    /// Several weights of the same input stacked along the output dimension.
    fn stack(parts: Vec<StoredWeight<'a>>) -> StoredWeight<'a> {
        let in_features = parts[0].shape().1;
        let out_features = parts.iter().map(|p| p.shape().0).sum();
        if parts.iter().all(|p| matches!(p, StoredWeight::Int8 { .. })) {
            let (mut q, mut scales) = (Vec::new(), Vec::new());
            for part in parts {
                if let StoredWeight::Int8 {
                    q: pq, scales: ps, ..
                } = part
                {
                    q.extend(pq);
                    scales.extend(ps);
                }
            }
            StoredWeight::Int8 {
                q,
                scales,
                out_features,
                in_features,
            }
        } else if parts.iter().all(|p| matches!(p, StoredWeight::F32(_))) {
            let blocks = parts.into_iter().flat_map(|p| match p {
                StoredWeight::F32(blocks) => blocks,
                StoredWeight::Int8 { .. } => Vec::new(),
            });
            StoredWeight::F32(blocks.collect())
        } else {
            let values = parts.iter().flat_map(|p| p.dequantized()).collect();
            StoredWeight::F32(vec![Tensor::from_vec(
                vec![out_features, in_features],
                values,
            )])
        }
    }

    /// The f32 values, row by row (dequantized if stored as int8).
    fn dequantized(&self) -> Vec<f32> {
        match self {
            StoredWeight::F32(blocks) => {
                blocks.iter().flat_map(|t| t.as_slice().to_vec()).collect()
            }
            StoredWeight::Int8 {
                q,
                scales,
                in_features,
                ..
            } => q
                .iter()
                .flat_map(|block| block.chunks_exact((*in_features).max(1)))
                .zip(scales)
                .flat_map(|(row, &s)| row.iter().map(move |&v| v as f32 * s))
                .collect(),
        }
    }
}

/// `y = x · Wᵀ + b` with `W (out_features, in_features)`, prepared once at load for the GEMM's
/// micro-kernel (the checkpoint's copy is not used after that).
pub struct Linear {
    pub weight: LinearWeight,
    pub bias: Tensor,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    fn new(
        name: &str,
        weight: StoredWeight<'_>,
        bias: Tensor,
        precision: Precision,
    ) -> Result<Self> {
        let (out_features, in_features) = weight.shape();
        let (n, k) = (out_features, in_features);
        let weight = match (weight, precision) {
            (StoredWeight::Int8 { q, scales, .. }, Precision::Int8 | Precision::Auto) => {
                LinearWeight::Int8(k::QuantizedWeight::from_quantized_blocks(&q, &scales, n, k).ok_or_else(
                    || {
                        Error::InvalidInput(format!(
                            "tensor {name}.weight: int8 values outside ±63; densa's int8 kernels take 7-bit weights (re-run densa quantize on the original folder)"
                        ))
                    },
                )?)
            }
            (StoredWeight::F32(parts), precision) => {
                let blocks: Vec<&[f32]> = parts.iter().map(Tensor::as_slice).collect();
                if precision == Precision::Int8 {
                    let isa = k::Int8Isa::selected();
                    LinearWeight::Int8(k::QuantizedWeight::from_row_blocks(&blocks, k, isa))
                } else {
                    let isa = k::Isa::selected();
                    LinearWeight::F32(k::PackedWeight::from_row_blocks(&blocks, k, isa))
                }
            }
            // int8 in the folder, f32 asked for: the dequantized values.
            (stored, _) => LinearWeight::F32(k::PackedWeight::new(&stored.dequantized(), n, k)),
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// `out (rows, out_features) = inp (rows, in_features) · Wᵀ + b`
    pub fn forward(&self, out: &mut [f32], inp: &[f32], rows: usize, scratch: &mut k::Int8Scratch) {
        self.forward_fused(out, inp, rows, k::Activation::None, None, scratch);
    }

    /// `out = act(inp · Wᵀ + b) + residual`, each output element written once. `scratch`
    /// holds the int8 path's quantized activations (unused at f32).
    pub fn forward_fused(
        &self,
        out: &mut [f32],
        inp: &[f32],
        rows: usize,
        activation: k::Activation,
        residual: Option<&[f32]>,
        scratch: &mut k::Int8Scratch,
    ) {
        let epilogue = self.epilogue(activation, residual);
        match &self.weight {
            LinearWeight::F32(w) => k::linear_packed(out, inp, w, rows, epilogue),
            LinearWeight::Int8(w) => k::linear_int8(out, inp, w, rows, epilogue, scratch),
        }
    }

    /// [`Linear::forward_fused`] where `quantized` already holds `inp` quantized for this
    /// layer's int8 path (written by the LayerNorm before it, `add_layer_norm_for`); an f32 layer reads `inp`.
    pub fn forward_fused_prequantized(
        &self,
        out: &mut [f32],
        inp: &[f32],
        rows: usize,
        activation: k::Activation,
        quantized: &k::Int8Scratch,
    ) {
        let epilogue = self.epilogue(activation, None);
        match &self.weight {
            LinearWeight::F32(w) => k::linear_packed(out, inp, w, rows, epilogue),
            LinearWeight::Int8(w) => k::linear_int8_quantized(out, w, rows, epilogue, quantized),
        }
    }

    /// The int8 path of this layer's kernels (`None` at f32).
    pub fn int8_isa(&self) -> Option<k::Int8Isa> {
        match &self.weight {
            LinearWeight::F32(_) => None,
            LinearWeight::Int8(w) => Some(w.isa()),
        }
    }

    fn epilogue<'a>(
        &'a self,
        activation: k::Activation,
        residual: Option<&'a [f32]>,
    ) -> k::Epilogue<'a> {
        k::Epilogue {
            bias: Some(self.bias.as_slice()),
            activation,
            residual,
        }
    }
}

/// `x = LayerNorm(x + residual)` over `(rows, hidden)`. When the layer that reads the result
/// runs int8 (`next` is its path), the rows are also quantized into `quantized` in the same
/// pass, while each row is still in cache.
fn add_layer_norm_for(
    next: Option<k::Int8Isa>,
    ln: &LayerNorm,
    x: &mut [f32],
    residual: &[f32],
    rows: usize,
    eps: f32,
    quantized: &mut k::Int8Scratch,
) {
    let (gamma, beta) = (ln.weight.as_slice(), ln.bias.as_slice());
    let hidden = gamma.len();
    match next {
        None => k::add_layer_norm(x, residual, gamma, beta, rows, hidden, eps),
        Some(_) => {
            k::add_layer_norm_quantize(x, residual, gamma, beta, rows, hidden, eps, quantized)
        }
    }
}

/// LayerNorm's affine parameters (`gamma`, `beta`).
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// `embeddings.*`
pub struct Embeddings {
    pub word_embeddings: Tensor,       // (vocab, H)
    pub position_embeddings: Tensor,   // (max_positions, H)
    pub token_type_embeddings: Tensor, // (type_vocab, H)
    pub layer_norm: LayerNorm,
}

/// `encoder.layer.N.*`
pub struct EncoderLayer {
    /// attention.self.{query, key, value}, stacked: `W (3H, H)` = [Wq; Wk; Wv], one GEMM.
    pub query_key_value: Linear,
    pub attention_output: Linear,        // attention.output.dense
    pub attention_layer_norm: LayerNorm, // attention.output.LayerNorm
    pub intermediate: Linear,            // intermediate.dense
    pub output: Linear,                  // output.dense
    pub output_layer_norm: LayerNorm,    // output.LayerNorm
}

/// A BERT encoder with its optional heads.
pub struct BertModel {
    pub config: BertConfig,
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
    /// `pooler.dense` (plain BERT only; DPR's leftover pooler is ignored).
    pub pooler: Option<Linear>,
    /// DPR's `encode_proj`, present when `projection_dim > 0`.
    pub projection: Option<Linear>,
    /// Precision of the encoder layers' linear layers.
    pub precision: Precision,
}

/// Token ids of several sequences, concatenated.
#[derive(Debug, Clone, Default)]
pub struct PackedBatch {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// Sequence `s` is tokens `seq_offsets[s]..seq_offsets[s + 1]`; starts with 0.
    pub seq_offsets: Vec<usize>,
}

impl PackedBatch {
    pub fn new() -> Self {
        PackedBatch {
            seq_offsets: vec![0],
            ..Default::default()
        }
    }

    pub fn push(&mut self, ids: &[u32], type_ids: &[u32]) {
        self.input_ids.extend_from_slice(ids);
        self.token_type_ids.extend_from_slice(type_ids);
        self.seq_offsets.push(self.input_ids.len());
    }

    pub fn total_tokens(&self) -> usize {
        self.input_ids.len()
    }

    pub fn num_sequences(&self) -> usize {
        self.seq_offsets.len().saturating_sub(1)
    }

    /// The token range of sequence `s`.
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.seq_offsets[s]..self.seq_offsets[s + 1]
    }
}

/// The activation buffers of one forward pass, reused from call to call: they only grow.
#[derive(Default)]
pub struct Workspace {
    hidden: Vec<f32>,       // (T, H)
    qkv: Vec<f32>,          // (T, 3H)
    context: Vec<f32>,      // (T, H)
    sublayer_out: Vec<f32>, // (T, H)
    intermediate: Vec<f32>, // (T, F)
    first_rows: Vec<f32>,   // (S, H): the last layer's rows when only first tokens are needed
    int8: k::Int8Scratch,   // quantized activations (int8 precision only)
}

impl Workspace {
    /// Sizes every buffer for `t` tokens (never shrinking capacity).
    fn resize(&mut self, t: usize, s: usize, h: usize, f: usize) {
        for (buffer, len) in [
            (&mut self.first_rows, s * h),
            (&mut self.hidden, t * h),
            (&mut self.qkv, 3 * t * h),
            (&mut self.context, t * h),
            (&mut self.sublayer_out, t * h),
            (&mut self.intermediate, t * f),
        ] {
            buffer.resize(len, 0.0);
        }
    }
}

/// Which rows of the last hidden state a forward pass must compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRows {
    /// Every token's (mean pooling, hidden states).
    All,
    /// Each sequence's first token only (`[CLS]` pooling, the pooler, DPR): the last layer runs
    /// its attention output, feed-forward and LayerNorms on those rows alone (keys and values
    /// still over every token). The other rows of the returned state are then not the last
    /// layer's. Bit for bit the same first rows as [`OutputRows::All`].
    FirstTokens,
}

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
                Ok(EncoderLayer {
                    query_key_value: w.stacked_linear(
                        &["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}")),
                        h,
                        h,
                    )?,
                    attention_output: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    attention_layer_norm: w
                        .layer_norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                    intermediate: w.linear(&format!("{p}.intermediate.dense"), h, f)?,
                    output: w.linear(&format!("{p}.output.dense"), f, h)?,
                    output_layer_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), h)?,
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

    /// Runs the encoder over a packed batch and returns the last hidden state
    /// `(total_tokens, hidden)`, which lives in `workspace`. When `all_hidden_states` is given,
    /// it receives the embedding output and every layer's output (as `transformers`'
    /// `output_hidden_states=True`; every row is then computed). `rows` says which rows of the
    /// last layer are needed. Once `workspace` has seen a batch this large, the pass allocates
    /// nothing.
    pub fn forward<'w>(
        &self,
        batch: &PackedBatch,
        workspace: &'w mut Workspace,
        mut all_hidden_states: Option<&mut Vec<Vec<f32>>>,
        rows: OutputRows,
    ) -> Result<&'w [f32]> {
        let cfg = &self.config;
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let t = batch.total_tokens(); // T: real tokens of all sequences together
        let s = batch.num_sequences(); // S: sequences
        self.check_batch(batch)?;
        workspace.resize(t, s, h, f);
        let first_tokens_only = rows == OutputRows::FirstTokens && all_hidden_states.is_none();
        let Workspace {
            hidden,
            qkv,
            context,
            sublayer_out,
            intermediate,
            first_rows,
            int8,
        } = workspace;

        // hidden: (T, H) = LayerNorm(word + position + token_type embeddings)
        self.embeddings_forward(hidden, batch);
        if let Some(states) = all_hidden_states.as_deref_mut() {
            states.push(hidden.clone());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            // Self-attention: qkv (T, 3H) = hidden · [Wq; Wk; Wv]ᵀ + b; attend within each sequence.
            // From layer 1 on, the int8 path's input was quantized by the LayerNorm before.
            if i == 0 {
                layer.query_key_value.forward(qkv, hidden, t, int8);
            } else {
                let qkv_layer = &layer.query_key_value;
                qkv_layer.forward_fused_prequantized(qkv, hidden, t, k::Activation::None, int8);
            }
            if first_tokens_only && i + 1 == self.layers.len() {
                // Only [CLS] is pooled: the rest of the last layer runs on S rows.
                k::attention_forward_first_query(
                    context,
                    qkv,
                    &batch.seq_offsets,
                    cfg.num_attention_heads,
                    cfg.head_dim(),
                );
                self.last_layer_first_tokens(
                    layer,
                    batch,
                    hidden,
                    context,
                    sublayer_out,
                    intermediate,
                    first_rows,
                    int8,
                );
                break;
            }
            k::attention_forward(
                context,
                qkv,
                &batch.seq_offsets,
                cfg.num_attention_heads,
                cfg.head_dim(),
            );
            let next = self.layers.get(i + 1);
            let next = next.and_then(|l| l.query_key_value.int8_isa());
            self.after_attention(
                layer,
                next,
                hidden,
                context,
                sublayer_out,
                intermediate,
                t,
                int8,
            );
            std::mem::swap(hidden, context);
            if let Some(states) = all_hidden_states.as_deref_mut() {
                states.push(hidden.clone());
            }
        }
        Ok(&workspace.hidden[..t * h])
    }

    /// A layer after its attention, on `rows` rows: `hidden (rows, H)` is the layer's input,
    /// `context (rows, H)` its attention context, which is replaced by the layer's output:
    /// ```text
    /// normed  = LayerNorm(context · Woᵀ + b + hidden)      attention.output (+ LayerNorm)
    /// context = LayerNorm(GELU(normed · Wiᵀ + b) · Wᵀ + b + normed)   intermediate, output
    /// ```
    /// `next` is the int8 path of the layer that reads the result (its input is quantized by
    /// the last LayerNorm), if any.
    #[allow(clippy::too_many_arguments)]
    fn after_attention(
        &self,
        layer: &EncoderLayer,
        next: Option<k::Int8Isa>,
        hidden: &[f32],
        context: &mut [f32],
        normed: &mut [f32],
        intermediate: &mut [f32],
        rows: usize,
        int8: &mut k::Int8Scratch,
    ) {
        let cfg = &self.config;
        let eps = cfg.layer_norm_eps;
        let activation = match cfg.hidden_act {
            Activation::GeluErf => k::Activation::GeluErf,
            Activation::GeluTanh => k::Activation::GeluTanh,
        };
        // attention.output: dense + bias, then LayerNorm(· + residual) in one pass
        let ffn_isa = layer.intermediate.int8_isa();
        layer.attention_output.forward(normed, context, rows, int8);
        add_layer_norm_for(
            ffn_isa,
            &layer.attention_layer_norm,
            normed,
            hidden,
            rows,
            eps,
            int8,
        );
        // Feed-forward: intermediate (rows, F) = GELU(normed · Wiᵀ + b) (fused epilogue),
        // output.dense + bias, then LayerNorm(· + residual) in one pass
        let ffn_in = &layer.intermediate;
        ffn_in.forward_fused_prequantized(intermediate, normed, rows, activation, int8);
        layer.output.forward(context, intermediate, rows, int8);
        add_layer_norm_for(
            next,
            &layer.output_layer_norm,
            context,
            normed,
            rows,
            eps,
            int8,
        );
    }

    /// The last layer after attention for each sequence's first token only: `context (S, H)`
    /// holds their attention context; their rows of `hidden (T, H)` are replaced by the
    /// layer's output.
    #[allow(clippy::too_many_arguments)]
    fn last_layer_first_tokens(
        &self,
        layer: &EncoderLayer,
        batch: &PackedBatch,
        hidden: &mut [f32],
        context: &mut [f32],
        normed: &mut [f32],
        intermediate: &mut [f32],
        first_rows: &mut [f32],
        int8: &mut k::Int8Scratch,
    ) {
        let (h, s) = (self.config.hidden_size, batch.num_sequences());
        // first_rows (S, H): the layer's input at each sequence's first token
        for (seq, row) in first_rows[..s * h].chunks_exact_mut(h).enumerate() {
            let t0 = batch.seq_offsets[seq];
            row.copy_from_slice(&hidden[t0 * h..(t0 + 1) * h]);
        }
        let first_rows = &first_rows[..s * h];
        self.after_attention(
            layer,
            None,
            first_rows,
            context,
            normed,
            intermediate,
            s,
            int8,
        );
        for (seq, row) in context[..s * h].chunks_exact(h).enumerate() {
            let t0 = batch.seq_offsets[seq];
            hidden[t0 * h..(t0 + 1) * h].copy_from_slice(row);
        }
    }

    /// Rejects ids the embedding tables do not have, and sequences longer than the positions.
    fn check_batch(&self, batch: &PackedBatch) -> Result<()> {
        let cfg = &self.config;
        // The packing itself: offsets from 0 to the token count, every sequence non-empty.
        let offsets = &batch.seq_offsets;
        if offsets.first() != Some(&0)
            || offsets.last() != Some(&batch.input_ids.len())
            || offsets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Error::InvalidInput(format!(
                "a packed batch's seq_offsets must rise strictly from 0 to its {} tokens (every sequence holds at least one token); found {} offsets",
                batch.input_ids.len(),
                offsets.len()
            )));
        }
        if let Some(&id) = batch
            .input_ids
            .iter()
            .find(|&&id| id as usize >= cfg.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {id} is beyond the embedding table ({} rows)",
                cfg.vocab_size
            )));
        }
        if let Some(&tt) = batch
            .token_type_ids
            .iter()
            .find(|&&tt| tt as usize >= cfg.type_vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token type {tt} is beyond type_vocab_size {}",
                cfg.type_vocab_size
            )));
        }
        if let Some(len) = (0..batch.num_sequences())
            .map(|s| batch.range(s).len())
            .find(|&l| l > cfg.max_position_embeddings)
        {
            return Err(Error::InvalidInput(format!(
                "a sequence of {len} tokens exceeds max_position_embeddings {}",
                cfg.max_position_embeddings
            )));
        }
        if batch.token_type_ids.len() != batch.input_ids.len() {
            return Err(Error::InvalidInput(
                "token_type_ids and input_ids differ in length".into(),
            ));
        }
        Ok(())
    }

    /// `embeddings`: word + position + token type, then LayerNorm. `out`: (T, H).
    fn embeddings_forward(&self, out: &mut [f32], batch: &PackedBatch) {
        let h = self.config.hidden_size;
        let emb = &self.embeddings;
        let (words, positions, types) = (
            emb.word_embeddings.as_slice(),
            emb.position_embeddings.as_slice(),
            emb.token_type_embeddings.as_slice(),
        );
        for s in 0..batch.num_sequences() {
            let range = batch.range(s);
            // Positions restart at 0 for every sequence (absolute position embeddings).
            for (position, token) in range.clone().enumerate() {
                let (id, tt) = (
                    batch.input_ids[token] as usize,
                    batch.token_type_ids[token] as usize,
                );
                let row = &mut out[token * h..(token + 1) * h];
                let (w, p, ty) = (
                    &words[id * h..][..h],
                    &positions[position * h..][..h],
                    &types[tt * h..][..h],
                );
                for j in 0..h {
                    row[j] = w[j] + ty[j] + p[j];
                }
            }
        }
        let ln = &emb.layer_norm;
        k::layer_norm(
            out,
            ln.weight.as_slice(),
            ln.bias.as_slice(),
            batch.total_tokens(),
            h,
            self.config.layer_norm_eps,
        );
    }

    /// Number of parameters the model uses.
    pub fn parameter_count(&self) -> usize {
        let lin = |l: &Linear| l.in_features * l.out_features + l.out_features;
        let e = &self.embeddings;
        let mut n = e.word_embeddings.as_slice().len()
            + e.position_embeddings.as_slice().len()
            + e.token_type_embeddings.as_slice().len()
            + 2 * self.config.hidden_size;
        for l in &self.layers {
            n += lin(&l.query_key_value)
                + lin(&l.attention_output)
                + lin(&l.intermediate)
                + lin(&l.output);
            n += 4 * self.config.hidden_size;
        }
        n + self.pooler.as_ref().map_or(0, lin) + self.projection.as_ref().map_or(0, lin)
    }

    /// FLOPs of one forward pass over sequences of the given lengths (multiply and add
    /// counted apart): the matrix products, which are all but a fraction of a percent.
    pub fn flops(&self, seq_lens: &[usize]) -> f64 {
        let (h, f) = (
            self.config.hidden_size as f64,
            self.config.intermediate_size as f64,
        );
        let tokens: f64 = seq_lens.iter().map(|&l| l as f64).sum();
        let attention: f64 = seq_lens
            .iter()
            .map(|&l| 4.0 * (l as f64) * (l as f64) * h)
            .sum();
        let per_layer = 2.0 * tokens * (4.0 * h * h + 2.0 * h * f) + attention;
        per_layer * self.layers.len() as f64
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
