//! The 256-bit VNNI int8 micro-kernel: 6 rows × 16 columns, 12 ymm of i32 accumulators.
//!
//! `vpdpbusd` on ymm exists in two encodings with the same semantics:
//! - **AVX-VNNI** (VEX, `avxvnni`): Intel Alder Lake and later, AMD Zen 5 client parts; CPUs
//!   that have 256-bit VNNI but no AVX-512.
//! - **AVX-512 VNNI + VL** (EVEX): every CPU with AVX-512 VNNI.
//!
//! One body, written once in a macro, is compiled for each encoding. The path is chosen at run
//! time, once, when the weights are packed (`Int8Isa::AvxVnni` and `Int8Isa::AvxVnniEvex`).
//! Both run the same loop, so the property tests that run the EVEX copy (on any AVX-512 VNNI
//! machine) check the code that the VEX copy runs.
//!
//! Activations arrive shifted to unsigned (`q + 128`), as for the 512-bit kernel.

use std::arch::x86_64::*;

/// `(MR, NR)`
pub const SHAPE: (usize, usize) = (6, 16);
const MR: usize = SHAPE.0;
const NR: usize = SHAPE.1;

macro_rules! vnni256_kernel {
    ($name:ident, $features:literal, $dpbusd:ident) => {
        /// `acc[r][j] = Σ_k rows[r][k] · b[k/4][j][k%4]` with `rows` holding `q + 128` as u8.
        ///
        /// # Safety
        /// The CPU has the features named in `target_feature`; each of the 6 row pointers has
        /// `k_pad` readable values; `b` holds `k_pad × 16`; `acc` holds 6 × 16.
        #[target_feature(enable = $features)]
        pub unsafe fn $name(k_pad: usize, rows: &[*const i8], b: &[i8], acc: &mut [i32]) {
            assert!(
                rows.len() == MR
                    && b.len() >= k_pad * NR
                    && acc.len() >= MR * NR
                    && k_pad.is_multiple_of(4)
            );
            let r: [*const i8; MR] = rows.try_into().expect("6 rows");
            let bp = b.as_ptr();
            let mut c = [[_mm256_setzero_si256(); 2]; MR];
            for k4 in 0..k_pad / 4 {
                // SAFETY: k4 < k_pad / 4: the 64 bytes of b and 4 bytes of each row are in
                // bounds (asserted above and by the caller).
                unsafe {
                    let b0 = _mm256_loadu_si256(bp.add(k4 * NR * 4).cast());
                    let b1 = _mm256_loadu_si256(bp.add(k4 * NR * 4 + 32).cast());
                    for i in 0..MR {
                        let a = _mm256_set1_epi32(r[i].add(4 * k4).cast::<i32>().read_unaligned());
                        c[i][0] = $dpbusd(c[i][0], a, b0);
                        c[i][1] = $dpbusd(c[i][1], a, b1);
                    }
                }
            }
            let out = acc.as_mut_ptr();
            for (i, ci) in c.iter().enumerate() {
                // SAFETY: acc holds 6 × 16 values (asserted).
                unsafe {
                    _mm256_storeu_si256(out.add(i * NR).cast(), ci[0]);
                    _mm256_storeu_si256(out.add(i * NR + 8).cast(), ci[1]);
                }
            }
        }
    };
}

vnni256_kernel!(kernel_vex, "avx2,avxvnni", _mm256_dpbusd_avx_epi32);
vnni256_kernel!(
    kernel_evex,
    "avx2,avx512f,avx512vl,avx512vnni",
    _mm256_dpbusd_epi32
);
