//! A packed batch (the tokens of several sequences, concatenated) and the buffers a forward
//! pass runs in.

use densa_kernels as k;

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
    pub(super) hidden: Vec<f32>,       // (T, H)
    pub(super) qkv: Vec<f32>,          // (T, 3H)
    pub(super) context: Vec<f32>,      // (T, H)
    pub(super) normed: Vec<f32>,       // (T, H): after the attention block's LayerNorm
    pub(super) intermediate: Vec<f32>, // (T, F)
    pub(super) first_rows: Vec<f32>,   // (S, H): the last layer's input rows, first tokens only
    pub(super) int8: k::Int8Scratch,   // quantized activations (int8 precision only)
}

impl Workspace {
    /// Sizes every buffer for `t` tokens (never shrinking capacity).
    pub(super) fn resize(&mut self, t: usize, s: usize, h: usize, f: usize) {
        for (buffer, len) in [
            (&mut self.first_rows, s * h),
            (&mut self.hidden, t * h),
            (&mut self.qkv, 3 * t * h),
            (&mut self.context, t * h),
            (&mut self.normed, t * h),
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
