//! Every kernel against its naive f64 twin in `densa_kernels::reference`, on random shapes
//! (odd sizes included) and edge values, at several thread counts.

use densa_kernels::{self as k, reference};
use proptest::prelude::*;

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Values of mixed magnitude, with zeros and exact small integers among them.
fn values(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![4 => -3.0f32..3.0, 1 => Just(0.0f32), 1 => -40.0f32..40.0, 1 => (-4i8..4).prop_map(|v| v as f32)],
        len,
    )
}

fn check_close(got: &[f32], want: &[f64], tolerance: impl Fn(usize) -> f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tolerance(i),
            "{what}[{i}]: got {g}, want {w}, error {err:e} > {:e}",
            tolerance(i)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn linear_matches_reference(
        (m, kk, n, inp, weight, bias) in (1usize..70, 1usize..90, 1usize..150)
            .prop_flat_map(|(m, k, n)| (Just(m), Just(k), Just(n), values(m * k), values(n * k), values(n))),
        threads in 1usize..4,
        with_bias in any::<bool>(),
    ) {
        let bias = with_bias.then_some(&bias[..]);
        let mut out = vec![f32::NAN; m * n];
        with_threads(threads, || k::linear_forward(&mut out, &inp, &weight, bias, m, kk, n));
        let want = reference::linear(&inp, &weight, bias, m, kk, n);
        // f32 accumulation: error bounded by K · ε · Σ|a·b| (+ the bias' rounding).
        let magnitude: Vec<f64> = (0..m * n).map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..kk).map(|p| (inp[i * kk + p] as f64 * weight[j * kk + p] as f64).abs()).sum::<f64>() + bias.map_or(0.0, |b| b[j].abs() as f64)
        }).collect();
        check_close(&out, &want, |i| (kk as f64 + 2.0) * f32::EPSILON as f64 * magnitude[i] + 1e-30, "linear");
    }

    #[test]
    fn layer_norm_matches_reference(rows in 1usize..40, cols in 1usize..200, threads in 1usize..4, x in values(8000), w in values(200), b in values(200)) {
        let mut data = x[..rows * cols].to_vec();
        let want = reference::layer_norm(&data, &w, &b, cols, 1e-12);
        with_threads(threads, || k::layer_norm(&mut data, &w, &b, rows, cols, 1e-12));
        check_close(&data, &want, |i| 1e-5 * (1.0 + want[i].abs()), "layer_norm");
    }

    #[test]
    fn activations_match_reference(x in values(3000)) {
        let mut erf = x.clone();
        k::gelu_erf(&mut erf);
        check_close(&erf, &x.iter().map(|&v| reference::gelu_erf(v)).collect::<Vec<_>>(), |_| 1e-6, "gelu_erf");
        let mut tanh_form = x.clone();
        k::gelu_tanh(&mut tanh_form);
        check_close(&tanh_form, &x.iter().map(|&v| reference::gelu_tanh(v)).collect::<Vec<_>>(), |i| 1e-6 * (1.0 + x[i].abs() as f64), "gelu_tanh");
        let mut t = x.clone();
        k::tanh(&mut t);
        check_close(&t, &x.iter().map(|&v| (v as f64).tanh()).collect::<Vec<_>>(), |_| 1e-7, "tanh");
    }

    #[test]
    fn softmax_matches_reference(rows in 1usize..20, cols in 1usize..300, x in values(6000)) {
        let mut data = x[..rows * cols].to_vec();
        let want = reference::softmax_rows(&data, cols);
        k::softmax_rows(&mut data, rows, cols);
        check_close(&data, &want, |i| 1e-6 * want[i].max(1e-3) * 10.0, "softmax");
    }

    #[test]
    fn attention_matches_reference(
        lens in prop::collection::vec(1usize..40, 1..5),
        heads in 1usize..5,
        head_dim in 1usize..20,
        threads in 1usize..4,
        q in values(160 * 100), kv in values(160 * 100),
    ) {
        let mut offsets = vec![0];
        for l in &lens { offsets.push(offsets.last().unwrap() + l); }
        let total = *offsets.last().unwrap();
        let width = heads * head_dim;
        // Scale inputs down so scores stay in a realistic range.
        let query: Vec<f32> = q[..total * width].iter().map(|v| v * 0.3).collect();
        let key: Vec<f32> = kv[..total * width].iter().map(|v| v * 0.3).collect();
        let value: Vec<f32> = kv[kv.len() - total * width..].to_vec();
        let mut context = vec![f32::NAN; total * width];
        with_threads(threads, || k::attention_forward(&mut context, &query, &key, &value, &offsets, heads, head_dim));
        let want = reference::attention(&query, &key, &value, &offsets, heads, head_dim);
        let vmax = value.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        check_close(&context, &want, |_| 1e-4 * (1.0 + vmax), "attention");
    }
}

#[test]
fn gelu_edge_values() {
    let mut x = vec![
        0.0f32,
        -0.0,
        1e-30,
        -1e-30,
        10.0,
        -10.0,
        40.0,
        -40.0,
        f32::MAX,
        f32::MIN,
    ];
    k::gelu_erf(&mut x);
    // Hand-computed: gelu(0) = 0; gelu(10) = 10; gelu(-10) ≈ -7.6e-23; large |x| saturates.
    assert_eq!(x[0], 0.0);
    assert_eq!(x[4], 10.0);
    assert!(x[5].abs() < 1e-20 && x[7] == 0.0);
    assert_eq!(x[6], 40.0);
    assert_eq!(x[8], f32::MAX);
    assert!(x[9] == 0.0 || (!x[9].is_nan() && x[9].abs() < 1.0));
    // gelu(1) = 0.5 · (1 + erf(1/√2)) = 0.8413447460685429...
    let mut one = [1.0f32];
    k::gelu_erf(&mut one);
    assert_eq!(one[0], 0.841_344_746_068_542_9_f64 as f32);
}

#[test]
fn softmax_hand_computed() {
    // softmax([0, ln 3]) = [1/4, 3/4]; softmax([1000, 1001]) = [1/(1+e), e/(1+e)] without
    // overflowing exp.
    let e = std::f32::consts::E;
    let mut x = [0.0f32, 3.0f32.ln(), 1000.0, 1001.0];
    k::softmax_rows(&mut x, 2, 2);
    for (got, want) in x.iter().zip([0.25, 0.75, 1.0 / (1.0 + e), e / (1.0 + e)]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn layer_norm_hand_computed() {
    // [1, 2, 3, 4]: mean 2.5, variance 1.25 → (x - 2.5) / √1.25, then · 2 + 1.
    let mut x = [1.0f32, 2.0, 3.0, 4.0];
    k::layer_norm(&mut x, &[2.0; 4], &[1.0; 4], 1, 4, 0.0);
    let s = 1.25f64.sqrt();
    for (got, v) in x.iter().zip([1.0f64, 2.0, 3.0, 4.0]) {
        assert!((*got as f64 - ((v - 2.5) / s * 2.0 + 1.0)).abs() < 1e-6);
    }
}

#[test]
#[should_panic(expected = "linear: weight has")]
fn linear_rejects_short_slices() {
    let mut out = vec![0.0; 4];
    k::linear_forward(&mut out, &[1.0; 4], &[1.0; 3], None, 2, 2, 2);
}
