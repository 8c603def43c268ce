//! A packed batch (the tokens of several sequences, concatenated), checked where it is built,
//! and the buffers a forward pass runs in.

use crate::config::{BertConfig, NormPlacement};
use crate::error::{Error, Result};
use densa_kernels as k;
pub use k::Rows;

/// Default most tokens in one forward pass. A pass keeps `(6·H + F) × 4` bytes of activations
/// per token ([`Workspace`]: the hidden state, Q/K/V, the attention context and output, the
/// feed-forward intermediate): 30 KiB for BERT-base, so 8192 tokens bound one pass at
/// 240 MiB (plus a few KiB of attention scratch per thread), whatever the batch size and the
/// texts' lengths are.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 8192;

/// Token ids of several sequences, concatenated: what one forward pass reads. Its fields are
/// private so that every batch is well formed: [`PackedBatch::push`] checks each sequence as
/// it arrives (at least one token, a type id per id), so offsets always rise from 0 to the
/// token count. What depends on a model's tables (ids, types, length) the model checks.
#[derive(Debug, Clone)]
pub struct PackedBatch {
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
    /// Sequence `s` is tokens `seq_offsets[s]..seq_offsets[s + 1]`; starts with 0.
    seq_offsets: Vec<usize>,
    /// The caller's number of each sequence (named in errors; where its result goes).
    inputs: Vec<usize>,
}

impl Default for PackedBatch {
    fn default() -> Self {
        PackedBatch::new()
    }
}

impl PackedBatch {
    /// An empty batch.
    pub fn new() -> Self {
        PackedBatch {
            input_ids: Vec::new(),
            token_type_ids: Vec::new(),
            seq_offsets: vec![0],
            inputs: Vec::new(),
        }
    }

    /// Appends one sequence: `input` is the caller's number for it (its index in the caller's
    /// list), which errors name and [`PackedBatch::inputs`] returns. A sequence without tokens,
    /// or with more or fewer type ids than ids, is refused (even an empty text has its special
    /// tokens).
    pub fn push(&mut self, input: usize, ids: &[u32], type_ids: &[u32]) -> Result<()> {
        let problem = if ids.is_empty() {
            "has no tokens (even an empty text has its special tokens)".to_string()
        } else if type_ids.len() != ids.len() {
            format!("has {} ids but {} type ids", ids.len(), type_ids.len())
        } else {
            self.input_ids.extend_from_slice(ids);
            self.token_type_ids.extend_from_slice(type_ids);
            self.seq_offsets.push(self.input_ids.len());
            self.inputs.push(input);
            return Ok(());
        };
        Err(input_error(input, &problem))
    }

    pub fn total_tokens(&self) -> usize {
        self.input_ids.len()
    }

    pub fn num_sequences(&self) -> usize {
        self.inputs.len()
    }

    /// The token range of sequence `s`.
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.seq_offsets[s]..self.seq_offsets[s + 1]
    }

    /// `(T)`: every sequence's token ids, one after the other.
    pub fn input_ids(&self) -> &[u32] {
        &self.input_ids
    }

    /// `(T)`: the token type of each token.
    pub fn token_type_ids(&self) -> &[u32] {
        &self.token_type_ids
    }

    /// `(S + 1)`: where each sequence starts, then the token count.
    pub fn seq_offsets(&self) -> &[usize] {
        &self.seq_offsets
    }

    /// `(S)`: the caller's number of each sequence, in batch order.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    /// Refuses what `config`'s tables cannot embed: an id beyond the vocabulary, a token type
    /// beyond the types, a sequence longer than the positions. Errors name the input.
    pub fn check_against(&self, config: &BertConfig) -> Result<()> {
        let types = config.type_vocab_size.max(1);
        for (s, &input) in self.inputs.iter().enumerate() {
            let range = self.range(s);
            let problem = if range.len() > config.max_positions() {
                format!(
                    "has {} tokens, more than the model's {} positions",
                    range.len(),
                    config.max_positions()
                )
            } else if let Some(id) = self.input_ids[range.clone()]
                .iter()
                .find(|&&id| id as usize >= config.vocab_size)
            {
                format!(
                    "holds token id {id}, beyond the embedding table ({} rows)",
                    config.vocab_size
                )
            } else if let Some(tt) = self.token_type_ids[range]
                .iter()
                .find(|&&tt| tt as usize >= types)
            {
                format!(
                    "holds token type {tt}, beyond the {} token types",
                    config.type_vocab_size
                )
            } else {
                continue;
            };
            return Err(input_error(input, &problem));
        }
        Ok(())
    }
}

/// An input the model cannot run, named by the caller's number.
fn input_error(input: usize, problem: &str) -> Error {
    Error::InvalidInput(format!(
        "tokenized input {input} (counting from 0) {problem}"
    ))
}

/// The activation buffers of one forward pass, named by their role in a layer and reused from
/// call to call: they only grow. `T` tokens, `S` sequences, `R` the rows a layer computes after
/// attention (`T`, or `S` in a last layer that computes [`Rows::FirstOfEachSequence`]).
#[derive(Default)]
pub struct Workspace {
    /// `(T, H)` each layer's input and, after the last, the last hidden state: the
    /// embeddings' output, then each layer's output (post-norm, where this is also the
    /// residual stream) or its LayerNorm (pre-norm).
    pub(super) hidden: Vec<f32>,
    /// `(T, H)` pre-norm's residual stream, the raw sum of the embeddings and every
    /// sub-layer's output (empty for post-norm models).
    pub(super) residual: Vec<f32>,
    /// `(T, 3H)` each token's query, key and value.
    pub(super) qkv: Vec<f32>,
    /// `(R, H)` softmax(Q Kᵀ/√d) V, head by head: self-attention's output.
    pub(super) context: Vec<f32>,
    /// `(R, H)` LayerNorm(context · Woᵀ + b + input): the attention block's output (pre-norm:
    /// the LayerNorm of the stream it joined, the feed-forward's input).
    pub(super) attention_output: Vec<f32>,
    /// `(R, F)` GELU(attention_output · Wiᵀ + b); `(R, 2F)` before the gate of a gated
    /// feed-forward.
    pub(super) intermediate: Vec<f32>,
    /// `(R, F)` a gated feed-forward's GELU(input) · gate (empty otherwise).
    pub(super) gated: Vec<f32>,
    /// Rotary positions' cosines and sines, one table per base, as long as the longest
    /// sequence seen.
    pub(super) rotary: Vec<k::RotaryTable>,
    /// `(S, H)` each sequence's first row of `hidden`, for a last layer that computes those alone.
    pub(super) first_rows: Vec<f32>,
    /// The int8 layers' quantized inputs (int8 precision only).
    pub(super) int8: k::Int8Scratch,
}

impl Workspace {
    /// Sizes every buffer for `batch` (never shrinking capacity).
    pub(super) fn resize(&mut self, batch: &PackedBatch, config: &BertConfig) {
        let (t, s) = (batch.total_tokens(), batch.num_sequences());
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let pre_norm = config.norm_placement == NormPlacement::Pre;
        for (buffer, len) in [
            (&mut self.hidden, t * h),
            (&mut self.residual, if pre_norm { t * h } else { 0 }),
            (&mut self.qkv, 3 * t * h),
            (&mut self.context, t * h),
            (&mut self.attention_output, t * h),
            (&mut self.intermediate, t * config.intermediate_width()),
            (&mut self.gated, if config.gated_mlp { t * f } else { 0 }),
            (&mut self.first_rows, s * h),
        ] {
            buffer.resize(len, 0.0);
        }
        let longest = (0..s).map(|i| batch.range(i).len()).max().unwrap_or(0);
        for theta in (0..config.num_hidden_layers).filter_map(|i| config.rotary_theta(i)) {
            let d = config.head_dim();
            if !self
                .rotary
                .iter()
                .any(|r| r.theta() == theta && r.head_dim() == d)
            {
                self.rotary.push(k::RotaryTable::new(theta, d));
            }
        }
        self.rotary
            .iter_mut()
            .for_each(|table| table.ensure(longest));
    }

    /// The rotary table of base `theta` for heads `d` wide (`resize` made it).
    pub(super) fn rotary_table(rotary: &[k::RotaryTable], theta: f32, d: usize) -> &k::RotaryTable {
        rotary
            .iter()
            .find(|r| r.theta() == theta && r.head_dim() == d)
            .expect("Workspace::resize makes a table for every base of the model")
    }
}

/// The number of rows `rows` computes of `batch`: its tokens, or its sequences.
pub(super) fn row_count(rows: Rows, batch: &PackedBatch) -> usize {
    match rows {
        Rows::All => batch.total_tokens(),
        Rows::FirstOfEachSequence => batch.num_sequences(),
    }
}
