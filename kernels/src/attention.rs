//! Multi-head scaled dot-product attention over packed variable-length sequences.
//!
//! The batch is packed: the tokens of all sequences are concatenated row after row, and
//! `seq_offsets` says where each sequence starts (`seq_offsets[s]..seq_offsets[s + 1]`).
//! Attention runs per (sequence, head) over that sequence's real tokens only, so there is no
//! padding and no mask: a padded key in PyTorch gets `-inf` before softmax, i.e. weight 0,
//! which is exactly what leaving it out computes.

use crate::{softmax::softmax_rows, SendPtr};
use rayon::prelude::*;

/// `context (T, H·d) = softmax(Q_h · K_hᵀ / √d) · V_h` for every head `h` and sequence.
///
/// `query`, `key`, `value` and `context` are `(total_tokens, num_heads · head_dim)`, row-major,
/// with head `h` in columns `h·d .. (h+1)·d` (the layout of BERT's Q/K/V projections).
pub fn attention_forward(
    context: &mut [f32],
    query: &[f32],
    key: &[f32],
    value: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
) {
    let width = num_heads * head_dim;
    let total_tokens = seq_offsets.last().copied().unwrap_or(0);
    assert!(
        seq_offsets.windows(2).all(|w| w[0] <= w[1]),
        "attention: offsets must not decrease"
    );
    assert!(
        seq_offsets.first().copied().unwrap_or(0) == 0,
        "attention: offsets must start at 0"
    );
    for (name, len) in [
        ("query", query.len()),
        ("key", key.len()),
        ("value", value.len()),
        ("context", context.len()),
    ] {
        assert!(
            len >= total_tokens * width,
            "attention: {name} has {len} values, ({total_tokens}, {width}) needs {}",
            total_tokens * width
        );
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    let context_ptr = SendPtr(context.as_mut_ptr());
    let num_seqs = seq_offsets.len().saturating_sub(1);
    (0..num_seqs * num_heads).into_par_iter().for_each(|task| {
        let (seq, head) = (task / num_heads, task % num_heads);
        let (start, end) = (seq_offsets[seq], seq_offsets[seq + 1]);
        let t = end - start;
        if t == 0 {
            return;
        }
        let col = head * head_dim;
        let row0 = start * width + col;
        // attention_scores: (T, T) = Q_h · K_hᵀ · scale
        let mut scores = vec![0.0f32; t * t];
        // SAFETY: Q_h is rows start..end, columns col..col+d of `query` (row stride `width`),
        // and K_hᵀ the same block of `key` read transposed; both lie within the slices
        // (asserted above). `scores` is a fresh (t, t) buffer.
        unsafe {
            matrixmultiply::sgemm(
                t,
                head_dim,
                t,
                scale,
                query.as_ptr().add(row0),
                width as isize,
                1,
                key.as_ptr().add(row0),
                1,
                width as isize,
                0.0,
                scores.as_mut_ptr(),
                t as isize,
                1,
            );
        }
        softmax_rows(&mut scores, t, t);
        // SAFETY: scores (t, t) is ours; V_h is the in-bounds (t, d) block of `value`; the
        // output block (rows start..end, columns col..col+d) of `context` is in bounds and
        // written by this task alone: tasks differ in sequence (rows) or head (columns).
        unsafe {
            matrixmultiply::sgemm(
                t,
                t,
                head_dim,
                1.0,
                scores.as_ptr(),
                t as isize,
                1,
                value.as_ptr().add(row0),
                width as isize,
                1,
                0.0,
                context_ptr.get().add(row0),
                width as isize,
                1,
            );
        }
    });
}
