//! f32 weights stored in the GEMM's panel layout (as `densa pack` writes them) and used in
//! place: the layout against a packing twin written from the definition, the same bits out of
//! the layer as the weight packed at load, and every kind of damage refused.

mod common;

use common::{linear_case, with_threads};
use densa_kernels::gemm::{check_panels, kernel_shape, unpack_rows};
use densa_kernels::memory::SharedBytes;
use densa_kernels::{self as k, Epilogue, PackedError, PackedWeight};
use proptest::prelude::*;
use std::sync::Arc;

/// f32 values owned as bytes (4-byte aligned, as a mapped safetensors tensor of F32 is).
struct F32Bytes(Vec<f32>);

impl AsRef<[u8]> for F32Bytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: any f32 slice is a valid byte slice of 4× its length; the view borrows self.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 4) }
    }
}

fn shared(values: Vec<f32>) -> SharedBytes {
    let len = values.len() * 4;
    SharedBytes::new(Arc::new(F32Bytes(values)), 0, len).unwrap()
}

/// The definition: `panel[p][k][j] = W[p·nr + j][k]`, zero past the last output.
fn pack_twin(weight: &[f32], n: usize, kk: usize, nr: usize) -> Vec<f32> {
    let panels = n.div_ceil(nr);
    let mut out = vec![0.0; panels * kk * nr];
    for p in 0..panels {
        for q in 0..kk {
            for j in 0..nr {
                let column = p * nr + j;
                if column < n {
                    out[(p * kk + q) * nr + j] = weight[column * kk + q];
                }
            }
        }
    }
    out
}

fn run(weight: &PackedWeight, inp: &[f32], bias: &[f32], m: usize, threads: usize) -> Vec<u32> {
    let (n, _) = weight.shape();
    let mut out = vec![f32::NAN; m * n];
    let epilogue = Epilogue {
        bias: Some(bias),
        activation: k::Activation::GeluErf,
    };
    with_threads(threads, || {
        k::linear_packed(&mut out, inp, weight, m, epilogue)
    });
    out.iter().map(|v| v.to_bits()).collect()
}

proptest! {
    #![proptest_config(common::proptest_config(40, "tests/packed.proptest-regressions"))]

    /// For every ISA this CPU has: the packed values are the definition's, they unpack to the
    /// weight, and the same values used in place give the layer's bits exactly.
    #[test]
    fn stored_f32_panels_equal_the_weight_packed_at_load(
        (m, kk, n, inp, weight, bias) in linear_case(1usize..12, 1usize..200, 1usize..80),
        threads in 1usize..4,
    ) {
        for &isa in k::Isa::available() {
            let packed = PackedWeight::for_isa(&weight, n, kk, isa);
            let nr = kernel_shape(isa).1;
            prop_assert_eq!(packed.nr(), nr);
            let twin = pack_twin(&weight, n, kk, nr);
            prop_assert_eq!(packed.data(), &twin[..]);
            prop_assert_eq!(PackedWeight::packed_shape(n, kk, nr).iter().product::<usize>(), twin.len());
            prop_assert_eq!(&packed.rows(), &weight);
            let stored = PackedWeight::from_panels(shared(twin), n, kk, nr, isa).unwrap();
            prop_assert!(stored.is_borrowed() && !packed.is_borrowed());
            prop_assert_eq!(run(&stored, &inp, &bias, m, threads), run(&packed, &inp, &bias, m, threads), "{}", isa.name());
        }
    }
}

#[test]
fn damaged_or_foreign_panels_are_refused() {
    // n = 37 outputs, k = 5 inputs, packed for the scalar kernel (on every CPU).
    let (n, kk) = (37, 5);
    let isa = k::Isa::Scalar;
    let nr = kernel_shape(isa).1;
    let weight: Vec<f32> = (0..n * kk).map(|i| (i as f32 * 0.37).sin()).collect();
    let good = pack_twin(&weight, n, kk, nr);
    let refuse = |values: Vec<f32>, nr: usize| {
        PackedWeight::from_panels(shared(values), n, kk, nr, isa)
            .err()
            .expect("refused")
    };
    // Packed for another kernel's width.
    assert_eq!(
        refuse(good.clone(), nr * 2),
        PackedError::Width {
            stored: nr * 2,
            wanted: nr
        }
    );
    // One value short.
    let mut short = good.clone();
    short.pop();
    assert!(matches!(refuse(short, nr), PackedError::Length { .. }));
    // A NaN at output 3, input 2; an infinity at output 36 (the last), input 4.
    for (column, q, value) in [(3, 2, f32::NAN), (36, 4, f32::NEG_INFINITY)] {
        let mut bad = good.clone();
        bad[((column / nr) * kk + q) * nr + column % nr] = value;
        assert_eq!(
            refuse(bad.clone(), nr),
            PackedError::NonFinite { column, k: q }
        );
        assert!(check_panels(&bad, n, kk, nr).is_err());
    }
    // Padding past the last output that is not 0.
    if !n.is_multiple_of(nr) {
        let column = n;
        let mut bad = good.clone();
        bad[((column / nr) * kk + 1) * nr + column % nr] = 1.0;
        assert_eq!(refuse(bad, nr), PackedError::Padding { column, k: 1 });
    }
    // Bytes that do not start on a 4-byte boundary: the panels copied 1, 2 or 3 bytes into
    // a buffer, whichever start is misaligned.
    let bytes: Vec<u8> = good.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buffer = vec![0u8; bytes.len() + 4];
    let base = buffer.as_ptr() as usize;
    let start = (1..4).find(|s| !(base + s).is_multiple_of(4)).unwrap();
    buffer[start..start + bytes.len()].copy_from_slice(&bytes);
    let misaligned = SharedBytes::new(Arc::new(buffer), start, bytes.len()).unwrap();
    assert_eq!(
        PackedWeight::from_panels(misaligned, n, kk, nr, isa).err(),
        Some(PackedError::Alignment)
    );
    // The good panels load and unpack to the weight.
    let ok = PackedWeight::from_panels(shared(good.clone()), n, kk, nr, isa).unwrap();
    assert_eq!(ok.rows(), weight);
    assert_eq!(unpack_rows(&good, n, kk, nr), weight);
}
