//! Helpers shared by the kernel tests.

/// Runs `f` on a rayon pool of `threads` threads.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// proptest's configuration for these tests: `cases` cases (the `PROPTEST_CASES` variable
/// overrides it, for a long run), and every failing case found saved in `regressions` (a path
/// from the crate's folder, committed) and replayed before any new case on every run.
pub fn proptest_config(cases: u32, regressions: &'static str) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(regressions),
        )),
        ..proptest::test_runner::Config::with_cases(cases)
    }
}

/// Values of mixed magnitude for the property tests: mostly small, with zeros, large values
/// and exact small integers among them.
pub fn values(len: usize) -> impl proptest::strategy::Strategy<Value = Vec<f32>> {
    use proptest::prelude::*;
    prop::collection::vec(
        prop_oneof![4 => -3.0f32..3.0, 1 => Just(0.0f32), 1 => -40.0f32..40.0, 1 => (-4i8..4).prop_map(|v| v as f32)],
        len,
    )
}

/// A linear layer's case: `(m, k, n, input (m, k), weight (n, k), bias (n))`, each size drawn
/// from its range.
#[allow(dead_code)]
pub fn linear_case(
    m: std::ops::Range<usize>,
    k: std::ops::Range<usize>,
    n: std::ops::Range<usize>,
) -> impl proptest::strategy::Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)>
{
    use proptest::prelude::*;
    (m, k, n).prop_flat_map(|(m, k, n)| {
        (
            Just(m),
            Just(k),
            Just(n),
            values(m * k),
            values(n * k),
            values(n),
        )
    })
}

/// f16 rows of mixed magnitude: finite values, with zeros (both signs), subnormals and the
/// largest finite values among them.
#[allow(dead_code)]
pub fn f16_rows(len: usize) -> impl proptest::strategy::Strategy<Value = Vec<u16>> {
    use proptest::prelude::*;
    let finite = prop_oneof![
        4 => (-3.0f32..3.0).prop_map(|v| half::f16::from_f32(v).to_bits()),
        1 => Just(0x0000u16),
        1 => Just(0x8000u16),
        1 => (1u16..0x0400).prop_map(|m| m | if m % 2 == 0 { 0x8000 } else { 0 }),
        1 => Just(0x7bffu16),
        1 => Just(0xfbffu16),
    ];
    prop::collection::vec(finite, len)
}

/// int8 codes, with both ends and zero among them.
#[allow(dead_code)]
pub fn i8_codes(len: usize) -> impl proptest::strategy::Strategy<Value = Vec<i8>> {
    use proptest::prelude::*;
    prop::collection::vec(
        prop_oneof![4 => any::<i8>(), 1 => Just(i8::MIN), 1 => Just(i8::MAX), 1 => Just(0i8)],
        len,
    )
}

#[allow(dead_code)]
pub fn check_close(got: &[f32], want: &[f64], tolerance: impl Fn(usize) -> f64, what: &str) {
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

/// The error bound of an f32 LayerNorm `y = x̂·w + b`, `x̂ = (x - μ) / √(σ² + eps)`, computed
/// as the kernels do (two passes, 16 partial sums, so each sum's rounding is within
/// `K·ε` of its magnitude, `K = cols/16 + 4`):
/// - μ is off by `K·ε·mean|x|`, which moves `x̂` by that over σ (large when the row is
///   nearly constant: two almost equal columns);
/// - σ² and the reciprocal square root add a relative `(K/2 + 3)·ε` to `x̂`;
/// - scaling by `w` multiplies `x̂`'s error by `|w|`, and the product, the bias and the
///   result each round once more.
///
/// Twice this bound, `2·(|w|·err(x̂) + ε·(|x̂·w| + |b| + |y|))`, held with a margin of 6×
/// on 200,000 random cases of this file's distribution on every ISA of an AVX-512 machine.
#[allow(dead_code)]
pub fn layer_norm_tolerance(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    want: &[f64],
    cols: usize,
    eps: f32,
) -> Vec<f64> {
    let e = f32::EPSILON as f64;
    let k = cols as f64 / 16.0 + 4.0;
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks_exact(cols).enumerate() {
        let n = cols as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let mean_abs = row.iter().map(|&v| (v as f64).abs()).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let sigma = (var + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let x_hat = (v as f64 - mean) / sigma;
            let x_hat_error = e * (k * mean_abs / sigma + (k / 2.0 + 3.0) * x_hat.abs());
            let (wj, bj) = (w[j] as f64, b[j] as f64);
            let y = want[r * cols + j].abs();
            out.push(
                2.0 * (wj.abs() * x_hat_error + e * ((x_hat * wj).abs() + bj.abs() + y)) + 1e-30,
            );
        }
    }
    out
}
