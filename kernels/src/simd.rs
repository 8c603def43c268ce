//! Runtime multiversioning for the elementwise kernels.
//!
//! `multiversion!` takes one plain Rust function body and compiles it three times: as is
//! (the scalar path, any CPU), inside `#[target_feature(enable = "avx2,fma")]` and inside
//! `#[target_feature(enable = "avx512f")]`, where the compiler vectorises its loops to 8 or 16
//! lanes. The body is written for that: fixed-width lane arrays instead of float reductions
//! (which the compiler may not reorder), branch-free math from [`crate::math`].
//!
//! It defines two functions: `name(args)` runs the ISA chosen at startup
//! ([`crate::Isa::selected`]); `name_isa(isa, args)` runs a given one (the property tests
//! compare every ISA the CPU has with the f64 reference).

/// Lanes of the accumulator arrays (one zmm of f32).
pub const LANES: usize = 16;

/// Sum of a slice in `LANES` independent partial sums (vectorisable).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Folds a slice into `LANES` independent accumulators (so the loop vectorises), then folds
/// those and the remainder. `fold(m, v)` is max-like: order-free, and folding an accumulator
/// in again changes nothing.
#[inline(always)]
fn fold_lanes(x: &[f32], init: f32, fold: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut acc = [init; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = fold(acc[l], c[l]);
        }
    }
    acc.iter()
        .chain(chunks.remainder())
        .fold(init, |m, &v| fold(m, v))
}

/// Maximum of a slice (vectorisable); `-inf` for an empty slice.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    fold_lanes(x, f32::NEG_INFINITY, f32::max)
}

/// Largest |x| of a slice (vectorisable); 0 for an empty slice.
#[inline(always)]
pub fn max_abs(x: &[f32]) -> f32 {
    fold_lanes(x, 0.0, |m, v| m.max(v.abs()))
}

/// Minimum of a slice (vectorisable); `inf` for an empty slice.
#[inline(always)]
pub fn min(x: &[f32]) -> f32 {
    fold_lanes(x, f32::INFINITY, f32::min)
}

/// `(min, max)` of a slice: two passes of one accumulator each (vectorise cleanly; one loop
/// with both measured 3× slower, its selects turned into permutes). A NaN is skipped.
#[inline(always)]
pub fn min_max(x: &[f32]) -> (f32, f32) {
    (min(x), max(x))
}

macro_rules! multiversion {
    // `fn name / name_isa`: the kernel on a given ISA, and `name` on the ISA chosen at startup.
    ($(#[$meta:meta])* $vis:vis fn $name:ident / $name_isa:ident ($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            $name_isa($crate::isa::Isa::selected(), $($arg),*)
        }

        $crate::simd::multiversion! { $(#[$meta])* $vis fn $name_isa($($arg: $ty),*) $body }
    };
    // `fn name_isa`: the kernel on a given ISA only (falls back to scalar if the CPU lacks it).
    ($(#[$meta:meta])* $vis:vis fn $name_isa:ident ($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        ///
        /// On a given ISA (falls back to scalar if the CPU lacks it).
        $vis fn $name_isa(isa: $crate::isa::Isa, $($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            // # Safety: the CPU must have AVX-512F (the body itself is safe Rust).
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) { generic($($arg),*) }
            // # Safety: the CPU must have AVX2 and FMA (the body itself is safe Rust).
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) { generic($($arg),*) }
            match isa {
                // SAFETY: the ISA is one `Isa::available()` detected on this CPU.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx512 if isa.is_available() => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx2 if isa.is_available() => unsafe { avx2($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
