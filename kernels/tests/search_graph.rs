//! The graph-search metrics (`search::graph`, handed to USearch) against twins written from
//! their definitions in f64: `1 − a·b` over f32 and binary16 rows (decoded by the `half`
//! crate), `−Σ s_i² · a_i · b_i` over int8 codes, and the Hamming distance counted bit by bit;
//! on every ISA the CPU has and through the pointer wrappers, random widths with odd sizes
//! and edge values.

use densa_kernels::{self as k, search::graph};
#[allow(dead_code)] // not every helper is needed here
mod common;

use common::{f16_rows, i8_codes, values};
use proptest::prelude::*;

/// Within `(terms + 2) · ε · magnitude` of the f64 value (`magnitude`: `1 + Σ |terms|`).
fn close(got: f32, want: f64, terms: usize, magnitude: f64) -> bool {
    let tolerance = (terms as f64 + 2.0) * f32::EPSILON as f64 * magnitude + 1e-30;
    (got as f64 - want).abs() <= tolerance
}

fn scales(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![4 => 1e-4f32..0.05, 1 => Just(0.0f32), 1 => 0.05f32..3.0],
        len,
    )
}

proptest! {
    #![proptest_config(common::proptest_config(64, "tests/search_graph.proptest-regressions"))]

    #[test]
    fn f32_distance_is_one_minus_the_inner_product(
        (a, b) in (0usize..140).prop_flat_map(|d| (values(d), values(d))),
    ) {
        let terms: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).collect();
        let want = 1.0 - terms.iter().sum::<f64>();
        let magnitude = 1.0 + terms.iter().map(|t| t.abs()).sum::<f64>();
        for &isa in k::Isa::available() {
            let mut got = f32::NAN;
            graph::ip_distance_f32_isa(isa, &a, &b, &mut got);
            prop_assert!(close(got, want, a.len(), magnitude), "{isa:?}: {got} vs {want}");
        }
        // SAFETY: both pointers address `a.len()` f32 that outlive the call.
        let metric = unsafe { graph::ip_f32(a.len()) };
        prop_assert!(close(metric(a.as_ptr(), b.as_ptr()), want, a.len(), magnitude));
    }

    #[test]
    fn f16_distance_is_one_minus_the_decoded_inner_product(
        (a, b) in (0usize..140).prop_flat_map(|d| (f16_rows(d), f16_rows(d))),
    ) {
        let decode = |h: u16| half::f16::from_bits(h).to_f64();
        let terms: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| decode(x) * decode(y)).collect();
        let want = 1.0 - terms.iter().sum::<f64>();
        let magnitude = 1.0 + terms.iter().map(|t| t.abs()).sum::<f64>();
        for &isa in k::Isa::available() {
            let mut got = f32::NAN;
            graph::ip_distance_f16_isa(isa, &a, &b, &mut got);
            prop_assert!(close(got, want, a.len(), magnitude), "{isa:?}: {got} vs {want}");
        }
        // SAFETY: both pointers address `a.len()` u16 that outlive the call.
        let metric = unsafe { graph::ip_f16(a.len()) };
        prop_assert!(close(metric(a.as_ptr(), b.as_ptr()), want, a.len(), magnitude));
    }

    #[test]
    fn int8_distance_is_minus_the_inner_product_of_the_decoded_vectors(
        (s, a, b) in (0usize..140).prop_flat_map(|d| (scales(d), i8_codes(d), i8_codes(d))),
    ) {
        // The vectors the codes stand for are `s_i · c_i`; their inner product, in f64.
        let terms: Vec<f64> = (0..s.len())
            .map(|i| (s[i] as f64 * a[i] as f64) * (s[i] as f64 * b[i] as f64))
            .collect();
        let want = -terms.iter().sum::<f64>();
        // s_i² is rounded to f32 once more than the products: one more term of error each.
        let magnitude = 1.0 + terms.iter().map(|t| t.abs()).sum::<f64>();
        let weights: Vec<f32> = s.iter().map(|x| x * x).collect();
        for &isa in k::Isa::available() {
            let mut got = f32::NAN;
            graph::ip_distance_i8_isa(isa, &weights, &a, &b, &mut got);
            prop_assert!(close(got, want, 2 * s.len(), magnitude), "{isa:?}: {got} vs {want}");
        }
        // SAFETY: both pointers address `s.len()` i8 that outlive the call.
        let metric = unsafe { graph::ip_i8(&s) };
        prop_assert!(close(metric(a.as_ptr(), b.as_ptr()), want, 2 * s.len(), magnitude));
    }

    #[test]
    fn hamming_distance_counts_the_differing_bits(
        (a, b) in (0usize..90).prop_flat_map(|n| {
            let bytes = prop::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(0u8), 1 => Just(0xffu8)], n);
            (bytes.clone(), bytes)
        }),
    ) {
        let want = (0..a.len() * 8)
            .filter(|&i| (a[i / 8] >> (i % 8)) & 1 != (b[i / 8] >> (i % 8)) & 1)
            .count() as f32;
        for &isa in k::Isa::available() {
            let mut got = f32::NAN;
            graph::hamming_distance_isa(isa, &a, &b, &mut got);
            prop_assert_eq!(got, want, "{:?}", isa);
        }
        // SAFETY: both pointers address `a.len()` bytes that outlive the call.
        let metric = unsafe { graph::hamming(a.len()) };
        prop_assert_eq!(metric(a.as_ptr(), b.as_ptr()), want);
    }
}

/// Hand-computed: codes (1, −2, 3) and (4, 5, −6) with scales (0.5, 1, 2) stand for
/// (0.5, −2, 6) and (2, 5, −12): inner product 1 − 10 − 72 = −81, distance 81.
#[test]
fn int8_distance_hand_computed() {
    let (a, b) = ([1i8, -2, 3], [4i8, 5, -6]);
    // SAFETY: both arrays hold 3 codes and outlive the call.
    let metric = unsafe { graph::ip_i8(&[0.5, 1.0, 2.0]) };
    assert_eq!(metric(a.as_ptr(), b.as_ptr()), 81.0);
}
