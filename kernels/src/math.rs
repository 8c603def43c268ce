//! Branch-free `f32` approximations of exp, erf and tanh, written so that a loop over a
//! slice vectorises: the same code is the scalar path and, compiled inside a
//! `#[target_feature]` function, the AVX2 / AVX-512 path.
//!
//! Error bounds (measured against `f64` in `tests/properties.rs` over [-88, 88] for exp and
//! the whole line for the others):
//! - [`exp`]: error below 4 ulp for results in the normal range (2.4e-7 to 4.8e-7 relative,
//!   by where the result lies in its binade).
//! - [`erf`]: absolute error below 4e-7: a Taylor series below 0.5, Abramowitz & Stegun 7.1.26
//!   above (1.5e-7 in exact arithmetic, the formula of PyTorch's vectorised CPU erf), so
//!   [`gelu_erf`] is within 2e-7·|x| + 2 ulp of the exact GELU.
//! - [`tanh`]: absolute error below 3e-7.

/// e^x, for x clamped to [-87.3, 88.3] (results from 1.2e-38 to 2.2e38; softmax and GELU never
/// need more). Cody-Waite reduction x = n·ln2 + r,
/// |r| ≤ ln2/2, then a degree-6 polynomial for e^r and 2^n built in the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    // Round to nearest by adding and subtracting 1.5·2²³ (no call to floor/round, which the
    // baseline x86-64 ISA lacks as an instruction).
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients 1/k!, k = 0..6 (Horner).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from n's bits: `shifted`'s low mantissa bits hold n (integer ops only, so the loop
    // vectorises; a float-to-int cast would not).
    let scale = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(0x4B40_0000)
            .wrapping_add(127)
            << 23,
    );
    p * scale
}

/// erf(x), Abramowitz & Stegun 7.1.26: |error| < 4e-7 in f32.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let far = 1.0 - poly * exp(-ax * ax);
    // Near 0 that subtraction cancels; the Taylor series x·Σ cₙ x²ⁿ (7 terms, < 2e-8 for
    // |x| < 0.5) keeps the error relative there.
    let x2 = ax * ax;
    let near = ax
        * (std::f32::consts::FRAC_2_SQRT_PI
            + x2 * (-0.376_126_4
                + x2 * (0.112_837_92
                    + x2 * (-0.026_866_17
                        + x2 * (0.005_223_977_6
                            + x2 * (-0.000_854_832_7 + x2 * 0.000_120_591_6))))));
    let y = if ax < 0.5 { near } else { far };
    y.copysign(x)
}

/// Exact-form GELU: `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// tanh(x) = 1 - 2 / (e^{2x} + 1), saturating to ±1 for |x| > 9; NaN stays NaN (as torch).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // Not `min`: f32::min(NaN, 9) is 9, which would turn a NaN into ±1.
    let ax = if x.abs() > 9.0 { 9.0 } else { x.abs() };
    // For small |x| the subtraction loses bits: use the odd series x - x³/3 + 2x⁵/15 there.
    let big = 1.0 - 2.0 / (exp(2.0 * ax) + 1.0);
    let x2 = ax * ax;
    let small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
    let y = if ax < 0.125 { small } else { big };
    y.copysign(x)
}

/// Tanh-form GELU: `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
}
