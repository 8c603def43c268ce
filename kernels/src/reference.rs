//! Naive reference kernels, computed in `f64`: the twins the property tests compare the real
//! kernels with. Slow on purpose; never used by the engine.

/// `out = inp · weightᵀ + bias` with `inp (m, k)`, `weight (n, k)`.
pub fn linear(
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: (usize, usize, usize),
) -> Vec<f64> {
    let (m, k, n) = shape;
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|kk| inp[i * k + kk] as f64 * weight[j * k + kk] as f64)
                .sum();
            out[i * n + j] = dot + bias.map_or(0.0, |b| b[j] as f64);
        }
    }
    out
}

/// LayerNorm of each row.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], cols: usize, eps: f32) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        for (j, &v) in row.iter().enumerate() {
            out.push(
                (v as f64 - mean) / (var + eps as f64).sqrt() * weight[j] as f64 + bias[j] as f64,
            );
        }
    }
    out
}

/// Exact GELU.
pub fn gelu_erf(x: f32) -> f64 {
    gelu_erf_f64(x as f64)
}

/// Exact GELU of an `f64`.
pub fn gelu_erf_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// Tanh-approximated GELU.
pub fn gelu_tanh(x: f32) -> f64 {
    gelu_tanh_f64(x as f64)
}

/// Tanh-approximated GELU of an `f64`.
pub fn gelu_tanh_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// Softmax of each row.
pub fn softmax_rows(x: &[f32], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let max = row
            .iter()
            .map(|&v| v as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| e / sum));
    }
    out
}

/// Attention over packed sequences, laid out as [`crate::attention_forward`]: `qkv` rows
/// hold query, key and value side by side.
pub fn attention(
    qkv: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
) -> Vec<f64> {
    windowed_attention(qkv, seq_offsets, num_heads, head_dim, None)
}

/// [`attention`] where query `i` sees the keys `j` of its sequence with `|i - j| ≤ window`
/// only: the full score matrix, masked (transformers' sliding-window mask, by definition).
pub fn windowed_attention(
    qkv: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
    window: Option<usize>,
) -> Vec<f64> {
    let visible = |i: usize, j: usize| window.is_none_or(|w| i.abs_diff(j) <= w);
    let width = num_heads * head_dim;
    let total = seq_offsets.last().copied().unwrap_or(0);
    let (q, k, v) = (
        |t: usize, c: usize| qkv[t * 3 * width + c] as f64,
        |t: usize, c: usize| qkv[t * 3 * width + width + c] as f64,
        |t: usize, c: usize| qkv[t * 3 * width + 2 * width + c] as f64,
    );
    let mut out = vec![0.0; total * width];
    let scale = 1.0 / (head_dim as f64).sqrt();
    for s in 0..seq_offsets.len().saturating_sub(1) {
        let (start, end) = (seq_offsets[s], seq_offsets[s + 1]);
        for h in 0..num_heads {
            let c0 = h * head_dim;
            for i in start..end {
                let scores: Vec<f64> = (start..end)
                    .map(|j| {
                        (0..head_dim)
                            .map(|d| q(i, c0 + d) * k(j, c0 + d))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let scores: Vec<f64> = (start..end)
                    .map(|j| match visible(i, j) {
                        true => scores[j - start],
                        false => f64::NEG_INFINITY,
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for d in 0..head_dim {
                    out[i * width + c0 + d] = (start..end)
                        .map(|j| exps[j - start] / sum * v(j, c0 + d))
                        .sum();
                }
            }
        }
    }
    out
}

/// Rotary position embeddings by their definition, in f64: in each head of the queries and
/// keys of `qkv` (laid out as [`attention`]'s), the pair `(x_j, x_{j+d/2})` of the token at
/// position `p` of its sequence rotated by `p / θ^(2j/d)`. Values are returned unchanged.
pub fn rotary(
    qkv: &[f32],
    seq_offsets: &[usize],
    num_heads: usize,
    head_dim: usize,
    theta: f64,
) -> Vec<f64> {
    let width = num_heads * head_dim;
    let half = head_dim / 2;
    let mut out: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
    for s in 0..seq_offsets.len().saturating_sub(1) {
        for t in seq_offsets[s]..seq_offsets[s + 1] {
            let p = (t - seq_offsets[s]) as f64;
            for head in 0..2 * num_heads {
                let x = &mut out[t * 3 * width + head * head_dim..][..head_dim];
                for j in 0..half {
                    let angle = p / theta.powf((2 * j) as f64 / head_dim as f64);
                    let (a, b) = (x[j], x[j + half]);
                    x[j] = a * angle.cos() - b * angle.sin();
                    x[j + half] = b * angle.cos() + a * angle.sin();
                }
            }
        }
    }
    out
}

/// GeGLU: `GELU(x[:, :f]) · x[:, f:]` of each row of `x (rows, 2f)`.
pub fn geglu(x: &[f32], f: usize) -> Vec<f64> {
    x.chunks_exact(2 * f)
        .flat_map(|row| (0..f).map(move |j| gelu_erf(row[j]) * row[f + j] as f64))
        .collect()
}

/// `scores[r][j] = vectors[r] · queries[j]` in f64.
pub fn inner_products(queries: &[f32], vectors: &[f32], dim: usize) -> Vec<Vec<f64>> {
    vectors
        .chunks_exact(dim)
        .map(|row| {
            queries
                .chunks_exact(dim)
                .map(|q| row.iter().zip(q).map(|(&a, &b)| a as f64 * b as f64).sum())
                .collect()
        })
        .collect()
}

/// `scores[r][j] = queries[j] · rows[r]` with `rows` binary16 bits decoded by the `half` crate.
pub fn f16_products(queries: &[f32], rows: &[u16], dim: usize) -> Vec<Vec<f64>> {
    rows.chunks_exact(dim)
        .map(|row| {
            queries
                .chunks_exact(dim)
                .map(|q| {
                    row.iter()
                        .zip(q)
                        .map(|(&h, &b)| half::f16::from_bits(h).to_f64() * b as f64)
                        .sum()
                })
                .collect()
        })
        .collect()
}

/// `scores[r][j] = weights[j] · codes[r]` (int8 codes).
pub fn int8_products(weights: &[f32], codes: &[i8], dim: usize) -> Vec<Vec<f64>> {
    codes
        .chunks_exact(dim)
        .map(|row| {
            weights
                .chunks_exact(dim)
                .map(|w| row.iter().zip(w).map(|(&c, &x)| c as f64 * x as f64).sum())
                .collect()
        })
        .collect()
}

/// `scores[r][j]` = minus the number of bit positions where `queries[j]` and `rows[r]` differ,
/// bit by bit.
pub fn hamming_products(queries: &[u8], rows: &[u8], bytes: usize) -> Vec<Vec<f64>> {
    let differ = |a: &[u8], b: &[u8]| -> usize {
        (0..bytes * 8)
            .filter(|&i| (a[i / 8] >> (i % 8)) & 1 != (b[i / 8] >> (i % 8)) & 1)
            .count()
    };
    rows.chunks_exact(bytes)
        .map(|row| {
            queries
                .chunks_exact(bytes)
                .map(|q| -(differ(q, row) as f64))
                .collect()
        })
        .collect()
}
