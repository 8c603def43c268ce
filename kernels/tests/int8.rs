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
            k::add_layer_norm(isa_f32, &mut normed, Some(&residual), &gamma, Some(&beta), m, kk, 1e-5, None);
            let mut want = vec![0.0; m * n];
            k::linear_int8(&mut want, &normed, &packed, m, epilogue, &mut k::Int8Scratch::default());
            // Fused.
            let mut fused = x.clone();
            let mut quantized = k::Int8Scratch::default();
            k::add_layer_norm(isa_f32, &mut fused, Some(&residual), &gamma, Some(&beta), m, kk, 1e-5, Some(&mut quantized));
            prop_assert!(fused == normed, "{}: the normalised rows differ", isa.name());
            let mut got = vec![f32::NAN; m * n];
            k::linear_int8_quantized(&mut got, &packed, m, epilogue, &quantized);
            prop_assert!(got == want, "{}: fused quantization differs", isa.name());
            // Without a residual (the embeddings' LayerNorm): layer_norm, then the layer.
            let mut normed = x.clone();
            k::layer_norm(&mut normed, &gamma, Some(&beta), m, kk, 1e-5);
            k::linear_int8(&mut want, &normed, &packed, m, epilogue, &mut k::Int8Scratch::default());
            let mut fused = x.clone();
            k::add_layer_norm(isa_f32, &mut fused, None, &gamma, Some(&beta), m, kk, 1e-5, Some(&mut quantized));
            prop_assert!(fused == normed, "{}: the normalised rows differ (no residual)", isa.name());
            k::linear_int8_quantized(&mut got, &packed, m, epilogue, &quantized);
            prop_assert!(got == want, "{}: fused quantization differs (no residual)", isa.name());
            // Pre-norm (ModernBERT, no bias): the stream takes x in, x becomes its LayerNorm and
            // is quantized as it is written; unfused: add, normalise, then the layer.
            let sum: Vec<f32> = x.iter().zip(&residual).map(|(a, b)| a + b).collect();
            let mut normed = sum.clone();
            k::layer_norm(&mut normed, &gamma, None, m, kk, 1e-5);
            k::linear_int8(&mut want, &normed, &packed, m, epilogue, &mut k::Int8Scratch::default());
            let (mut stream, mut fused) = (residual.clone(), x.clone());
            k::add_then_layer_norm(isa_f32, &mut stream, &mut fused, &gamma, None, m, kk, 1e-5, Some(&mut quantized));
            prop_assert!(stream == sum && fused == normed, "{}: pre-norm rows differ", isa.name());
            k::linear_int8_quantized(&mut got, &packed, m, epilogue, &quantized);
            prop_assert!(got == want, "{}: fused quantization differs (pre-norm)", isa.name());
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

/// Packs `q (n, k)` into the panel layout from its definition (kernels/src/int8/panels.rs):
/// `panels[p][g][j][t] = q[16·p + j, 4·g + t]`, `P = 2·ceil(n / 32)`, `K_pad` = k rounded up
/// to 64, zeros elsewhere.
fn pack_panels_twin(q: &[i8], n: usize, kk: usize) -> Vec<u8> {
    let (panels, k_pad) = (n.div_ceil(32) * 2, kk.div_ceil(64) * 64);
    let mut out = vec![0u8; panels * k_pad * 16];
    for column in 0..n {
        for input in 0..kk {
            let (p, j, g, t) = (column / 16, column % 16, input / 4, input % 4);
            out[p * k_pad * 16 + g * 64 + j * 4 + t] = q[column * kk + input] as u8;
        }
    }
    out
}

fn shared(bytes: Vec<u8>) -> k::memory::SharedBytes {
    let len = bytes.len();
    k::memory::SharedBytes::new(std::sync::Arc::new(bytes), 0, len).unwrap()
}

proptest! {
    #![proptest_config(common::proptest_config(40, "tests/int8.proptest-regressions"))]

    /// A weight stored in the panel layout (as `densa quantize` writes it) is used in place:
    /// its values unpack to the quantized rows, its layout is the definition's, and the layer
    /// gives the same bits as the weight packed at load.
    #[test]
    fn stored_panels_equal_the_weight_packed_at_load(
        (m, kk, n, inp, weight, bias) in linear_case(1usize..12, 1usize..200, 1usize..70),
    ) {
        let packed = QuantizedWeight::new(&weight, n, kk);
        let q = packed.rows();
        let want_q: Vec<i8> = (0..n)
            .flat_map(|j| quantize_weight_twin(&weight[j * kk..(j + 1) * kk]).0)
            .map(|v| v as i8)
            .collect();
        prop_assert_eq!(&q, &want_q);
        let bytes = pack_panels_twin(&q, n, kk);
        let panel_bytes: Vec<u8> = packed.panels().iter().map(|&v| v as u8).collect();
        prop_assert_eq!(&panel_bytes, &bytes);
        prop_assert_eq!(int8::packed_shape(n, kk).iter().product::<usize>(), bytes.len());

        let stored = QuantizedWeight::from_panels(shared(bytes), packed.scales().to_vec(), n, kk).unwrap();
        prop_assert!(stored.is_borrowed() && !packed.is_borrowed());
        prop_assert_eq!(stored.rows(), q);
        let epilogue = Epilogue { bias: Some(&bias), ..Epilogue::NONE };
        let run = |w: &QuantizedWeight| {
            let mut out = vec![f32::NAN; m * n];
            k::linear_int8(&mut out, &inp, w, m, epilogue, &mut k::Int8Scratch::default());
            out
        };
        let (a, b) = (run(&packed), run(&stored));
        prop_assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn damaged_panels_are_refused() {
    // n = 17 outputs, k = 70 inputs: two panels (columns 17..32 are padding) and inputs
    // 70..128 padded.
    let (n, kk) = (17, 70);
    let q: Vec<i8> = (0..n * kk).map(|i| ((i * 7) % 127) as i8 - 63).collect();
    let good = pack_panels_twin(&q, n, kk);
    let scales = vec![0.5f32; n];
    let ok = QuantizedWeight::from_panels(shared(good.clone()), scales.clone(), n, kk).unwrap();
    assert_eq!(ok.rows(), q);

    let refuse = |bytes: Vec<u8>, scales: Vec<f32>| {
        QuantizedWeight::from_panels(shared(bytes), scales, n, kk)
            .err()
            .expect("refused")
    };
    // Too short by one byte.
    let mut short = good.clone();
    short.pop();
    assert!(matches!(
        refuse(short, scales.clone()),
        int8::PanelError::Length { .. }
    ));
    // One scale missing.
    assert!(matches!(
        refuse(good.clone(), vec![0.5; n - 1]),
        int8::PanelError::Scales {
            expected: 17,
            found: 16
        }
    ));
    // 64 at output 3, input 5 (panel 0, group 1, lane 3·4 + 1).
    let mut big = good.clone();
    big[64 + 3 * 4 + 1] = 64;
    assert_eq!(
        refuse(big, scales.clone()),
        int8::PanelError::OutOfRange {
            column: 3,
            k: 5,
            value: 64
        }
    );
    // -128 in the same place.
    let mut low = good.clone();
    low[64 + 3 * 4 + 1] = (-128i8) as u8;
    assert_eq!(
        refuse(low, scales.clone()),
        int8::PanelError::OutOfRange {
            column: 3,
            k: 5,
            value: -128
        }
    );
    // A padding input of a real column: output 2, input 71 (group 17, lane 2·4 + 3).
    let mut padded_input = good.clone();
    padded_input[17 * 64 + 2 * 4 + 3] = 1;
    assert_eq!(
        refuse(padded_input, scales.clone()),
        int8::PanelError::Padding { column: 2, k: 71 }
    );
    // A padding column: output 20 (panel 1, column 4), input 0.
    let mut padded_column = good.clone();
    padded_column[128 * 16 + 4 * 4] = 1;
    assert_eq!(
        refuse(padded_column, scales),
        int8::PanelError::Padding { column: 20, k: 0 }
    );
}
