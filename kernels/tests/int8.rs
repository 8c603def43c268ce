//! The int8 linear layer: every integer path equals the scalar twin bit for bit, and the
//! result equals a naive f64 evaluation of the same quantized product.

use densa_kernels::{self as k, int8, Epilogue, Int8Isa, QuantizedWeight};
mod common;

use common::{linear_case, values, with_threads};
use proptest::prelude::*;

/// Weight quantization written from the definition (docs/QUANTIZATION.md), not with the
/// kernels' code: `scale = max|w| / 63` (1 if that is 0), `q = round_ties_even(w · (1 / scale))`
/// in f32, clamped to ±63.
fn quantize_weight_twin(row: &[f32]) -> (Vec<i64>, f32) {
    let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if amax > 0.0 { amax / 63.0 } else { 1.0 };
    let inv = 1.0 / scale;
    let q = row
        .iter()
        .map(|&v| (v * inv).round_ties_even().clamp(-63.0, 63.0) as i64)
        .collect();
    (q, scale)
}

/// Activation quantization from the definition: `[lo, hi]` widened to hold 0 maps onto
/// 0..=255, `zero_point = round(−lo / scale)`; returns `(u − zero_point, scale)`.
fn quantize_activation_twin(row: &[f32]) -> (Vec<i64>, f32) {
    let lo = row.iter().fold(0.0f32, |m, &v| m.min(v));
    let hi = row.iter().fold(0.0f32, |m, &v| m.max(v));
    if hi - lo == 0.0 {
        return (vec![0; row.len()], 1.0);
    }
    let scale = (hi - lo) / 255.0;
    let inv = 1.0 / scale;
    let zero_point = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    let q = row
        .iter()
        .map(|&v| ((v * inv + zero_point).clamp(0.0, 255.0).round_ties_even() - zero_point) as i64)
        .collect();
    (q, scale)
}

/// Naive f64: quantize both sides, sum exactly, dequantize, add bias.
fn reference(inp: &[f32], weight: &[f32], bias: &[f32], m: usize, kk: usize, n: usize) -> Vec<f64> {
    let w: Vec<(Vec<i64>, f32)> = (0..n)
        .map(|j| quantize_weight_twin(&weight[j * kk..(j + 1) * kk]))
        .collect();
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        let (qx, sx) = quantize_activation_twin(&inp[i * kk..(i + 1) * kk]);
        for (j, (qw, sw)) in w.iter().enumerate() {
            let dot: i64 = qx.iter().zip(qw).map(|(&a, &b)| a * b).sum();
            out.push(dot as f64 * (sx as f64 * *sw as f64) + bias[j] as f64);
        }
    }
    out
}

proptest! {
    #![proptest_config(common::proptest_config(40, "tests/int8.proptest-regressions"))]

    /// Every int8 path gives the exact-integer twin's values, and the same bits as each other.
    #[test]
    fn int8_paths_are_exact_and_identical(
        (m, kk, n, inp, weight, bias) in linear_case(1usize..40, 1usize..300, 1usize..80),
        threads in 1usize..4,
    ) {
        let want = reference(&inp, &weight, &bias, m, kk, n);
        let mut first: Option<Vec<f32>> = None;
        for &isa in Int8Isa::available() {
            let packed = QuantizedWeight::for_isa(&weight, n, kk, isa);
            let mut out = vec![f32::NAN; m * n];
            let mut scratch = k::Int8Scratch::default();
            let epilogue = Epilogue { bias: Some(&bias), ..Epilogue::NONE };
            with_threads(threads, || k::linear_int8(&mut out, &inp, &packed, m, epilogue, &mut scratch));
            for (idx, (&g, &w)) in out.iter().zip(&want).enumerate() {
                // Only the final f32 scaling rounds: a few ulp of the magnitude.
                prop_assert!((g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{} [{idx}]: {g} vs {w}", isa.name());
            }
            match &first {
                None => first = Some(out),
                Some(f) => prop_assert!(f == &out, "{} differs from the scalar path", isa.name()),
            }
        }
    }
}

#[test]
fn quantize_rows_hand_computed() {
    // Activations: range [-2.54, 1.0] → scale 3.54 / 255 = 0.013882; zero point
    // round(2.54 / 0.013882) = round(182.97) = 183; 1.0 → 72.03 + 183 → 255;
    // -2.54 → 0; 0.011 → 0.79 + 183 → 184; 0 → 183; padding 183.
    let mut q = [0u8; 6];
    let row = int8::quantize_activation_row(&[1.0, -2.54, 0.011, 0.0], &mut q);
    assert!((row.scale - 3.54 / 255.0).abs() < 1e-7);
    assert_eq!(row.zero_point, 183);
    assert_eq!(q, [255, 0, 184, 183, 183, 183]);
    // All positive: the range is widened to hold 0 (zero point 0).
    let row = int8::quantize_activation_row(&[2.55, 1.0], &mut q[..2]);
    assert_eq!((row.zero_point, &q[..2]), (0, &[255u8, 100][..]));
    // Weights: max |w| = 1.26 → scale 0.02; 0.5 → 25, -1.26 → -63, 0.03 → 1.5 → 2 (ties to
    // even), padding 0.
    let mut w = [9i8; 5];
    let s = int8::quantize_weight_row(&[0.5, -1.26, 0.03], &mut w);
    assert!((s - 0.02).abs() < 1e-7);
    assert_eq!(w, [25, -63, 2, 0, 0]);
    // An all-zero row quantizes to zeros with scale 1.
    let mut z = [5i8; 3];
    assert_eq!(int8::quantize_weight_row(&[0.0; 3], &mut z), 1.0);
    assert_eq!(z, [0, 0, 0]);
}

#[test]
fn out_of_range_stored_weights_are_refused() {
    // A folder from before the 7-bit weights (values up to ±127) cannot be used as it is.
    let q = [0i8, 64, -3, 1];
    assert!(QuantizedWeight::from_quantized(&q, &[1.0, 1.0], 2, 2).is_none());
    assert!(QuantizedWeight::from_quantized(&[63, -63, 0, 1], &[1.0, 1.0], 2, 2).is_some());
}

#[test]
fn saturating_inputs_stay_exact() {
    // Every product at ±127 · ±63 over a long K, activations at both ends of the unsigned
    // range (1 and 255): the worst case for AVX2's 16-bit pair sums.
    let (m, kk, n) = (9, 3072, 33);
    let inp: Vec<f32> = (0..m * kk)
        .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let weight: Vec<f32> = (0..n * kk)
        .map(|i| if i % 5 == 0 { -1.0 } else { 1.0 })
        .collect();
    let bias = vec![0.0; n];
    let want = reference(&inp, &weight, &bias, m, kk, n);
    for &isa in Int8Isa::available() {
        let packed = QuantizedWeight::for_isa(&weight, n, kk, isa);
        let mut out = vec![0.0; m * n];
        k::linear_int8(
            &mut out,
            &inp,
            &packed,
            m,
            Epilogue {
                bias: Some(&bias),
                ..Epilogue::NONE
            },
            &mut Default::default(),
        );
        for (g, w) in out.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{}: {g} vs {w}",
                isa.name()
            );
        }
    }
}

#[test]
fn every_int8_path_this_cpu_has_is_tested() {
    // The tests above loop over `Int8Isa::available()`: make sure that list is what the CPU
    // reports, so a detection slip cannot silently skip a kernel.
    let available = Int8Isa::available();
    assert_eq!(available[0], Int8Isa::Scalar);
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(available.contains(&Int8Isa::Avx2), avx2);
        let vex = avx2 && is_x86_feature_detected!("avxvnni");
        assert_eq!(available.contains(&Int8Isa::AvxVnni), vex);
        let vnni512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512bw");
        assert_eq!(available.contains(&Int8Isa::Avx512Vnni), vnni512);
        // AMX-INT8 from CPUID leaf 7 (EDX bit 25); on Linux the OS grants its use.
        let amx = std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 25) != 0;
        let linux = cfg!(target_os = "linux");
        assert_eq!(available.contains(&Int8Isa::Amx), vnni512 && amx && linux);
    }
}

proptest! {
    #![proptest_config(common::proptest_config(30, "tests/int8.proptest-regressions"))]

    /// LayerNorm that quantizes its output for the next int8 layer gives what the unfused
    /// chain gives: `add_layer_norm` then `linear_int8` (which quantizes by itself).
    #[test]
    fn layer_norm_fused_quantization_equals_the_separate_pass(
        (m, kk, n, x, residual, gamma, weight) in (1usize..40, 1usize..200, 1usize..50)
            .prop_flat_map(|(m, k, n)| (Just(m), Just(k), Just(n), values(m * k), values(m * k), values(k), values(n * k))),
    ) {
        let beta = vec![0.25f32; kk];
        let bias = vec![0.5f32; n];
        // The normalisation's own ISA, as the engine runs it (each is property-tested alone).
        let isa_f32 = k::Isa::selected();
        for &isa in Int8Isa::available() {
            let packed = QuantizedWeight::for_isa(&weight, n, kk, isa);
            let epilogue = Epilogue { bias: Some(&bias), ..Epilogue::NONE };
            // Unfused: normalise, then the linear layer quantizes its input.
            let mut normed = x.clone();
            k::add_layer_norm(isa_f32, &mut normed, Some(&residual), &gamma, &beta, m, kk, 1e-5, None);
            let mut want = vec![0.0; m * n];
            k::linear_int8(&mut want, &normed, &packed, m, epilogue, &mut k::Int8Scratch::default());
            // Fused.
            let mut fused = x.clone();
            let mut quantized = k::Int8Scratch::default();
            k::add_layer_norm(isa_f32, &mut fused, Some(&residual), &gamma, &beta, m, kk, 1e-5, Some(&mut quantized));
            prop_assert!(fused == normed, "{}: the normalised rows differ", isa.name());
            let mut got = vec![f32::NAN; m * n];
            k::linear_int8_quantized(&mut got, &packed, m, epilogue, &quantized);
            prop_assert!(got == want, "{}: fused quantization differs", isa.name());
            // Without a residual (the embeddings' LayerNorm): layer_norm, then the layer.
            let mut normed = x.clone();
            k::layer_norm(&mut normed, &gamma, &beta, m, kk, 1e-5);
            k::linear_int8(&mut want, &normed, &packed, m, epilogue, &mut k::Int8Scratch::default());
            let mut fused = x.clone();
            k::add_layer_norm(isa_f32, &mut fused, None, &gamma, &beta, m, kk, 1e-5, Some(&mut quantized));
            prop_assert!(fused == normed, "{}: the normalised rows differ (no residual)", isa.name());
            k::linear_int8_quantized(&mut got, &packed, m, epilogue, &quantized);
            prop_assert!(got == want, "{}: fused quantization differs (no residual)", isa.name());
        }
    }
}

#[test]
#[should_panic(expected = "activations quantized as")]
fn quantized_activations_of_the_wrong_shape_are_refused() {
    let weight = vec![1.0f32; 8 * 16];
    let packed = QuantizedWeight::new(&weight, 8, 16);
    let mut quantized = k::Int8Scratch::default();
    quantized.quantize(&[1.0; 3 * 12], 3, 12);
    let mut out = vec![0.0; 3 * 8];
    k::linear_int8_quantized(&mut out, &packed, 3, Epilogue::NONE, &quantized);
}

#[test]
fn densa_isa_avx2_selects_the_avx2_int8_path() {
    // `.ci/run` reruns the engine's tests with DENSA_ISA=avx2: they must then run the AVX2
    // vpmaddubsw kernel end to end, not a VNNI one.
    match std::env::var("DENSA_ISA").ok().as_deref() {
        Some("avx2") if Int8Isa::Avx2.is_available() => {
            assert_eq!(Int8Isa::selected(), Int8Isa::Avx2)
        }
        Some("scalar") => assert_eq!(Int8Isa::selected(), Int8Isa::Scalar),
        _ => assert_eq!(Int8Isa::selected(), *Int8Isa::available().last().unwrap()),
    }
}
