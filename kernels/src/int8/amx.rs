//! The AMX int8 micro-kernel (Intel Sapphire Rapids and later Xeons): 32 rows × 32 columns in
//! four 16 × 16 i32 tiles, one `tdpbusd` per 16 × 16 × 64 block of products.
//!
//! The tile operands are exactly densa's int8 layouts: an A tile is 16 activation rows × 64
//! bytes (u8, read at the activations' row stride), a B tile is 16 groups of 4 k × 16 columns
//! × 4 bytes, which is 1 KiB of a 16-column weight panel as packed for every path
//! (`panel[p][k/4][j][k%4]`). `tdpbusd` sums u8 × s8 products exactly in i32, so the integers
//! are the other paths' (the property tests compare them bit for bit).
//!
//! Per 64 k: two A tiles (rows 0–15 and 16–31), two B tiles (the two 16-column panels of the
//! 32-column tile), four `tdpbusd` into the four accumulator tiles. The instructions are
//! written as inline assembly: Rust has no stable AMX intrinsics.
//!
//! Requirements the rest of the int8 code meets for this kernel: K is padded to a multiple of
//! 64 (`padded_k`), and the activation buffer holds whole 32-row blocks (rows past the last
//! real one are read and their results dropped).

use crate::gemm::driver::{gemm_task, micro_kernel, Operands, TileSink};
use std::arch::asm;
use std::ops::Range;

const MR: usize = 32;
const NR: usize = 32;

// The type only: `task` below loads the tile configuration around the loop.
micro_kernel!(Amx: u8, i8 => i32, MR, NR, kernel);

/// Whether this CPU has AMX-INT8 and the OS lets this process use the tile registers (Linux
/// asks for that permission once per process: `arch_prctl(ARCH_REQ_XCOMP_PERM)`).
pub(crate) fn available() -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::arch::x86_64::__cpuid_count;
        // CPUID.(EAX=7, ECX=0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        if __cpuid_count(0, 0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only asks the kernel to allow the
        // process to use the AMX tile state; it reads and writes no memory of ours.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        granted == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The tile configuration (palette 1): all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1; // palette
        for tile in 0..8 {
            bytes[16 + 2 * tile..18 + 2 * tile].copy_from_slice(&64u16.to_le_bytes());
            bytes[48 + tile] = 16;
        }
        TileConfig(bytes)
    }
}

/// One task of the blocked loop on AMX: the tile configuration is loaded for this thread
/// first and released after.
///
/// # Safety
/// [`available`] returned true; the CPU has AVX-512F and BW (the epilogue's width); the sink
/// may be written for these rows and panels.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn task<S: TileSink<i32>>(
    ops: &Operands<'_, u8, i8>,
    rows: Range<usize>,
    panels: Range<usize>,
    sink: &S,
) {
    let config = TileConfig::new();
    // SAFETY: AMX is available and permitted (contract); the configuration is a valid
    // palette-1 layout of 64 bytes, aligned.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
    // SAFETY: forwarded contract; the tiles are configured.
    unsafe { gemm_task::<Amx, S>(ops, rows, panels, sink) };
    // SAFETY: releasing the tile state has no preconditions once configured.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// `acc[r][j] = Σ_k rows[r][k] · w[j][k]` for a 32 × 32 tile: columns 0..16 from the panel at
/// `b`, 16..32 from the next one, `kc · 16` bytes on (the whole of K is one chunk).
///
/// # Safety
/// The tiles are configured by [`task`] (the only caller of the loop for this kernel); `kc` is a
/// multiple of 64; `rows[0]` and `rows[16]`
/// start runs of 16 rows at the stride `rows[1] − rows[0]` (0 when all rows are one), each of
/// `kc` readable bytes; `b` has two panels of `kc × 16`; `acc` holds 32 × 32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn kernel(kc: usize, rows: &[*const u8], b: *const i8, _next: *const i8, acc: &mut [i32]) {
    debug_assert!(rows.len() == MR && acc.len() >= MR * NR && kc.is_multiple_of(64));
    // The driver repeats the last real row for rows past it: either the rows are one (stride
    // 0) or the real ones are evenly spaced, and the tile load reads whole 16-row runs at that
    // stride (rows past the real ones are in the padded buffer; their results are dropped).
    let stride = (rows[1] as usize).wrapping_sub(rows[0] as usize);
    let (a_low, a_high) = (rows[0], rows[16]);
    let a_high_stride = (rows[17] as usize).wrapping_sub(a_high as usize);
    // SAFETY: the second panel is inside b's two panels (contract).
    let b_high = unsafe { b.add(kc * 16) };
    // SAFETY: tiles configured (contract); tilezero touches no memory.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        )
    };
    for k64 in 0..kc / 64 {
        // SAFETY: each tile load reads 16 rows of 64 bytes inside A's padded rows or B's
        // panels (contract; offsets k64 · 64 < kc in A, k64 · 1024 < kc · 16 in B).
        unsafe {
            asm!(
                "tileloadd tmm4, [{a0} + {sa0}*1]",
                "tileloadd tmm5, [{a1} + {sa1}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a_low.add(k64 * 64),
                sa0 = in(reg) stride,
                a1 = in(reg) a_high.add(k64 * 64),
                sa1 = in(reg) a_high_stride,
                b0 = in(reg) b.add(k64 * 1024),
                b1 = in(reg) b_high.add(k64 * 1024),
                sb = in(reg) 64usize,
                options(nostack, readonly)
            )
        };
    }
    let out = acc.as_mut_ptr();
    // SAFETY: acc holds 32 rows of 32 i32 (128 bytes each); each store writes 16 rows of 64
    // bytes of one quarter.
    unsafe {
        asm!(
            "tilestored [{c00} + {s}*1], tmm0",
            "tilestored [{c01} + {s}*1], tmm1",
            "tilestored [{c10} + {s}*1], tmm2",
            "tilestored [{c11} + {s}*1], tmm3",
            c00 = in(reg) out,
            c01 = in(reg) out.add(16),
            c10 = in(reg) out.add(16 * NR),
            c11 = in(reg) out.add(16 * NR + 16),
            s = in(reg) NR * 4,
            options(nostack)
        )
    };
}
