//! The BERT encoder: weights and forward pass.
//!
//! The types mirror Hugging Face's module tree (`BertModel { embeddings, encoder.layer[N] {
//! attention { self, output }, intermediate, output }, pooler }`) and the tensor names
//! (`encoder.layer.N.attention.self.query`), so this file reads side by side with
//! `modeling_bert.py`: the types, then the forward pass top to bottom. Loading is in `load.rs`,
//! the linear layer in `linear.rs`, the packed batch in `batch.rs`.
//!
//! The forward pass works on a *packed* batch: the tokens of all sequences concatenated,
//! `(total_tokens, hidden)`, with `seq_offsets` marking where each sequence starts. The linear
//! layers, LayerNorm and GELU see only real tokens; attention runs per sequence. So a batch
//! costs what its tokens cost, and one text's vector never depends on its batch-mates.

mod batch;
mod linear;
mod load;

pub use batch::{OutputRows, PackedBatch, Workspace};
pub use linear::{Linear, LinearInput, LinearWeight, Precision};
pub use load::{parameter_shapes, TensorNames};

use crate::checkpoint::Tensor;
use crate::config::{Activation, BertConfig};
use crate::error::{Error, Result};
use densa_kernels as k;

/// `embeddings.*`: word + position (+ token type), then LayerNorm.
pub struct Embeddings {
    pub word_embeddings: Tensor,               // (vocab, H)
    pub position_embeddings: Tensor,           // (max_positions, H)
    pub token_type_embeddings: Option<Tensor>, // (type_vocab, H); DistilBERT has none
    pub layer_norm: LayerNorm,                 // LayerNorm
}

/// `encoder.layer.N.*` (`BertLayer`).
pub struct BertLayer {
    pub attention: BertAttention,
    /// `intermediate.dense`, GELU fused into its epilogue (`BertIntermediate`).
    pub intermediate: Linear,
    /// `output.{dense, LayerNorm}` (`BertOutput`).
    pub output: DenseLayerNorm,
}

/// `attention.*` (`BertAttention`).
pub struct BertAttention {
    /// `self.{query, key, value}` (`BertSelfAttention`), stacked: `W (3H, H)` = [Wq; Wk; Wv],
    /// one GEMM.
    pub self_query_key_value: Linear,
    /// `output.{dense, LayerNorm}` (`BertSelfOutput`).
    pub output: DenseLayerNorm,
}

/// A dense layer, then LayerNorm(· + residual): `BertSelfOutput` and `BertOutput`.
pub struct DenseLayerNorm {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

/// LayerNorm's affine parameters (`weight` = gamma, `bias` = beta).
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
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
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let (heads, head_dim) = (cfg.num_attention_heads, cfg.head_dim());
        let isa = k::Isa::selected(); // the f32 kernels' instruction set (DENSA_ISA or the best)
        let t = batch.total_tokens(); // T: real tokens of all sequences together
        let s = batch.num_sequences(); // S: sequences
        self.check_batch(batch)?;
        workspace.resize(t, s, h, f);
        let first_tokens_only = rows == OutputRows::FirstTokens && all_hidden_states.is_none();
        let Workspace {
            hidden,
            qkv,
            context,
            normed,
            intermediate,
            first_rows,
            int8,
        } = workspace;
        let first_layer = self
            .layers
            .first()
            .map(|l| &l.attention.self_query_key_value);

        // hidden (T, H) = LayerNorm(word + position + token_type embeddings), quantized for the
        // first layer's Q/K/V when it runs int8
        self.embeddings_sum(hidden, batch);
        let ln = &self.embeddings.layer_norm;
        ln.forward(hidden, None, t, eps, first_layer, int8);
        if let Some(states) = all_hidden_states.as_deref_mut() {
            states.push(hidden.clone());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let next_qkv = self
                .layers
                .get(i + 1)
                .map(|l| &l.attention.self_query_key_value);
            // attention.self: qkv (T, 3H) = hidden · [Wq; Wk; Wv]ᵀ + b (its input was
            // quantized by the LayerNorm before)
            let qkv_layer = &layer.attention.self_query_key_value;
            qkv_layer.forward(
                qkv,
                LinearInput::Quantized(hidden, int8),
                t,
                k::Activation::None,
            );
            if first_tokens_only && next_qkv.is_none() {
                // Only [CLS] is pooled: the last layer's rest runs on S rows.
                // context (S, H) = softmax(q Kᵀ/√d) V for each sequence's first query
                let (first, offsets) = (k::Queries::FirstOfEachSequence, &batch.seq_offsets);
                k::attention_forward(isa, first, context, qkv, offsets, heads, head_dim);
                // first_rows (S, H) = the layer's input at each sequence's first token
                gather_first_rows(first_rows, hidden, batch, h);
                let (inputs, context) = (&first_rows[..s * h], &mut context[..s * h]);
                self.after_attention(layer, None, inputs, context, normed, intermediate, s, int8);
                scatter_first_rows(hidden, &context[..s * h], batch, h);
                break;
            }
            // context (T, H) = softmax(Q Kᵀ/√d) V within each sequence, head by head
            let (all, offsets) = (k::Queries::All, &batch.seq_offsets);
            k::attention_forward(isa, all, context, qkv, offsets, heads, head_dim);
            // attention.output, intermediate, output: hidden (T, H) = the layer's output
            self.after_attention(
                layer,
                next_qkv,
                hidden,
                context,
                normed,
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
    /// normed  = LayerNorm(context · Woᵀ + b + hidden)                   attention.output
    /// context = LayerNorm(GELU(normed · Wiᵀ + b) · Wᵀ + b + normed)     intermediate, output
    /// ```
    /// The last LayerNorm quantizes its rows for `next` (the next layer's Q/K/V) if it is int8.
    #[allow(clippy::too_many_arguments)]
    fn after_attention(
        &self,
        layer: &BertLayer,
        next: Option<&Linear>,
        hidden: &[f32],
        context: &mut [f32],
        normed: &mut [f32],
        intermediate: &mut [f32],
        rows: usize,
        int8: &mut k::Int8Scratch,
    ) {
        let eps = self.config.layer_norm_eps;
        let gelu = match self.config.hidden_act {
            Activation::GeluErf => k::Activation::GeluErf,
            Activation::GeluTanh => k::Activation::GeluTanh,
        };
        let none = k::Activation::None;
        // attention.output: dense + bias, then LayerNorm(· + residual), quantized for FFN in
        let out = &layer.attention.output;
        out.dense
            .forward(normed, LinearInput::Rows(context, int8), rows, none);
        let ffn_in = Some(&layer.intermediate);
        out.layer_norm
            .forward(normed, Some(hidden), rows, eps, ffn_in, int8);
        // intermediate: (rows, F) = GELU(normed · Wiᵀ + b), GELU in the GEMM's epilogue
        let intermediate = &mut intermediate[..rows * self.config.intermediate_size];
        let input = LinearInput::Quantized(normed, int8);
        layer.intermediate.forward(intermediate, input, rows, gelu);
        // output: dense + bias, then LayerNorm(· + residual), quantized for the next layer
        let out = &layer.output;
        out.dense
            .forward(context, LinearInput::Rows(intermediate, int8), rows, none);
        out.layer_norm
            .forward(context, Some(normed), rows, eps, next, int8);
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
        // The first value of `values` at or past `limit`, if any.
        fn beyond(values: &[u32], limit: usize) -> Option<u32> {
            values.iter().copied().find(|&v| v as usize >= limit)
        }
        if let Some(id) = beyond(&batch.input_ids, cfg.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {id} is beyond the embedding table ({} rows)",
                cfg.vocab_size
            )));
        }
        let types = cfg.type_vocab_size;
        if let Some(tt) = beyond(&batch.token_type_ids, types).filter(|_| types > 0) {
            return Err(Error::InvalidInput(format!(
                "token type {tt} is beyond type_vocab_size {}",
                cfg.type_vocab_size
            )));
        }
        if let Some(len) = (0..batch.num_sequences())
            .map(|s| batch.range(s).len())
            .find(|&l| l > cfg.max_positions())
        {
            return Err(Error::InvalidInput(format!(
                "a sequence of {len} tokens exceeds the {} positions of the position embeddings",
                cfg.max_positions()
            )));
        }
        if batch.token_type_ids.len() != batch.input_ids.len() {
            return Err(Error::InvalidInput(
                "token_type_ids and input_ids differ in length".into(),
            ));
        }
        Ok(())
    }

    /// `embeddings` before their LayerNorm: word + position + token type. `out`: (T, H).
    fn embeddings_sum(&self, out: &mut [f32], batch: &PackedBatch) {
        let h = self.config.hidden_size;
        let emb = &self.embeddings;
        let (words, positions) = (
            emb.word_embeddings.as_slice(),
            emb.position_embeddings.as_slice(),
        );
        let types = emb.token_type_embeddings.as_ref().map(|t| t.as_slice());
        // Every sequence's positions start at the same id: 0, or RoBERTa's pad_token_id + 1.
        let first_position = self.config.position_offset;
        for s in 0..batch.num_sequences() {
            let range = batch.range(s);
            for (position, token) in (first_position..).zip(range) {
                let id = batch.input_ids[token] as usize;
                let row = &mut out[token * h..(token + 1) * h];
                let (w, p) = (&words[id * h..][..h], &positions[position * h..][..h]);
                match types {
                    // As transformers adds them: (word + token type) + position.
                    Some(types) => {
                        let tt = batch.token_type_ids[token] as usize;
                        let ty = &types[tt * h..][..h];
                        for j in 0..h {
                            row[j] = w[j] + ty[j] + p[j];
                        }
                    }
                    None => {
                        for j in 0..h {
                            row[j] = w[j] + p[j];
                        }
                    }
                }
            }
        }
    }

    /// Number of parameters the model uses.
    pub fn parameter_count(&self) -> usize {
        let lin = |l: &Linear| l.in_features * l.out_features + l.out_features;
        let e = &self.embeddings;
        let mut n = e.word_embeddings.as_slice().len()
            + e.position_embeddings.as_slice().len()
            + e.token_type_embeddings
                .as_ref()
                .map_or(0, |t| t.as_slice().len())
            + 2 * self.config.hidden_size;
        for l in &self.layers {
            n += lin(&l.attention.self_query_key_value)
                + lin(&l.attention.output.dense)
                + lin(&l.intermediate)
                + lin(&l.output.dense);
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

/// `first (S, H)`: each sequence's first row of `hidden (T, H)`.
fn gather_first_rows(first: &mut [f32], hidden: &[f32], batch: &PackedBatch, h: usize) {
    for (seq, row) in first[..batch.num_sequences() * h]
        .chunks_exact_mut(h)
        .enumerate()
    {
        let t0 = batch.seq_offsets[seq];
        row.copy_from_slice(&hidden[t0 * h..(t0 + 1) * h]);
    }
}

/// The inverse: `first (S, H)` written back to each sequence's first row of `hidden`.
fn scatter_first_rows(hidden: &mut [f32], first: &[f32], batch: &PackedBatch, h: usize) {
    for (seq, row) in first.chunks_exact(h).enumerate() {
        let t0 = batch.seq_offsets[seq];
        hidden[t0 * h..(t0 + 1) * h].copy_from_slice(row);
    }
}
