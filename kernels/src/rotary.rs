//! Rotary position embeddings (RoPE, Su et al. 2021), as transformers' `apply_rotary_pos_emb`
//! applies them to the queries and keys of ModernBERT.
//!
//! A head's `d` values are two halves `(a, b)`; the token at position `p` rotates each pair
//! `(a_j, b_j)` by the angle `p · θ^(-2j/d)`:
//! ```text
//! a'_j = a_j · cos − b_j · sin        (q · cos + rotate_half(q) · sin, rotate_half = (−b, a))
//! b'_j = b_j · cos + a_j · sin
//! ```
//! so a query-key product depends on the two positions only through their distance. The
//! angles' cosines and sines are a table of `(positions, d/2)`, computed once for the
//! longest sequence seen ([`RotaryTable`]); the rotation itself is a few multiplies per value
//! (memory-bound, plain code the compiler vectorises).

use rayon::prelude::*;

/// Tokens per parallel task.
const TOKENS_PER_TASK: usize = 16;

/// The cosines and sines of the rotation angles of one base `θ` (`rope_theta`) and head width
/// `d`, for positions `0..positions()`: row `p` holds `cos(p · inv_freq_j)` for `j < d/2`.
#[derive(Debug, Clone, PartialEq)]
pub struct RotaryTable {
    theta: f32,
    head_dim: usize,
    /// `inv_freq_j = 1 / θ^(2j/d)`, computed as transformers computes it (in f32).
    inv_freq: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RotaryTable {
    /// An empty table for base `theta` and heads `head_dim` wide (even).
    pub fn new(theta: f32, head_dim: usize) -> Self {
        assert!(
            head_dim.is_multiple_of(2),
            "rotary: head width {head_dim} is odd"
        );
        // transformers: `1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))`.
        let inv_freq = (0..head_dim / 2)
            .map(|j| {
                let exponent = (2 * j) as f32 / head_dim as f32;
                1.0 / ((theta as f64).powf(exponent as f64) as f32)
            })
            .collect();
        RotaryTable {
            theta,
            head_dim,
            inv_freq,
            cos: Vec::new(),
            sin: Vec::new(),
        }
    }

    /// `θ`.
    pub fn theta(&self) -> f32 {
        self.theta
    }

    /// The head width it rotates.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// How many positions the table holds.
    pub fn positions(&self) -> usize {
        self.cos.len().checked_div(self.head_dim / 2).unwrap_or(0)
    }

    /// Grows the table to hold positions `0..positions` (it never shrinks, so a pass that
    /// needs no more positions than an earlier one allocates nothing).
    pub fn ensure(&mut self, positions: usize) {
        let (have, half) = (self.positions(), self.head_dim / 2);
        if positions <= have || half == 0 {
            return;
        }
        for p in have..positions {
            for &inv_freq in &self.inv_freq {
                // transformers: `position_ids.float() * inv_freq`, then `.cos()` / `.sin()`.
                let angle = (p as f32 * inv_freq) as f64;
                self.cos.push(angle.cos() as f32);
                self.sin.push(angle.sin() as f32);
            }
        }
    }

    /// The cosines and sines of position `p` (`d/2` each).
    fn row(&self, p: usize) -> (&[f32], &[f32]) {
        let half = self.head_dim / 2;
        (
            &self.cos[p * half..(p + 1) * half],
            &self.sin[p * half..(p + 1) * half],
        )
    }
}

/// Rotates the queries and keys of `qkv` `(total_tokens, 3 · H · d)` in place (laid out as
/// [`crate::attention_forward`] reads them: Q, K, V side by side, head `h` at columns
/// `h·d..(h+1)·d` of each), each token by its position within its sequence. The values are
/// left as they are. `table` must hold the longest sequence's positions.
pub fn apply_rotary(
    qkv: &mut [f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
    table: &RotaryTable,
) {
    let width = num_heads * head_dim;
    let total_tokens = seq_offsets.last().copied().unwrap_or(0);
    crate::check_shape("rotary", "qkv", qkv.len(), total_tokens, 3 * width);
    assert_eq!(
        table.head_dim, head_dim,
        "rotary: table for another head width"
    );
    let longest = seq_offsets.windows(2).map(|w| w[1] - w[0]).max();
    assert!(
        longest.unwrap_or(0) <= table.positions(),
        "rotary: a sequence of {} tokens, the table holds {}",
        longest.unwrap_or(0),
        table.positions()
    );
    if width == 0 {
        return;
    }
    let half = head_dim / 2;
    qkv[..total_tokens * 3 * width]
        .par_chunks_mut(3 * width)
        .with_min_len(TOKENS_PER_TASK)
        .enumerate()
        .for_each(|(token, row)| {
            // The sequence holding `token`, and its position there.
            let seq = seq_offsets.partition_point(|&start| start <= token) - 1;
            let (cos, sin) = table.row(token - seq_offsets[seq]);
            // Queries and keys; each head's halves (a, b).
            for x in row[..2 * width].chunks_exact_mut(head_dim) {
                let (a, b) = x.split_at_mut(half);
                for j in 0..half {
                    let (aj, bj) = (a[j], b[j]);
                    a[j] = aj * cos[j] - bj * sin[j];
                    b[j] = bj * cos[j] + aj * sin[j];
                }
            }
        });
}
