//! Every kernel against its naive f64 twin in `densa_kernels::reference`, on random shapes
//! (odd sizes included) and edge values, at several thread counts.

use densa_kernels::attention::Rows;
use densa_kernels::{self as k, reference};
mod common;

use common::{check_close, layer_norm_tolerance, linear_case, values, with_threads};
use proptest::prelude::*;

/// The case CI once failed on, kept: the fused add & norm on rows of two almost equal
/// columns (x + x reversed makes rows symmetric), weights up to ±40. Against the old fixed
/// tolerance, 1e-5·(1 + |y|), the scalar path was off by up to 143 times it; the derived
/// bound holds. The values come from this xorshift generator with a fixed seed (found by a
/// search over 200,000 seeds of it), drawn like `values()` below.
#[test]
fn layer_norm_regression_nearly_constant_rows() {
    struct Xorshift(u64);
    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
        fn value(&mut self) -> f32 {
            match self.next() % 7 {
                0..=3 => self.unit() * 6.0 - 3.0,
                4 => 0.0,
                5 => self.unit() * 80.0 - 40.0,
                _ => ((self.next() % 8) as i32 - 4) as f32,
            }
        }
    }
    let mut rng = Xorshift(124_438u64.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let rows = 1 + (rng.next() % 39) as usize;
    let cols = 1 + (rng.next() % 199) as usize;
    assert_eq!(
        (rows, cols),
        (34, 2),
        "the generator draws the recorded case"
    );
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.value()).collect();
    let w: Vec<f32> = (0..cols).map(|_| rng.value()).collect();
    let b: Vec<f32> = (0..cols).map(|_| rng.value()).collect();
    let residual: Vec<f32> = x.iter().rev().copied().collect();
    let sum: Vec<f32> = x.iter().zip(&residual).map(|(a, r)| a + r).collect();
    let want = reference::layer_norm(&sum, &w, &b, cols, 1e-12);
    let tolerance = layer_norm_tolerance(&sum, &w, &b, &want, cols, 1e-12);
    let normalise = |isa| {
        let mut y = x.clone();
        k::add_layer_norm(
            isa,
            &mut y,
            Some(&residual),
            &w,
            Some(&b),
            rows,
            cols,
            1e-12,
            None,
        );
        y
    };
    for &isa in k::Isa::available() {
        check_close(&normalise(isa), &want, |i| tolerance[i], isa.name());
    }
    // The old tolerance fails this case on the scalar path (the case is the right one).
    let scalar = normalise(k::Isa::Scalar);
    let worst = scalar
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (g as f64 - w).abs() / (1e-5 * (1.0 + w.abs())))
        .fold(0.0, f64::max);
    assert!(worst > 1.0, "old tolerance ratio {worst}");
}

proptest! {
    #![proptest_config(common::proptest_config(48, "tests/properties.proptest-regressions"))]

    #[test]
    fn linear_matches_reference(
        with_bias in any::<bool>(),
        (m, kk, n, inp, weight, bias) in linear_case(1usize..70, 1usize..90, 1usize..150),
        threads in 1usize..4,
    ) {
        let bias = with_bias.then_some(&bias[..]);
        let mut out = vec![f32::NAN; m * n];
        with_threads(threads, || k::linear_forward(&mut out, &inp, &weight, bias, m, kk, n));
        let want = reference::linear(&inp, &weight, bias, (m, kk, n));
        // f32 accumulation: error bounded by K · ε · Σ|a·b| (+ the bias' rounding).
        let magnitude: Vec<f64> = (0..m * n).map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..kk).map(|p| (inp[i * kk + p] as f64 * weight[j * kk + p] as f64).abs()).sum::<f64>() + bias.map_or(0.0, |b| b[j].abs() as f64)
        }).collect();
        check_close(&out, &want, |i| (kk as f64 + 2.0) * f32::EPSILON as f64 * magnitude[i] + 1e-30, "linear");
    }

    #[test]
    fn packed_linear_matches_reference_on_every_isa(
        (m, kk, n, inp, weight, bias) in (1usize..300, 1usize..600, 1usize..100)
            .prop_flat_map(|(m, k, n)| (Just(m), Just(k), Just(n), values(m * k), values(n * k), values(n))),
        threads in 1usize..4,
        activation in prop_oneof![Just(k::Activation::None), Just(k::Activation::GeluErf), Just(k::Activation::GeluTanh)],
        with_bias in any::<bool>(),
    ) {
        let bias = with_bias.then_some(&bias[..]);
        let product = reference::linear(&inp, &weight, bias, (m, kk, n));
        let magnitude: Vec<f64> = (0..m * n).map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..kk).map(|p| (inp[i * kk + p] as f64 * weight[j * kk + p] as f64).abs()).sum::<f64>() + bias.map_or(0.0, |b| b[j].abs() as f64)
        }).collect();
        let want: Vec<f64> = product.iter().map(|&v| match activation {
            k::Activation::None => v,
            k::Activation::GeluErf => reference::gelu_erf_f64(v),
            k::Activation::GeluTanh => reference::gelu_tanh_f64(v),
        }).collect();
        for &isa in k::Isa::available() {
            let packed = k::PackedWeight::for_isa(&weight, n, kk, isa);
            let mut out = vec![f32::NAN; m * n];
            let epilogue = k::Epilogue { bias, activation };
            with_threads(threads, || k::linear_packed(&mut out, &inp, &packed, m, epilogue));
            // Product error as for `linear`, the activation's own (≤ 3e-7·(1+|v|)), rounding.
            check_close(&out, &want, |i| (kk as f64 + 4.0) * f32::EPSILON as f64 * magnitude[i] * 1.2 + 1e-6 * (1.0 + want[i].abs()), isa.name());
        }
    }

    #[test]
    fn layer_norm_matches_reference(rows in 1usize..40, cols in 1usize..200, threads in 1usize..4, x in values(8000), w in values(200), b in values(200)) {
        let want = reference::layer_norm(&x[..rows * cols], &w, &b, cols, 1e-12);
        for &isa in k::Isa::available() {
            let mut data = x[..rows * cols].to_vec();
            with_threads(threads, || k::add_layer_norm(isa, &mut data, None, &w, Some(&b), rows, cols, 1e-12, None));
            let tolerance = layer_norm_tolerance(&x[..rows * cols], &w, &b, &want, cols, 1e-12);
            check_close(&data, &want, |i| tolerance[i], isa.name());
            // Fused add & norm: LayerNorm(x + residual), the residual being x reversed.
            let residual: Vec<f32> = x[..rows * cols].iter().rev().copied().collect();
            let sum: Vec<f32> = x[..rows * cols].iter().zip(&residual).map(|(a, r)| a + r).collect();
            let want_sum = reference::layer_norm(&sum, &w, &b, cols, 1e-12);
            let mut fused = x[..rows * cols].to_vec();
            with_threads(threads, || k::add_layer_norm(isa, &mut fused, Some(&residual), &w, Some(&b), rows, cols, 1e-12, None));
            let tolerance = layer_norm_tolerance(&sum, &w, &b, &want_sum, cols, 1e-12);
            check_close(&fused, &want_sum, |i| tolerance[i], isa.name());
        }
    }

    #[test]
    fn activations_match_reference(x in values(3000)) {
        for &isa in k::Isa::available() {
            // Documented bounds (math.rs): GELU 2e-7·(1 + |x|) plus rounding, tanh 3e-7.
            let mut erf = x.clone();
            k::activation::gelu_erf_isa(isa, &mut erf);
            check_close(&erf, &x.iter().map(|&v| reference::gelu_erf(v)).collect::<Vec<_>>(), |i| 3e-7 * (1.0 + x[i].abs() as f64), isa.name());
            let mut tanh_form = x.clone();
            k::activation::gelu_tanh_isa(isa, &mut tanh_form);
            check_close(&tanh_form, &x.iter().map(|&v| reference::gelu_tanh(v)).collect::<Vec<_>>(), |i| 3e-7 * (1.0 + x[i].abs() as f64), isa.name());
            let mut t = x.clone();
            k::activation::tanh_isa(isa, &mut t);
            check_close(&t, &x.iter().map(|&v| (v as f64).tanh()).collect::<Vec<_>>(), |_| 3e-7, isa.name());
        }
    }

    #[test]
    fn exp_and_erf_within_documented_bounds(x in prop::collection::vec(-87.0f32..88.0, 1..500), y in prop::collection::vec(-6.0f32..6.0, 1..500)) {
        for &v in &x {
            let (got, want) = (k::math::exp(v) as f64, (v as f64).exp());
            // 4 ulp of the f32 binade holding the exact value: 2.4e-7 relative at the top of
            // a binade, 4.8e-7 at its bottom (exp(16.289354): 2.98 ulp, 2.5e-7 relative, kept
            // in the regressions file).
            let ulp = 2f64.powi(want.log2().floor() as i32 - 23);
            prop_assert!((got - want).abs() <= 4.0 * ulp, "exp({v}) = {got}, want {want}");
        }
        for &v in &y {
            let (got, want) = (k::math::erf(v) as f64, libm::erf(v as f64));
            prop_assert!((got - want).abs() <= 4e-7, "erf({v}) = {got}, want {want}");
        }
    }

    #[test]
    fn softmax_matches_reference(rows in 1usize..20, cols in 1usize..300, x in values(6000)) {
        let want = reference::softmax_rows(&x[..rows * cols], cols);
        for &isa in k::Isa::available() {
            let mut data = x[..rows * cols].to_vec();
            k::softmax::softmax_rows_isa(isa, &mut data, rows, cols);
            check_close(&data, &want, |i| 2e-6 * want[i] + 1e-9, isa.name());
        }
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
        // Scale inputs down so scores stay in a realistic range; rows are [q | k | v].
        let qkv: Vec<f32> = (0..total * 3 * width).map(|i| {
            let (t, c) = (i / (3 * width), i % (3 * width));
            if c < 2 * width { q[(t * 2 * width + c) % q.len()] * 0.3 } else { kv[(t * width + c) % kv.len()] }
        }).collect();
        let want = reference::attention(&qkv, &offsets, heads, head_dim);
        let vmax = kv.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        for &isa in k::Isa::available() {
            let mut context = vec![f32::NAN; total * width];
            with_threads(threads, || k::attention_forward(isa, Rows::All, &mut context, &qkv, &offsets, heads, head_dim));
            check_close(&context, &want, |_| 1e-5 * (1.0 + vmax), isa.name());
            // Each sequence's first query alone: the reference's first rows, and bit for bit
            // the full pass's (what the pooling-aware last layer relies on).
            let mut first = vec![f32::NAN; lens.len() * width];
            with_threads(threads, || k::attention_forward(isa, Rows::FirstOfEachSequence, &mut first, &qkv, &offsets, heads, head_dim));
            for (s, row) in first.chunks_exact(width).enumerate() {
                let t0 = offsets[s];
                check_close(row, &want[t0 * width..(t0 + 1) * width], |_| 1e-5 * (1.0 + vmax), isa.name());
                prop_assert!(row == &context[t0 * width..(t0 + 1) * width], "{}: first query of sequence {s} differs from the full pass", isa.name());
            }
        }
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
    assert!(
        (one[0] as f64 - 0.841_344_746_068_542_9).abs() < 2.0 * f32::EPSILON as f64,
        "{}",
        one[0]
    );
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
    k::layer_norm(&mut x, &[2.0; 4], Some(&[1.0; 4]), 1, 4, 0.0);
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

/// NaN and ±Inf pass through every elementwise kernel as torch passes them (a NaN weight
/// loaded with `allow_non_finite` must show in the vectors, not turn into a plausible ±1).
#[test]
fn non_finite_values_propagate_on_every_isa() {
    for &isa in k::Isa::available() {
        let input = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5];
        let mut t = input;
        k::activation::tanh_isa(isa, &mut t);
        assert!(t[0].is_nan(), "{isa:?} tanh(NaN) = {}", t[0]);
        // Saturated to ±1 within the documented 3e-7.
        assert!(
            (t[1] - 1.0).abs() < 3e-7 && (t[2] + 1.0).abs() < 3e-7,
            "{isa:?} tanh(±inf) = {t:?}"
        );
        let mut g = input;
        k::activation::gelu_erf_isa(isa, &mut g);
        assert!(g[0].is_nan(), "{isa:?} gelu_erf(NaN) = {}", g[0]);
        assert_eq!(g[1], f32::INFINITY, "{isa:?} gelu_erf(inf)");
        let mut g = input;
        k::activation::gelu_tanh_isa(isa, &mut g);
        assert!(g[0].is_nan(), "{isa:?} gelu_tanh(NaN) = {}", g[0]);
        // A NaN in a softmax row makes the row NaN (torch gives NaN for the whole row).
        let mut row = [1.0f32, f32::NAN, 2.0];
        k::softmax::softmax_rows_isa(isa, &mut row, 1, 3);
        assert!(row.iter().all(|v| v.is_nan()), "{isa:?} softmax {row:?}");
    }
}

/// Every kernel entry point checks its slices against the shape it is given, in release
/// builds too: a wrong caller gets a panic that says what was wrong, never an out-of-bounds
/// access.
#[test]
fn kernel_entry_points_reject_wrong_shapes() {
    fn message_of(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let payload = std::panic::catch_unwind(f).expect_err("the call must panic");
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }
    // Two heads of 4 over a context of two tokens.
    fn attend(qkv: &[f32], offsets: &[usize]) {
        let mut context = vec![0.0; 2 * 8];
        let all = Rows::All;
        k::attention_forward(k::Isa::selected(), all, &mut context, qkv, offsets, 2, 4);
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let cases: Vec<(&str, String)> = vec![
        (
            "weight has",
            message_of(|| {
                let mut out = vec![0.0; 4];
                k::linear_forward(&mut out, &[1.0; 4], &[1.0; 3], None, 2, 2, 2);
            }),
        ),
        (
            "input has",
            message_of(|| {
                let w = k::PackedWeight::new(&[1.0; 6], 2, 3);
                let mut out = vec![0.0; 4];
                k::linear_packed(&mut out, &[1.0; 5], &w, 2, k::Epilogue::NONE);
            }),
        ),
        (
            "output has",
            message_of(|| {
                let w = k::QuantizedWeight::new(&[1.0; 6], 2, 3);
                let mut out = vec![0.0; 3];
                let mut s = k::Int8Scratch::default();
                k::linear_int8(&mut out, &[1.0; 6], &w, 2, k::Epilogue::NONE, &mut s);
            }),
        ),
        ("qkv has", message_of(|| attend(&[0.0; 40], &[0, 2]))),
        (
            "offsets must not decrease",
            message_of(|| attend(&[0.0; 48], &[0, 2, 1])),
        ),
        (
            "residual has",
            message_of(|| {
                let mut x = vec![0.0; 8];
                k::add_layer_norm(
                    k::Isa::selected(),
                    &mut x,
                    Some(&[0.0; 7]),
                    &[1.0; 4],
                    Some(&[0.0; 4]),
                    2,
                    4,
                    1e-5,
                    None,
                );
            }),
        ),
        (
            "weight/bias shorter",
            message_of(|| {
                let mut x = vec![0.0; 8];
                k::layer_norm(&mut x, &[1.0; 3], Some(&[0.0; 4]), 2, 4, 1e-5);
            }),
        ),
        (
            "softmax: buffer has",
            message_of(|| {
                let mut x = vec![0.0; 5];
                k::softmax_rows(&mut x, 2, 3);
            }),
        ),
    ];
    std::panic::set_hook(hook);
    for (needle, message) in cases {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}
