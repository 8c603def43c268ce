//! The kernels ModernBERT adds, against their f64 twins in `densa_kernels::reference` on random
//! shapes (odd sizes, sequences longer than the window) at several thread counts: rotary
//! position embeddings, GeGLU, attention within a sliding window, bias-free LayerNorm and the
//! pre-norm "add, then norm" that keeps the residual stream.

use densa_kernels::attention::Rows;
use densa_kernels::{self as k, reference};
mod common;

use common::{check_close, layer_norm_tolerance, values, with_threads};
use proptest::prelude::*;

/// Packed offsets of sequences of lengths `lens`.
fn offsets_of(lens: &[usize]) -> Vec<usize> {
    let mut offsets = vec![0];
    for l in lens {
        offsets.push(offsets.last().unwrap() + l);
    }
    offsets
}

/// `(T, 3·width)` Q|K|V rows from random values, queries and keys scaled as attention sees them.
fn qkv_rows(total: usize, width: usize, q: &[f32], kv: &[f32]) -> Vec<f32> {
    (0..total * 3 * width)
        .map(|i| {
            let (t, c) = (i / (3 * width), i % (3 * width));
            match c < 2 * width {
                true => q[(t * 2 * width + c) % q.len()] * 0.3,
                false => kv[(t * width + c) % kv.len()],
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(common::proptest_config(48, "tests/modern.proptest-regressions"))]

    #[test]
    fn windowed_attention_matches_masked_reference(
        lens in prop::collection::vec(1usize..200, 1..4),
        window in 0usize..40,
        heads in 1usize..4,
        head_dim in 1usize..20,
        threads in 1usize..4,
        q in values(4000), kv in values(4000),
    ) {
        let offsets = offsets_of(&lens);
        let (total, width) = (*offsets.last().unwrap(), heads * head_dim);
        let qkv = qkv_rows(total, width, &q, &kv);
        let want = reference::windowed_attention(&qkv, &offsets, heads, head_dim, Some(window));
        // A convex combination of values: error within a few ulp of the largest |v|, as the
        // global attention's property test.
        let vmax = kv.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        for &isa in k::Isa::available() {
            let mut context = vec![f32::NAN; total * width];
            with_threads(threads, || k::windowed_attention_forward(isa, Rows::All, &mut context, &qkv, &offsets, heads, head_dim, Some(window)));
            check_close(&context, &want, |_| 1e-5 * (1.0 + vmax), isa.name());
            // Each sequence's first query alone: bit for bit the full pass's.
            let mut first = vec![f32::NAN; lens.len() * width];
            with_threads(threads, || k::windowed_attention_forward(isa, Rows::FirstOfEachSequence, &mut first, &qkv, &offsets, heads, head_dim, Some(window)));
            for (s, row) in first.chunks_exact(width).enumerate() {
                let t0 = offsets[s];
                prop_assert!(row == &context[t0 * width..(t0 + 1) * width], "{}: first query of sequence {s} differs", isa.name());
            }
        }
    }

    #[test]
    fn rotary_matches_definition(
        lens in prop::collection::vec(1usize..300, 1..4),
        heads in 1usize..4,
        half in 1usize..12,
        theta in prop::sample::select(vec![10_000.0f32, 160_000.0, 500.0]),
        threads in 1usize..4,
        x in values(5000),
    ) {
        let head_dim = 2 * half;
        let offsets = offsets_of(&lens);
        let (total, width) = (*offsets.last().unwrap(), heads * head_dim);
        let qkv: Vec<f32> = (0..total * 3 * width).map(|i| x[i % x.len()]).collect();
        let want = reference::rotary(&qkv, &offsets, heads, head_dim, theta as f64);
        let mut table = k::RotaryTable::new(theta, head_dim);
        table.ensure(*lens.iter().max().unwrap());
        let mut got = qkv.clone();
        with_threads(threads, || k::apply_rotary(&mut got, &offsets, heads, head_dim, &table));
        // The angle p·inv_freq is rounded to f32 (as transformers rounds it): off by up to
        // p·ε·(|inv_freq| + rounding of inv_freq itself), which moves each output by that times
        // the pair's magnitude; then a product and a sum, each rounding once.
        let e = f32::EPSILON as f64;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let (t, c) = (i / (3 * width), i % (3 * width));
            let s = offsets.partition_point(|&o| o <= t) - 1;
            let p = (t - offsets[s]) as f64;
            let (h0, j) = (c - c % head_dim, c % head_dim % half);
            let pair = (qkv[t * 3 * width + h0 + j] as f64).abs() + (qkv[t * 3 * width + h0 + j + half] as f64).abs();
            let tolerance = (2.0 * p * e + 4.0 * e) * pair + 1e-30;
            prop_assert!((g as f64 - w).abs() <= tolerance, "rotary[{i}] (position {p}): got {g}, want {w}");
        }
        // The values are not rotated.
        for t in 0..total {
            let v = &got[t * 3 * width + 2 * width..(t + 1) * 3 * width];
            prop_assert!(v == &qkv[t * 3 * width + 2 * width..(t + 1) * 3 * width]);
        }
    }

    #[test]
    fn geglu_matches_reference(rows in 1usize..30, f in 1usize..300, threads in 1usize..4, x in values(9000)) {
        let x: Vec<f32> = (0..rows * 2 * f).map(|i| x[i % x.len()]).collect();
        let want = reference::geglu(&x, f);
        for &isa in k::Isa::available() {
            let mut out = vec![f32::NAN; rows * f];
            with_threads(threads, || k::geglu(isa, &mut out, &x, rows, f));
            // GELU's documented 3e-7·(1 + |x|) (activation test), times |gate|, and the product's rounding.
            check_close(&out, &want, |i| {
                let (r, j) = (i / f, i % f);
                let (a, g) = (x[r * 2 * f + j] as f64, x[r * 2 * f + f + j] as f64);
                3e-7 * (1.0 + a.abs()) * g.abs() + f32::EPSILON as f64 * want[i].abs() + 1e-30
            }, isa.name());
        }
    }

    #[test]
    fn pre_norm_add_then_norm_matches_reference(rows in 1usize..40, cols in 1usize..200, threads in 1usize..4, x in values(8000), w in values(200), b in values(200), bias in any::<bool>()) {
        let stream: Vec<f32> = x[..rows * cols].to_vec();
        let addend: Vec<f32> = x[..rows * cols].iter().rev().copied().collect();
        let sum: Vec<f32> = stream.iter().zip(&addend).map(|(a, r)| a + r).collect();
        // No bias is a zero bias in the reference.
        let b: Vec<f32> = match bias { true => b[..cols].to_vec(), false => vec![0.0; cols] };
        let want = reference::layer_norm(&sum, &w, &b, cols, 1e-5);
        let tolerance = layer_norm_tolerance(&sum, &w, &b, &want, cols, 1e-5);
        for &isa in k::Isa::available() {
            let (mut residual, mut out) = (stream.clone(), addend.clone());
            let bias = bias.then_some(&b[..]);
            with_threads(threads, || k::add_then_layer_norm(isa, &mut residual, &mut out, &w, bias, rows, cols, 1e-5, None));
            // The stream is the plain sum (one f32 addition, as PyTorch's `hidden + output`).
            prop_assert!(residual == sum, "{}: the residual stream is not the sum", isa.name());
            check_close(&out, &want, |i| tolerance[i], isa.name());
            // Without a bias: bit for bit LayerNorm with a zero bias, in place.
            if bias.is_none() {
                let mut in_place = sum.clone();
                k::add_layer_norm(isa, &mut in_place, None, &w, Some(&b), rows, cols, 1e-5, None);
                prop_assert!(in_place == out, "{}: bias-free LayerNorm differs from a zero bias", isa.name());
            }
        }
    }
}

/// Hand-computed: at position 1 with θ = 1 every angle is 1 radian, so (1, 0) becomes
/// (cos 1, sin 1); position 0 is left as it is.
#[test]
fn rotary_hand_computed() {
    let (heads, d) = (1, 2);
    // Two tokens of one sequence; each row is q (1, 0) | k (0, 1) | v (5, 6).
    let mut qkv = vec![1.0, 0.0, 0.0, 1.0, 5.0, 6.0, 1.0, 0.0, 0.0, 1.0, 5.0, 6.0];
    let mut table = k::RotaryTable::new(1.0, d);
    table.ensure(2);
    k::apply_rotary(&mut qkv, &[0, 2], heads, d, &table);
    let (c, s) = (1f32.cos(), 1f32.sin());
    assert_eq!(&qkv[..6], &[1.0, 0.0, 0.0, 1.0, 5.0, 6.0]);
    assert_eq!(&qkv[6..], &[c, s, -s, c, 5.0, 6.0]);
}

/// Hand-computed: with a window of 0 each token attends to itself alone, so its context is
/// its own value, whatever the scores.
#[test]
fn window_zero_is_each_tokens_own_value() {
    let (heads, d, t) = (1, 3, 70);
    let qkv: Vec<f32> = (0..t * 3 * d)
        .map(|i| ((i * 7919) % 23) as f32 - 11.0)
        .collect();
    let mut context = vec![f32::NAN; t * d];
    k::windowed_attention_forward(
        k::Isa::selected(),
        Rows::All,
        &mut context,
        &qkv,
        &[0, t],
        heads,
        d,
        Some(0),
    );
    for i in 0..t {
        assert_eq!(
            &context[i * d..(i + 1) * d],
            &qkv[i * 3 * d + 2 * d..(i + 1) * 3 * d]
        );
    }
}
