//! The BERT encoder: weights and forward pass.
//!
//! The types mirror Hugging Face's module tree and tensor names (`BertModel { embeddings,
//! encoder.layer[N] { attention { self, output }, intermediate, output }, pooler }`), each with
//! its `forward` right after it, so this file reads side by side with
//! [`modeling_bert.py`](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py) (transformers 4.46; each `forward` links the lines it mirrors)
//! from the embeddings to `BertModel::forward` at the end. RoBERTa / XLM-R
//! ([`modeling_xlm_roberta.py`](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/xlm_roberta/modeling_xlm_roberta.py)) and DistilBERT ([`modeling_distilbert.py`](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py)) are the
//! same steps with other data (see docs/DESIGN.md); where their lines differ, they are linked
//! too. Loading is in `load.rs`, the linear layer in `linear.rs`, the packed batch and the
//! buffers in `batch.rs`.
//!
//! The forward pass works on a *packed* batch: the tokens of all sequences concatenated,
//! `(T, H)` for `T` tokens, with `seq_offsets` marking where each sequence starts. The linear
//! layers, LayerNorm and GELU see only real tokens; attention runs per sequence. So a batch
//! costs what its tokens cost, and one text's vector never depends on its batch-mates.

mod batch;
mod dense;
mod linear;
mod load;
mod names;

pub use batch::{PackedBatch, Rows, Workspace, DEFAULT_MAX_BATCH_TOKENS};
pub use dense::{Dense, DenseActivation, HeadNorm};
pub use linear::{Linear, LinearInput, LinearWeight, Precision};
pub(crate) use names::fused_name;
pub use names::{parameter_shapes, LinearGroups, TensorNames};

use crate::checkpoint::Tensor;
use crate::config::{BertConfig, NormPlacement};
use crate::error::Result;
use batch::row_count;
use densa_kernels as k;

/// LayerNorm's affine parameters (`weight` = gamma, `bias` = beta) and its epsilon.
pub struct LayerNorm {
    pub weight: Tensor,       // (H)
    pub bias: Option<Tensor>, // (H); ModernBERT's have none (`norm_bias = false`)
    pub eps: f32,
}

/// Where a LayerNorm's output goes next: the linear layer that reads it (`None`: nothing
/// does) and the int8 scratch. When `next` is int8, the LayerNorm quantizes each row into the
/// scratch as it writes it (the row still in cache), and `next` reads it there
/// ([`LinearInput::Quantized`]); an int8 layer fed by anything else quantizes its input into
/// the same scratch itself ([`LinearInput::Rows`]).
pub struct Handoff<'a> {
    pub next: Option<&'a Linear>,
    pub scratch: &'a mut k::Int8Scratch,
}

impl LayerNorm {
    /// `x (row_count, H) = LayerNorm(x + residual)` (no residual for the embeddings'), handed
    /// off to `handoff.next`.
    pub fn forward(
        &self,
        x: &mut [f32],
        residual: Option<&[f32]>,
        row_count: usize,
        handoff: Handoff<'_>,
    ) {
        let (gamma, beta, quantized) = self.affine_and_scratch(handoff);
        let isa = k::Isa::selected();
        k::add_layer_norm(
            isa,
            x,
            residual,
            gamma,
            beta,
            row_count,
            gamma.len(),
            self.eps,
            quantized,
        );
    }

    /// Gamma, beta, and the int8 scratch to quantize into when the layer it hands off to is
    /// int8.
    fn affine_and_scratch<'a>(
        &'a self,
        handoff: Handoff<'a>,
    ) -> (&'a [f32], Option<&'a [f32]>, Option<&'a mut k::Int8Scratch>) {
        let quantized = handoff
            .next
            .is_some_and(Linear::is_int8)
            .then_some(handoff.scratch);
        let beta = self.bias.as_ref().map(Tensor::as_slice);
        (self.weight.as_slice(), beta, quantized)
    }

    /// Pre-norm: `stream (row_count, H) += x`, then `x = LayerNorm(stream)`, handed off to
    /// `handoff.next` (the stream itself stays un-normalised).
    pub fn forward_after_add(
        &self,
        stream: &mut [f32],
        x: &mut [f32],
        row_count: usize,
        handoff: Handoff<'_>,
    ) {
        let (gamma, beta, quantized) = self.affine_and_scratch(handoff);
        let isa = k::Isa::selected();
        let h = gamma.len();
        k::add_then_layer_norm(
            isa, stream, x, gamma, beta, row_count, h, self.eps, quantized,
        );
    }
}

/// `embeddings.*` (`BertEmbeddings`): word + position (+ token type), then LayerNorm.
/// ModernBERT's (`ModernBertEmbeddings`: `tok_embeddings`, `norm`) has no position table (its
/// positions rotate queries and keys in each layer instead) and no token types.
pub struct Embeddings {
    pub word_embeddings: Tensor,               // (vocab, H)
    pub position_embeddings: Option<Tensor>,   // (max_positions, H); none with rotary positions
    pub token_type_embeddings: Option<Tensor>, // (type_vocab, H); DistilBERT has none
    pub layer_norm: LayerNorm,
    /// The position id of every sequence's first token: 0, or RoBERTa's `pad_token_id + 1`
    /// (`create_position_ids_from_input_ids`).
    pub first_position: usize,
}

impl Embeddings {
    /// `BertEmbeddings.forward`: `out (T, H) = LayerNorm(word + token type + position)`, the
    /// positions counted from `first_position` in every sequence
    /// ([modeling_bert.py#L214-L218](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L214-L218); XLM-R's positions from the pad token,
    /// [modeling_xlm_roberta.py#L1697](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/xlm_roberta/modeling_xlm_roberta.py#L1697); DistilBERT's without types,
    /// [modeling_distilbert.py#L131](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py#L131)).
    pub fn forward(&self, out: &mut [f32], batch: &PackedBatch, handoff: Handoff<'_>) {
        let h = self.layer_norm.weight.as_slice().len();
        let words = self.word_embeddings.as_slice();
        let positions = self.position_embeddings.as_ref().map(Tensor::as_slice);
        let types = self.token_type_embeddings.as_ref().map(Tensor::as_slice);
        let (ids, type_ids) = (batch.input_ids(), batch.token_type_ids());
        for s in 0..batch.num_sequences() {
            for (position, token) in (self.first_position..).zip(batch.range(s)) {
                let row = &mut out[token * h..(token + 1) * h];
                let word = &words[ids[token] as usize * h..][..h];
                let Some(positions) = positions else {
                    row.copy_from_slice(word);
                    continue;
                };
                let position = &positions[position * h..][..h];
                match types {
                    // As transformers adds them: (word + token type) + position.
                    Some(types) => {
                        let token_type = &types[type_ids[token] as usize * h..][..h];
                        for j in 0..h {
                            row[j] = word[j] + token_type[j] + position[j];
                        }
                    }
                    None => {
                        for j in 0..h {
                            row[j] = word[j] + position[j];
                        }
                    }
                }
            }
        }
        self.layer_norm
            .forward(out, None, batch.total_tokens(), handoff);
    }
}

/// `attention.self` (`BertSelfAttention`): Q, K and V stacked into one linear layer,
/// `W (3H, H)` = [Wq; Wk; Wv] (ModernBERT stores it stacked: `attn.Wqkv`).
pub struct BertSelfAttention {
    pub query_key_value: Linear,
    pub num_heads: usize,
    pub head_dim: usize,
    /// Rotary positions' base (ModernBERT's `rope_theta` of this layer's kind), applied to
    /// the queries and keys; `None` where positions were added to the embeddings.
    pub rotary_theta: Option<f32>,
    /// The sliding window's half-width (ModernBERT's local layers); `None`: global.
    pub window: Option<usize>,
}

impl BertSelfAttention {
    /// `BertSelfAttention.forward`: `context (R, H) = softmax(Q Kᵀ/√d) V` within each
    /// sequence, head by head, for the query rows `rows`; Q, K, V `(T, 3H)` from every token of
    /// `hidden (T, H)` (which the LayerNorm before quantized, when Q/K/V is int8)
    /// ([modeling_bert.py#L265-L344](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L265-L344); DistilBERT's `q_lin` …,
    /// [modeling_distilbert.py#L213-L232](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py#L213-L232)). ModernBERT's queries and keys are rotated by their
    /// positions first, and a local layer's queries see the keys within its window alone
    /// (`ModernBertAttention.forward`, [modeling_modernbert.py (transformers 5)](https://github.com/huggingface/transformers/blob/main/src/transformers/models/modernbert/modeling_modernbert.py)).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        context: &mut [f32],
        qkv: &mut [f32],
        hidden: &[f32],
        batch: &PackedBatch,
        rows: Rows,
        scratch: &k::Int8Scratch,
        rotary: &[k::RotaryTable],
    ) {
        let input = LinearInput::Quantized(hidden, scratch);
        let t = batch.total_tokens();
        self.query_key_value
            .forward(qkv, input, t, k::Activation::None);
        let (isa, offsets) = (k::Isa::selected(), batch.seq_offsets());
        let (heads, d) = (self.num_heads, self.head_dim);
        if let Some(theta) = self.rotary_theta {
            let table = Workspace::rotary_table(rotary, theta, d);
            k::apply_rotary(qkv, offsets, heads, d, table);
        }
        k::windowed_attention_forward(isa, rows, context, qkv, offsets, heads, d, self.window);
    }
}

/// The residual a sub-layer's output joins before its LayerNorm.
pub enum Residual<'a> {
    /// Post-norm (BERT): the sub-layer's input; `LayerNorm(output + input)` is the next
    /// stream and the next sub-layer's input at once.
    Input(&'a [f32]),
    /// Pre-norm (ModernBERT): the raw running sum, to which the output is added; the output
    /// then becomes the sum's LayerNorm, the next sub-layer's input.
    Stream(&'a mut [f32]),
}

/// A dense layer, then LayerNorm of its output plus the residual: `attention.output`
/// (`BertSelfOutput`) and `output` (`BertOutput`). In a pre-norm model the LayerNorm is the one
/// the *next* sub-layer reads its input through: ModernBERT's `attn.Wo` with the layer's
/// `mlp_norm`, `mlp.Wo` with the next layer's `attn_norm` (the last layer's: `final_norm`).
pub struct DenseLayerNorm {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

impl DenseLayerNorm {
    /// `out (row_count, H) = LayerNorm(x · Wᵀ + b + residual)`, handed off to `handoff.next`:
    /// `BertSelfOutput.forward(hidden_states, input_tensor)`
    /// ([modeling_bert.py#L468](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L468)) and `BertOutput`'s ([#L554](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L554));
    /// DistilBERT's `sa_layer_norm` and `output_layer_norm`
    /// ([modeling_distilbert.py#L492](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py#L492), [#L496](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py#L496)).
    /// Pre-norm: `stream += x · Wᵀ + b`, `out = LayerNorm(stream)` (ModernBERT's
    /// `hidden_states = hidden_states + attn_output`, then the next norm).
    pub fn forward(
        &self,
        out: &mut [f32],
        x: &[f32],
        residual: Residual<'_>,
        row_count: usize,
        handoff: Handoff<'_>,
    ) {
        let input = LinearInput::Rows(x, &mut *handoff.scratch);
        self.dense
            .forward(out, input, row_count, k::Activation::None);
        match residual {
            Residual::Input(input) => self
                .layer_norm
                .forward(out, Some(input), row_count, handoff),
            Residual::Stream(stream) => self
                .layer_norm
                .forward_after_add(stream, out, row_count, handoff),
        }
    }

    /// `H`: the width of its output.
    pub fn width(&self) -> usize {
        self.layer_norm.weight.as_slice().len()
    }
}

/// `attention.*` (`BertAttention`).
pub struct BertAttention {
    /// `attention.self.{query, key, value}`
    pub self_attention: BertSelfAttention,
    /// `attention.output.{dense, LayerNorm}` (`BertSelfOutput`)
    pub output: DenseLayerNorm,
}

impl BertAttention {
    /// `BertAttention.forward`: `attention_output (R, H) = LayerNorm(context · Woᵀ + b + input)`
    /// with `context` self-attention over `hidden (T, H)` and `input` the rows `rows` of
    /// `hidden` (gathered into `first_rows` when those are each sequence's first)
    /// ([modeling_bert.py#L524](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L524)), handed off to `next` (the layer's intermediate
    /// dense, which reads it). Pre-norm: the rows of the residual stream take the output in,
    /// and `attention_output` is their LayerNorm.
    pub fn forward(
        &self,
        workspace: &mut Workspace,
        batch: &PackedBatch,
        rows: Rows,
        next: &Linear,
        placement: NormPlacement,
    ) {
        let Workspace {
            hidden,
            residual,
            qkv,
            context,
            attention_output,
            first_rows,
            int8,
            rotary,
            ..
        } = workspace;
        self.self_attention
            .forward(context, qkv, hidden, batch, rows, int8, rotary);
        let h = self.output.width();
        // The residual: the layer's input (post-norm) or the stream (pre-norm), its rows `rows`.
        let stream = match placement {
            NormPlacement::Post => hidden,
            NormPlacement::Pre => residual,
        };
        let stream = match rows {
            Rows::All => &mut stream[..],
            Rows::FirstOfEachSequence => {
                gather_first_rows(first_rows, stream, batch, h);
                &mut first_rows[..]
            }
        };
        let residual = match placement {
            NormPlacement::Post => Residual::Input(stream),
            NormPlacement::Pre => Residual::Stream(stream),
        };
        let handoff = Handoff {
            next: Some(next),
            scratch: int8,
        };
        let r = row_count(rows, batch);
        self.output
            .forward(attention_output, context, residual, r, handoff);
    }
}

/// `intermediate` (`BertIntermediate`): a dense layer with GELU; ModernBERT's `mlp.Wi` with
/// its gate (GeGLU).
pub struct BertIntermediate {
    pub dense: Linear,
    /// `hidden_act`, run in the GEMM's epilogue.
    pub activation: k::Activation,
    /// GeGLU: `dense` gives `2F` values per row, `input, gate = chunk(2)`, and the output is
    /// `GELU(input) · gate` (`ModernBertMLP.forward`).
    pub gated: bool,
}

impl BertIntermediate {
    /// `BertIntermediate.forward`: `out (row_count, F) = GELU(x · Wᵀ + b)`, `x` as the LayerNorm
    /// before left it (quantized, when the layer is int8)
    /// ([modeling_bert.py#L540](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L540); DistilBERT's `lin1`,
    /// [modeling_distilbert.py#L432-L433](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py#L432-L433)).
    /// Gated: `out (row_count, 2F) = x · Wᵀ + b`, then `gated (row_count, F) = GELU(input) · gate`,
    /// which is returned; otherwise `out`.
    pub fn forward<'a>(
        &self,
        out: &'a mut [f32],
        gated: &'a mut [f32],
        x: &[f32],
        row_count: usize,
        scratch: &k::Int8Scratch,
    ) -> &'a [f32] {
        let input = LinearInput::Quantized(x, scratch);
        if !self.gated {
            self.dense.forward(out, input, row_count, self.activation);
            return &out[..row_count * self.dense.out_features];
        }
        self.dense
            .forward(out, input, row_count, k::Activation::None);
        let f = self.dense.out_features / 2;
        k::geglu(k::Isa::selected(), gated, out, row_count, f);
        &gated[..row_count * f]
    }
}

/// `encoder.layer.N.*` (`BertLayer`); ModernBERT's `layers.N.*` (`ModernBertEncoderLayer`),
/// whose LayerNorms sit before each sub-layer (see [`DenseLayerNorm`]).
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    /// `output.{dense, LayerNorm}` (`BertOutput`)
    pub output: DenseLayerNorm,
}

impl BertLayer {
    /// `BertLayer.forward`: the layer's output replaces its input in `hidden (T, H)`, at the
    /// rows `rows` (the others keep the input), handed off to `next` (the next layer's Q/K/V)
    /// ([modeling_bert.py#L573-L642](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L573-L642); DistilBERT's `TransformerBlock`,
    /// [modeling_distilbert.py#L460-L501](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/distilbert/modeling_distilbert.py#L460-L501)). Pre-norm
    /// (`ModernBertEncoderLayer.forward`, `placement` [`NormPlacement::Pre`]): the residual
    /// stream takes in both sub-layers' outputs and `hidden` becomes its LayerNorm, the next
    /// layer's input.
    pub fn forward(
        &self,
        workspace: &mut Workspace,
        batch: &PackedBatch,
        rows: Rows,
        next: Option<&Linear>,
        placement: NormPlacement,
    ) {
        // attention: attention_output (R, H) = LayerNorm(SelfAttention(hidden) · Woᵀ + b + input)
        let intermediate_dense = &self.intermediate.dense;
        self.attention
            .forward(workspace, batch, rows, intermediate_dense, placement);
        let Workspace {
            hidden,
            residual,
            context,
            attention_output,
            intermediate,
            gated,
            first_rows,
            int8,
            ..
        } = workspace;
        // intermediate: (R, F) = GELU(attention_output · Wiᵀ + b)
        let r = row_count(rows, batch);
        let activations = self
            .intermediate
            .forward(intermediate, gated, attention_output, r, int8);
        // output: the layer's output (R, H) = LayerNorm(intermediate · Wᵀ + b + attention_output),
        // written over the input rows (read for the last time above). Pre-norm: the stream
        // (all rows, or the first ones gathered by the attention block) takes it in, and its
        // LayerNorm is written over `hidden` (through `context` when only the first rows run).
        let handoff = Handoff {
            next,
            scratch: int8,
        };
        let (output, stream) = match (placement, rows) {
            (NormPlacement::Post, Rows::All) => {
                (&mut hidden[..], Residual::Input(attention_output))
            }
            (NormPlacement::Post, Rows::FirstOfEachSequence) => {
                (&mut first_rows[..], Residual::Input(attention_output))
            }
            (NormPlacement::Pre, Rows::All) => {
                (&mut hidden[..], Residual::Stream(&mut residual[..]))
            }
            (NormPlacement::Pre, Rows::FirstOfEachSequence) => {
                (&mut context[..], Residual::Stream(&mut first_rows[..]))
            }
        };
        self.output.forward(output, activations, stream, r, handoff);
        if rows == Rows::FirstOfEachSequence {
            let h = self.output.width();
            match placement {
                NormPlacement::Post => scatter_first_rows(hidden, first_rows, batch, h),
                NormPlacement::Pre => {
                    scatter_first_rows(hidden, context, batch, h);
                    scatter_first_rows(residual, first_rows, batch, h);
                }
            }
        }
    }
}

/// A BERT encoder with its optional heads.
pub struct BertModel {
    pub config: BertConfig,
    pub embeddings: Embeddings,
    /// `encoder.layer`
    pub layers: Vec<BertLayer>,
    /// `pooler.dense` (plain BERT only; DPR's leftover pooler is ignored).
    pub pooler: Option<Linear>,
    /// DPR's `encode_proj`, present when `projection_dim > 0`.
    pub projection: Option<Linear>,
    /// Precision of the encoder layers' linear layers.
    pub precision: Precision,
}

impl BertModel {
    /// `BertModel.forward` up to the last hidden state `(T, H)`, which lives in `workspace`:
    /// the embeddings, then the layers in turn ([`BertEncoder.forward`](https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py#L676)).
    /// `rows` says which of its rows are needed (see [`BertModel::last_layer_rows`]). When
    /// `all_hidden_states` is given, it receives the embedding output and every layer's output
    /// (as `output_hidden_states=True`; every row is then computed). Once `workspace` has seen
    /// a batch this large, the pass allocates nothing.
    pub fn forward<'w>(
        &self,
        batch: &PackedBatch,
        workspace: &'w mut Workspace,
        rows: Rows,
        mut all_hidden_states: Option<&mut Vec<Vec<f32>>>,
    ) -> Result<&'w [f32]> {
        batch.check_against(&self.config)?;
        workspace.resize(batch, &self.config);
        let rows = match all_hidden_states {
            Some(_) => Rows::All,
            None => rows,
        };
        // hidden (T, H) = Embeddings(input_ids, token_type_ids), quantized for layer 0's Q/K/V
        let handoff = Handoff {
            next: self.query_key_value(0),
            scratch: &mut workspace.int8,
        };
        let hidden = &mut workspace.hidden;
        self.embeddings.forward(hidden, batch, handoff);
        let pre_norm = self.config.norm_placement == NormPlacement::Pre;
        if pre_norm {
            // The residual stream starts as the embeddings' output (ModernBERT's layer 0 has no
            // `attn_norm`: it reads the embeddings as they are).
            let t = batch.total_tokens() * self.config.hidden_size;
            workspace.residual[..t].copy_from_slice(&workspace.hidden[..t]);
        }
        keep(&mut all_hidden_states, &workspace.hidden);
        // hidden (T, H) = BertLayer(hidden), layer after layer
        for (i, layer) in self.layers.iter().enumerate() {
            let (rows, next) = (self.last_layer_rows(i, rows), self.query_key_value(i + 1));
            layer.forward(workspace, batch, rows, next, self.config.norm_placement);
            // As transformers reports them: a pre-norm layer's output is the residual stream,
            // the last one's the final LayerNorm of it (the last hidden state).
            let last = i + 1 == self.layers.len();
            let output = match pre_norm && !last {
                true => &workspace.residual,
                false => &workspace.hidden,
            };
            keep(&mut all_hidden_states, output);
        }
        let t = batch.total_tokens();
        Ok(&workspace.hidden[..t * self.config.hidden_size])
    }

    /// The pooling-aware last layer: the rows layer `i` computes. Every layer computes every
    /// row, except the last when the caller needs each sequence's first row alone (`[CLS]`
    /// pooling, the pooler, DPR): its keys and values still come from every token, but its
    /// attention, feed-forward and LayerNorms run on those S rows, bit for bit the rows the full
    /// pass gives. The other rows of the last hidden state are then the last layer's input.
    pub fn last_layer_rows(&self, i: usize, rows: Rows) -> Rows {
        match i + 1 == self.layers.len() {
            true => rows,
            false => Rows::All,
        }
    }

    /// Layer `i`'s stacked Q/K/V, if there is a layer `i`: what reads the previous LayerNorm.
    fn query_key_value(&self, i: usize) -> Option<&Linear> {
        let layer = self.layers.get(i)?;
        Some(&layer.attention.self_attention.query_key_value)
    }

    /// Whether any encoder linear weight is used in place from the mapped file (a `densa
    /// quantize` or `densa pack` folder): its pages must stay.
    pub fn borrows_weights(&self) -> bool {
        self.layers.iter().any(|l| {
            [
                &l.attention.self_attention.query_key_value,
                &l.attention.output.dense,
                &l.intermediate.dense,
                &l.output.dense,
            ]
            .iter()
            .any(|linear| linear.is_borrowed())
        })
    }

    /// Number of parameters the model uses.
    pub fn parameter_count(&self) -> usize {
        let len = |t: &Tensor| t.as_slice().len();
        let lin = |l: &Linear| l.in_features * l.out_features + l.bias.as_ref().map_or(0, len);
        let norm = |n: &LayerNorm| len(&n.weight) + n.bias.as_ref().map_or(0, len);
        let e = &self.embeddings;
        let mut n = len(&e.word_embeddings)
            + e.position_embeddings.as_ref().map_or(0, len)
            + e.token_type_embeddings.as_ref().map_or(0, len)
            + norm(&e.layer_norm);
        for l in &self.layers {
            n += lin(&l.attention.self_attention.query_key_value)
                + lin(&l.attention.output.dense)
                + lin(&l.intermediate.dense)
                + lin(&l.output.dense);
            n += norm(&l.attention.output.layer_norm) + norm(&l.output.layer_norm);
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
        let gate = (self.config.intermediate_width() - self.config.intermediate_size) as f64;
        let tokens: f64 = seq_lens.iter().map(|&l| l as f64).sum();
        let linear = 2.0 * tokens * (4.0 * h * h + 2.0 * h * f + h * gate);
        // Each query against the keys it sees: all of its sequence, or those in its window.
        let attention = |window: Option<usize>| -> f64 {
            let keys = |i: usize, l: usize| match window {
                None => l,
                Some(w) => (i + w + 1).min(l) - i.saturating_sub(w),
            };
            let pairs = |l: usize| (0..l).map(|i| keys(i, l) as f64).sum::<f64>();
            seq_lens.iter().map(|&l| 4.0 * pairs(l) * h).sum()
        };
        (0..self.layers.len())
            .map(|i| linear + attention(self.config.attention_window(i)))
            .sum()
    }

    /// Bytes of the encoder's linear weights a forward pass streams once, whatever its shape:
    /// `(4·H² + 2·H·F)` per layer (`+ H·F` for a gate), 4 bytes each at f32, 1 at int8 (scales
    /// and biases aside).
    /// At a few tokens, where every weight is used for little work, the pass is bound by
    /// reading these from memory.
    pub fn linear_weight_bytes(&self) -> f64 {
        let (h, f) = (
            self.config.hidden_size as f64,
            self.config.intermediate_size as f64,
        );
        let gate = (self.config.intermediate_width() - self.config.intermediate_size) as f64;
        let per_value = match self.precision {
            Precision::Int8 => 1.0,
            _ => 4.0,
        };
        (4.0 * h * h + 2.0 * h * f + h * gate) * per_value * self.layers.len() as f64
    }
}

/// Appends a copy of the hidden state, when hidden states are kept.
fn keep(all_hidden_states: &mut Option<&mut Vec<Vec<f32>>>, hidden: &[f32]) {
    if let Some(states) = all_hidden_states {
        states.push(hidden.to_vec());
    }
}

/// `first (S, H)`: each sequence's first row of `hidden (T, H)`.
fn gather_first_rows(first: &mut [f32], hidden: &[f32], batch: &PackedBatch, h: usize) {
    for s in 0..batch.num_sequences() {
        let t0 = batch.seq_offsets()[s];
        first[s * h..(s + 1) * h].copy_from_slice(&hidden[t0 * h..(t0 + 1) * h]);
    }
}

/// The inverse: `first (S, H)` written back to each sequence's first row of `hidden`.
fn scatter_first_rows(hidden: &mut [f32], first: &[f32], batch: &PackedBatch, h: usize) {
    for s in 0..batch.num_sequences() {
        let t0 = batch.seq_offsets()[s];
        hidden[t0 * h..(t0 + 1) * h].copy_from_slice(&first[s * h..(s + 1) * h]);
    }
}
