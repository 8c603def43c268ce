//! Multi-head scaled dot-product attention over packed variable-length sequences.
//!
//! The batch is packed: the tokens of all sequences are concatenated row after row, and
//! `seq_offsets` says where each sequence starts (`seq_offsets[s]..seq_offsets[s + 1]`).
//! Attention runs per (sequence, head) over that sequence's real tokens only, so there is no
//! padding and no mask: a padded key in PyTorch gets `-inf` before softmax, i.e. weight 0,
//! which is exactly what leaving it out computes.
//!
//! Per (sequence, head), with T tokens and head width d, both products run on the GEMM's
//! micro-kernel (`gemm_block`):
//! ```text
//! pack Kᵀ/√d (d, T) and V (T, d) into panel layout      (scratch, per thread)
//! for each block of 64 query rows:                      ← scores (64, T) stay in L2 even at T = 512
//!     scores (64, T) = Q_rows · Kᵀ/√d                   micro-kernel, Q read in place
//!     softmax each row                                  vectorised exp (≤ 4 ulp)
//!     context (64, d) = scores · V                      micro-kernel, written into its columns
//! ```
//! Scratch is per thread and reused, so no call allocates once it has seen its longest
//! sequence.
//!
//! With a sliding window of half-width `w` (ModernBERT's local layers: query `i` sees keys
//! `j` with `|i - j| ≤ w`), a block of queries reads only the keys its window can reach,
//! `i0 - w .. i0 + 64 + w`, packed per block: the work is `T · (64 + 2w)` per head instead
//! of `T²`, and each row's softmax runs over its own window alone (the block's other keys get
//! weight 0, which adds exactly nothing to the context).

use crate::gemm::{
    gemm_block, kernel_shape, pack_rows, pack_transposed, Epilogue, F32Sink, Panels,
};
use crate::softmax::softmax_rows_isa;
use crate::{Isa, SendPtr};
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Query rows per block.
const QUERY_BLOCK: usize = 64;

thread_local! {
    /// Packed Kᵀ, packed V and one block of scores, for one (sequence, head) task at a time.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Which rows of a packed batch a step computes: attention's query rows here (its `queries`),
/// and in a model the rows of a layer's output (densa's last layer when pooling reads `[CLS]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Every token's: `T` rows (attention's `context` is `(total_tokens, H · d)`).
    All,
    /// Each sequence's first token only (`[CLS]`; attention's keys and values still over every
    /// token): `S` rows, row `s` for sequence `s` (`context` is `(num_sequences, H · d)`). Bit
    /// for bit the first rows of [`Rows::All`] (each query row is computed on its own).
    FirstOfEachSequence,
}

/// `context (T, H·d) = softmax(Q_h · K_hᵀ / √d) · V_h` for every head `h` and sequence.
///
/// `qkv` is `(total_tokens, 3 · H · d)`: each row holds the token's query, key and value, each
/// with head `h` in columns `h·d .. (h+1)·d` (BERT's Q, K, V projections side by side).
/// `context` is `(total_tokens, H · d)`, or `(num_sequences, H · d)` for
/// [`Rows::FirstOfEachSequence`] (what the last layer needs when pooling reads `[CLS]`
/// alone). `isa` is the instruction set to run on (normally [`crate::Isa::selected`]); one
/// this CPU lacks falls back to scalar.
pub fn attention_forward(
    isa: crate::Isa,
    queries: Rows,
    context: &mut [f32],
    qkv: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
) {
    windowed_attention_forward(
        isa,
        queries,
        context,
        qkv,
        seq_offsets,
        num_heads,
        head_dim,
        None,
    )
}

/// [`attention_forward`] where each query sees only the keys within `window` positions of it
/// in its sequence (`|i - j| ≤ window`; `None`: every key, global attention), as transformers'
/// bidirectional sliding-window mask, computed only within the window.
#[allow(clippy::too_many_arguments)]
pub fn windowed_attention_forward(
    isa: crate::Isa,
    queries: Rows,
    context: &mut [f32],
    qkv: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
    window: Option<usize>,
) {
    // The micro-kernels may only run on an ISA this CPU has.
    let isa = if isa.is_available() { isa } else { Isa::Scalar };
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
    crate::check_shape("attention", "qkv", qkv.len(), total_tokens, 3 * width);
    let num_seqs = seq_offsets.len().saturating_sub(1);
    let context_rows = match queries {
        Rows::All => total_tokens,
        Rows::FirstOfEachSequence => num_seqs,
    };
    crate::check_shape("attention", "context", context.len(), context_rows, width);
    let context_ptr = SendPtr(context.as_mut_ptr());
    // Every thread of the pool is grown at once to what the batch's longest sequence needs,
    // the first time a batch needs more than the calling thread has: which thread runs which
    // task (work stealing) must not decide whether a later call allocates.
    let longest = seq_offsets
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0);
    let scratch_len = scratch_len(isa, longest, head_dim, window);
    let grow = || {
        SCRATCH.with_borrow_mut(|scratch| {
            if scratch.len() < scratch_len {
                scratch.resize(scratch_len, 0.0);
            }
        })
    };
    if SCRATCH.with_borrow(|scratch| scratch.len() < scratch_len) {
        rayon::broadcast(|_| grow());
        grow();
    }
    (0..num_seqs * num_heads).into_par_iter().for_each(|task| {
        let (seq, head) = (task / num_heads, task % num_heads);
        let (start, end) = (seq_offsets[seq], seq_offsets[seq + 1]);
        if start == end {
            return;
        }
        let rows = &qkv[start * 3 * width..end * 3 * width];
        let (out_row, query_rows) = match queries {
            Rows::All => (start, end - start),
            Rows::FirstOfEachSequence => (seq, 1),
        };
        let out = context_ptr.get();
        SCRATCH.with_borrow_mut(|scratch| {
            // SAFETY: this task alone writes its sequence's query rows (out_row, query_rows),
            // columns head·d..(head+1)·d of `context` (tasks differ in sequence or head); the
            // block is in bounds (asserted).
            unsafe {
                head_attention(
                    isa,
                    out.add(out_row * width),
                    query_rows,
                    rows,
                    scratch,
                    Head {
                        width,
                        col: head * head_dim,
                        d: head_dim,
                        window,
                    },
                )
            };
        });
    });
}

/// The most keys one block of queries reads in a `t`-token sequence: all of them, or those
/// a window of half-width `w` reaches from a block.
fn key_span(t: usize, window: Option<usize>) -> usize {
    match window {
        None => t,
        Some(w) => t.min(QUERY_BLOCK + 2 * w),
    }
}

/// The keys the query rows `i0..i0 + block` read.
fn key_range(i0: usize, block: usize, t: usize, window: Option<usize>) -> Range<usize> {
    match window {
        None => 0..t,
        Some(w) => i0.saturating_sub(w)..(i0 + block + w).min(t),
    }
}

/// Scratch floats for one head of a `t`-token sequence: packed Kᵀ, packed V (of the keys one
/// block reads), one block of scores.
fn scratch_len(isa: Isa, t: usize, d: usize, window: Option<usize>) -> usize {
    let nr = kernel_shape(isa).1;
    let n = key_span(t, window);
    n.div_ceil(nr) * d * nr + d.div_ceil(nr) * n * nr + QUERY_BLOCK.min(t) * n
}

/// Which head: its columns `col..col + d` of rows `width` wide (Q; K and V `width` and
/// `2·width` further), and its window.
struct Head {
    width: usize,
    col: usize,
    d: usize,
    window: Option<usize>,
}

/// One head of one sequence. `rows`: its (T, 3W) qkv rows; `out`: its first context row
/// (stride W), of which columns col..col+d are written for the first `query_rows` queries.
///
/// # Safety
/// `out` must point at `query_rows` rows of stride `width` that no other thread writes in
/// columns col..col+d.
unsafe fn head_attention(
    isa: Isa,
    out: *mut f32,
    query_rows: usize,
    rows: &[f32],
    scratch: &mut Vec<f32>,
    head: Head,
) {
    let Head {
        width,
        col,
        d,
        window,
    } = head;
    let t = rows.len() / (3 * width);
    let nr = kernel_shape(isa).1;
    let span = key_span(t, window);
    let (key_len, value_len) = (span.div_ceil(nr) * d * nr, d.div_ceil(nr) * span * nr);
    if scratch.len() < scratch_len(isa, t, d, window) {
        scratch.resize(scratch_len(isa, t, d, window), 0.0);
    }
    let (key_t, rest) = scratch.split_at_mut(key_len);
    let (value, scores) = rest.split_at_mut(value_len);
    let mut packed = None;
    for i0 in (0..query_rows).step_by(QUERY_BLOCK) {
        let block = QUERY_BLOCK.min(query_rows - i0);
        let keys = key_range(i0, block, t, window);
        let n = keys.len();
        if packed.as_ref() != Some(&keys) {
            // Kᵀ/√d (d, n) and V (n, d) of these keys in panel layout.
            let first = &rows[keys.start * 3 * width..];
            let scale = 1.0 / (d as f32).sqrt();
            pack_transposed(key_t, &first[width + col..], 3 * width, n, d, nr, scale);
            pack_rows(value, &first[2 * width + col..], 3 * width, n, d, nr);
            packed = Some(keys.clone());
        }
        let key_panels = Panels {
            data: key_t,
            k: d,
            n,
            nr,
            isa,
        };
        let value_panels = Panels {
            data: value,
            k: n,
            n: d,
            nr,
            isa,
        };
        let scores = &mut scores[..block * n];
        // SAFETY: scores holds block × n values (row stride n); the query rows i0..i0+block
        // are in `rows` at stride 3W, each with d values from column col.
        let sink = F32Sink {
            out: SendPtr(scores.as_mut_ptr()),
            ldc: n,
            isa,
            epilogue: &Epilogue::NONE,
        };
        unsafe {
            gemm_block(
                &sink,
                &rows[i0 * 3 * width + col..],
                3 * width,
                key_panels,
                0..block,
                0..n.div_ceil(nr),
            )
        };
        match window {
            None => softmax_rows_isa(isa, scores, block, n),
            Some(w) => windowed_softmax(isa, scores, i0, &keys, t, w),
        }
        // SAFETY: context rows i0..i0+block, columns col..col+d: in bounds and ours (caller).
        let sink = F32Sink {
            // SAFETY: row i0, column col of this head's block of `out` (in bounds: caller).
            out: SendPtr(unsafe { out.add(i0 * width + col) }),
            ldc: width,
            isa,
            epilogue: &Epilogue::NONE,
        };
        unsafe { gemm_block(&sink, scores, n, value_panels, 0..block, 0..d.div_ceil(nr)) };
    }
}

/// Softmax of each score row (query `i0 + r`, keys `keys`) over the keys within `w` of its
/// query alone; the block's other keys get weight exactly 0.
fn windowed_softmax(
    isa: Isa,
    scores: &mut [f32],
    i0: usize,
    keys: &Range<usize>,
    t: usize,
    w: usize,
) {
    let n = keys.len();
    for (r, row) in scores.chunks_exact_mut(n).enumerate() {
        let i = i0 + r;
        let lo = i.saturating_sub(w) - keys.start;
        let hi = (i + w + 1).min(t) - keys.start;
        softmax_rows_isa(isa, &mut row[lo..hi], 1, hi - lo);
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
    }
}
