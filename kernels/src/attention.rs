//! Multi-head scaled dot-product attention over packed variable-length sequences.
//!
//! The batch is packed: the tokens of all sequences are concatenated row after row, and
//! `seq_offsets` says where each sequence starts (`seq_offsets[s]..seq_offsets[s + 1]`).
//! Attention runs per (sequence, head) over that sequence's real tokens only, so there is no
//! padding and no mask: a padded key in PyTorch gets `-inf` before softmax, i.e. weight 0,
//! which is exactly what leaving it out computes.
//!
//! Per (sequence, head), with T tokens and head width d:
//! ```text
//! Kᵀ (d, T)        ← transposed once into scratch (L2-resident even at T = 512: 128 KiB)
//! for 4 query rows at a time:
//!     scores (4, T) = (q · 1/√d) · Kᵀ     axpy over rows of Kᵀ, each row loaded once per 4 queries
//!     softmax each row                    vectorised exp (≤ 4 ulp)
//!     context (4, d) = scores · V          axpy over rows of V
//! ```
//! All loops are contiguous and vectorise; scratch is per thread and reused, so no call
//! allocates once it has seen its longest sequence.

use crate::{multiversion, simd, softmax::softmax_row, SendPtr};
use rayon::prelude::*;
use std::cell::RefCell;

/// Query rows processed together (each row of Kᵀ is reused this many times from L1).
const QUERY_BLOCK: usize = 4;

thread_local! {
    /// Kᵀ and the score rows of one (sequence, head) task.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `context (T, H·d) = softmax(Q_h · K_hᵀ / √d) · V_h` for every head `h` and sequence.
///
/// `qkv` is `(total_tokens, 3 · H · d)`: each row holds the token's query, key and value, each
/// with head `h` in columns `h·d .. (h+1)·d` (BERT's Q, K, V projections side by side).
/// `context` is `(total_tokens, H · d)`.
pub fn attention_forward(
    context: &mut [f32],
    qkv: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
) {
    attention_forward_isa(
        crate::Isa::selected(),
        context,
        qkv,
        seq_offsets,
        num_heads,
        head_dim,
    )
}

/// [`attention_forward`] on a given ISA (tests).
pub fn attention_forward_isa(
    isa: crate::Isa,
    context: &mut [f32],
    qkv: &[f32],
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
    assert!(
        qkv.len() >= total_tokens * 3 * width,
        "attention: qkv has {} values, ({total_tokens}, {}) needs {}",
        qkv.len(),
        3 * width,
        total_tokens * 3 * width
    );
    assert!(
        context.len() >= total_tokens * width,
        "attention: context has {} values, ({total_tokens}, {width}) needs {}",
        context.len(),
        total_tokens * width
    );
    let context_ptr = SendPtr(context.as_mut_ptr());
    let num_seqs = seq_offsets.len().saturating_sub(1);
    (0..num_seqs * num_heads).into_par_iter().for_each(|task| {
        let (seq, head) = (task / num_heads, task % num_heads);
        let (start, end) = (seq_offsets[seq], seq_offsets[seq + 1]);
        if start == end {
            return;
        }
        let rows = &qkv[start * 3 * width..end * 3 * width];
        // SAFETY: this task alone writes rows start..end, columns head·d..(head+1)·d of
        // `context` (tasks differ in sequence or head); the block is in bounds (asserted).
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                context_ptr.get().add(start * width),
                (end - start) * width,
            )
        };
        SCRATCH.with_borrow_mut(|scratch| {
            let t = end - start;
            let need = head_dim * t + QUERY_BLOCK * t;
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            head_attention_isa(isa, out, rows, scratch, width, head * head_dim, head_dim);
        });
    });
}

multiversion! {
    /// One head of one sequence. `rows`: (T, 3W) qkv rows; `out`: (T, W) context rows, of which
    /// columns col..col+d are written.
    fn head_attention / head_attention_isa(out: &mut [f32], rows: &[f32], scratch: &mut [f32], width: usize, col: usize, d: usize) {
        let t = rows.len() / (3 * width);
        let scale = 1.0 / (d as f32).sqrt();
        let (key_t, scores) = scratch.split_at_mut(d * t);
        // Kᵀ (d, T)
        for j in 0..t {
            let key = &rows[j * 3 * width + width + col..][..d];
            for c in 0..d {
                key_t[c * t + j] = key[c];
            }
        }
        for i0 in (0..t).step_by(QUERY_BLOCK) {
            let block = QUERY_BLOCK.min(t - i0);
            let scores = &mut scores[..block * t];
            scores.fill(0.0);
            // scores (block, T) = (q · scale) · Kᵀ
            for c in 0..d {
                let key_row = &key_t[c * t..(c + 1) * t];
                for r in 0..block {
                    let q = rows[(i0 + r) * 3 * width + col + c] * scale;
                    simd::axpy(&mut scores[r * t..(r + 1) * t], q, key_row);
                }
            }
            for r in 0..block {
                let probs = &mut scores[r * t..(r + 1) * t];
                softmax_row(probs);
                // context (1, d) = probs · V
                let ctx = &mut out[(i0 + r) * width + col..][..d];
                ctx.fill(0.0);
                for (j, &p) in probs.iter().enumerate() {
                    simd::axpy(ctx, p, &rows[j * 3 * width + 2 * width + col..][..d]);
                }
            }
        }
    }
}
