//! int8 linear layers: weights quantized once (symmetric, per output channel, 7 bits),
//! activations quantized per token on the fly (8 bits), integer dot products, f32 out.
//!
//! ```text
//! W (N, K) f32  →  w_q (N, K) ∈ [-63, 63] = round(W / s_w[n]),  s_w[n] = max|W[n, :]| / 63
//! x (M, K) f32  →  x_q (M, K) ∈ [-127, 127] = round(x / s_x[m]),  s_x[m] = max|x[m, :]| / 127
//! out[m, n]     =  s_x[m] · s_w[n] · Σ_k x_q[m, k] · w_q[n, k]   (+ bias, GELU)
//! ```
//!
//! Activations are stored shifted to unsigned, `u = x_q + 128 ∈ [1, 255]`, on every path, and
//! `Σ_k x_q·w_q = Σ_k u·w_q − 128·Σ_k w_q`: the second sum is a per-channel constant computed
//! at packing. Every kernel multiplies unsigned activations by signed weights:
//! - **AVX-512 VNNI** (`vpdpbusd`, 4 products per 32-bit lane, exact).
//! - **AVX-VNNI** (the same on ymm, CPUs whose widest path is AVX2).
//! - **AVX2** (`vpmaddubsw` then `vpmaddwd` with ones): `vpmaddubsw` adds two u8 × s8
//!   products in a saturating int16. The 7-bit weights are what make that exact: a pair sum is
//!   at most 2 · 255 · 63 = 32130 < 32767, so it never saturates (with 8-bit weights it could,
//!   and ONNX Runtime's AVX2 path accepts that error). Three instructions per 32 products
//!   instead of the sign trick's four.
//! - **scalar**: the plain sum.
//!
//! So the integer sums, and with them the vectors, are identical on every CPU. The accuracy cost
//! of the seventh bit is measured in docs/ACCURACY.md.
//!
//! Weights are packed in panels of 16 columns, four k at a time, `panel[p][k/4][j][k%4]`, K
//! padded with zeros to a multiple of 4 and the panels to an even count: one layout for every
//! path (the 512-bit kernel takes two panels per tile), so it can be stored once on disk.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
mod panels;
mod quantize;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod vnni;

use panels::PanelData;
pub use panels::{packed_shape, PanelError};
pub(crate) use quantize::quantize_rows_for;
pub use quantize::{quantize_activation_row, quantize_weight_row, Int8Scratch, RowQuantization};

use crate::gemm::driver::{for_each_task, tile_shape, Operands, TileSink};
use crate::gemm::{Epilogue, RowBlocks};
use crate::isa::Isa;
use crate::SendPtr;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::OnceLock;

/// Largest weight magnitude (7 bits): keeps AVX2's int16 pair sums exact.
pub const WEIGHT_MAX: f32 = 63.0;
/// Columns per packed panel, on every path.
pub const PANEL_WIDTH: usize = 16;
/// K values per packed group.
pub const K_GROUP: usize = 4;
/// K is padded with zeros to a multiple of this (a whole AMX tile of 64 k, on every path so
/// that there is one layout).
pub const K_PAD: usize = 64;
/// Activation buffers hold whole blocks of this many rows (AMX reads 32-row tiles).
pub const ROW_BLOCK: usize = 32;

/// K as the int8 kernels see it: padded with zeros to a multiple of [`K_PAD`].
pub fn padded_k(k: usize) -> usize {
    k.next_multiple_of(K_PAD)
}

/// The family of int8 micro-kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Int8Isa {
    Scalar,
    /// AVX2: `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// 256-bit VNNI in the AVX-VNNI (VEX) encoding: CPUs whose widest path is AVX2.
    AvxVnni,
    /// AVX-512 VNNI.
    Avx512Vnni,
    /// AMX-INT8 tiles (Sapphire Rapids and later Xeons), with AVX-512 for the rest.
    Amx,
}

impl Int8Isa {
    /// Every int8 path this CPU can run, lowest first.
    pub fn available() -> &'static [Int8Isa] {
        static AVAILABLE: OnceLock<Vec<Int8Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut out = vec![Int8Isa::Scalar];
            if Isa::Avx2.is_available() {
                out.push(Int8Isa::Avx2);
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avxvnni") {
                    out.push(Int8Isa::AvxVnni);
                }
            }
            #[cfg(target_arch = "x86_64")]
            if Isa::Avx512.is_available()
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512bw")
            {
                out.push(Int8Isa::Avx512Vnni);
                if amx::available() {
                    out.push(Int8Isa::Amx);
                }
            }
            out
        })
    }

    /// The best available, capped by `DENSA_ISA` as the f32 kernels are: on an AVX-512 CPU,
    /// `DENSA_ISA=avx2` selects the AVX2 path (so that the CI run with it covers that path end
    /// to end); a CPU whose best f32 path is AVX2 gets AVX-VNNI when it has it, with or without
    /// `DENSA_ISA=avx2`.
    pub fn selected() -> Int8Isa {
        let best = *Int8Isa::available()
            .last()
            .expect("scalar is always available");
        match Isa::selected() {
            Isa::Scalar => Int8Isa::Scalar,
            Isa::Avx2 if Isa::forced() => best.min(Int8Isa::Avx2),
            Isa::Avx2 => best.min(Int8Isa::AvxVnni),
            Isa::Avx512 => best,
        }
    }

    pub fn is_available(self) -> bool {
        Int8Isa::available().contains(&self)
    }

    /// `(MR, NR)` of the micro-kernel.
    pub fn shape(self) -> (usize, usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx2 => tile_shape::<avx2::Avx2Int8>(),
            #[cfg(target_arch = "x86_64")]
            Int8Isa::AvxVnni => tile_shape::<avxvnni::AvxVnni>(),
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx512Vnni => tile_shape::<vnni::Avx512Vnni>(),
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Amx => tile_shape::<amx::Amx>(),
            _ => tile_shape::<scalar::ScalarInt8>(),
        }
    }

    /// The f32 ISA of the same machine level (for the epilogue's activations).
    pub fn f32_isa(self) -> Isa {
        match self {
            Int8Isa::Scalar => Isa::Scalar,
            Int8Isa::Avx2 | Int8Isa::AvxVnni => Isa::Avx2,
            Int8Isa::Avx512Vnni | Int8Isa::Amx => Isa::Avx512,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::Scalar => "scalar",
            Int8Isa::Avx2 => "avx2",
            Int8Isa::AvxVnni => "avxvnni",
            Int8Isa::Avx512Vnni => "avx512vnni",
            Int8Isa::Amx => "amx",
        }
    }
}

/// Weights `(N, K)` quantized per output channel and packed for one int8 micro-kernel.
pub struct QuantizedWeight {
    isa: Int8Isa,
    k: usize,
    /// K rounded up to a multiple of 4.
    k_pad: usize,
    n: usize,
    /// `panel[p][k/4][j][k%4]` in panels of 16 columns, zero-padded to an even count.
    data: PanelData,
    /// `(N)`: dequantization scale of each output channel.
    scales: Vec<f32>,
    /// `(N)`: `Σ_k w_q[n, k]`, for the activations' zero points.
    channel_sums: Vec<i32>,
}

impl QuantizedWeight {
    /// Quantizes and packs `weight (n, k)` for the selected int8 path.
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        Self::for_isa(weight, n, k, Int8Isa::selected())
    }

    /// Quantizes and packs for a given path (scalar if the CPU lacks it).
    pub fn for_isa(weight: &[f32], n: usize, k: usize, isa: Int8Isa) -> Self {
        crate::check_shape("quantize", "weight", weight.len(), n, k);
        Self::quantize(
            &crate::gemm::RowBlocks::new(&[&weight[..n * k]], k),
            n,
            k,
            isa,
        )
    }

    /// Quantizes and packs the weight made of `blocks` stacked along the output dimension
    /// (each `(rows, k)`), without first copying them together.
    pub fn from_row_blocks(blocks: &[&[f32]], k: usize, isa: Int8Isa) -> Self {
        let rows = RowBlocks::new(blocks, k);
        Self::quantize(&rows, rows.len(), k, isa)
    }

    /// Quantizes the `n` rows of `weight` and packs them.
    fn quantize(weight: &RowBlocks<'_>, n: usize, k: usize, isa: Int8Isa) -> Self {
        let mut rows = vec![0i8; n * k];
        let mut scales = vec![0.0f32; n];
        rows.par_chunks_mut(k.max(1))
            .zip(scales.par_iter_mut())
            .enumerate()
            .for_each(|(j, (q, s))| {
                *s = quantize_weight_row(weight.row(j), q);
            });
        let blocks = [rows.as_slice()];
        let rows = RowBlocks::new(&blocks, k);
        let sums = channel_sums(&rows, n).expect("quantize_weight_row stays within ±63");
        Self::pack(&rows, scales, sums, n, k, isa)
    }

    /// Packs weights that are already quantized: `q (n, k)` within ±63 with per-channel
    /// `scales (n)`, `W ≈ scales[:, None] · q` (a checkpoint written by `densa quantize`).
    /// `None` if a value is out of range.
    pub fn from_quantized(q: &[i8], scales: &[f32], n: usize, k: usize) -> Option<Self> {
        assert!(
            q.len() >= n * k && scales.len() >= n,
            "from_quantized: ({n}, {k}) needs {} values and {n} scales",
            n * k
        );
        Self::from_quantized_blocks(&[&q[..n * k]], &scales[..n], n, k)
    }

    /// [`QuantizedWeight::from_quantized`] on a weight made of `blocks` stacked along the
    /// output dimension (each `(rows, k)`; Q, K and V read in place from the checkpoint).
    pub fn from_quantized_blocks(
        blocks: &[&[i8]],
        scales: &[f32],
        n: usize,
        k: usize,
    ) -> Option<Self> {
        let rows = RowBlocks::new(blocks, k);
        assert!(
            (k == 0 || rows.len() == n) && scales.len() == n,
            "from_quantized: {} rows and {} scales for ({n}, {k})",
            rows.len(),
            scales.len()
        );
        let sums = channel_sums(&rows, n)?;
        Some(Self::pack(
            &rows,
            scales.to_vec(),
            sums,
            n,
            k,
            Int8Isa::selected(),
        ))
    }

    /// Packs quantized rows `(n, k)` into panels (K padded with zeros).
    fn pack(
        rows: &RowBlocks<'_, i8>,
        scales: Vec<f32>,
        channel_sums: Vec<i32>,
        n: usize,
        k: usize,
        isa: Int8Isa,
    ) -> Self {
        let isa = if isa.is_available() {
            isa
        } else {
            Int8Isa::Scalar
        };
        let k_pad = padded_k(k);
        let panel_len = k_pad * PANEL_WIDTH;
        let panels = n.div_ceil(2 * PANEL_WIDTH) * 2;
        let mut data = crate::memory::zeroed_vec::<i8>(panels * panel_len);
        data.par_chunks_mut(panel_len.max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..PANEL_WIDTH.min(n.saturating_sub(p * PANEL_WIDTH)) {
                    // Four k at a time: each group of a row is one 4-byte run of the panel.
                    let row = rows.row(p * PANEL_WIDTH + j);
                    for (group, values) in row.chunks(K_GROUP).enumerate() {
                        let at = group * PANEL_WIDTH * K_GROUP + j * K_GROUP;
                        panel[at..at + values.len()].copy_from_slice(values);
                    }
                }
            });
        QuantizedWeight {
            isa,
            k,
            k_pad,
            n,
            data: PanelData::Owned(data),
            scales,
            channel_sums,
        }
    }

    pub fn isa(&self) -> Int8Isa {
        self.isa
    }
}

/// `Σ_k w[n, k]` of each of the `n` rows, or `None` if a value lies outside ±63 (one pass,
/// written to vectorise: the range check rides along with the sum).
fn channel_sums(rows: &RowBlocks<'_, i8>, n: usize) -> Option<Vec<i32>> {
    let per_row: Vec<(i32, u8)> = (0..n)
        .into_par_iter()
        .map(|j| {
            let row = rows.row(j);
            let sum = row.iter().map(|&v| v as i32).sum::<i32>();
            let max_abs = row.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
            (sum, max_abs)
        })
        .collect();
    let in_range = per_row.iter().all(|&(_, m)| m as f32 <= WEIGHT_MAX);
    in_range.then(|| per_row.into_iter().map(|(s, _)| s).collect())
}

/// `out (m, N) = epilogue(inp (m, K) · Wᵀ)` with int8 weights and per-token int8 activations.
pub fn linear_int8(
    out: &mut [f32],
    inp: &[f32],
    weight: &QuantizedWeight,
    m: usize,
    epilogue: Epilogue<'_>,
    scratch: &mut Int8Scratch,
) {
    // Each step checks its own slices: the input here, the output and bias there.
    scratch.quantize(inp, m, weight.k);
    linear_int8_quantized(out, weight, m, epilogue, scratch);
}

/// [`linear_int8`] on activations already quantized (by [`Int8Scratch::quantize`] or a fused
/// LayerNorm).
pub fn linear_int8_quantized(
    out: &mut [f32],
    weight: &QuantizedWeight,
    m: usize,
    epilogue: Epilogue<'_>,
    activations: &Int8Scratch,
) {
    let (k, k_pad, n) = (weight.k, weight.k_pad, weight.n);
    assert!(
        activations.rows == m && activations.k == k,
        "linear_int8: activations quantized as ({}, {}), the layer needs ({m}, {k})",
        activations.rows,
        activations.k
    );
    // The output and bias (the input was checked when it was quantized).
    crate::gemm::check_linear_shapes("linear_int8", out, &[], m, 0, n, &epilogue);
    if m == 0 || n == 0 {
        return;
    }
    let (mr, nr) = weight.isa.shape();
    let ops = Operands {
        a: &activations.quantized[..m.next_multiple_of(ROW_BLOCK) * k_pad],
        lda: k_pad,
        b: weight.data.as_i8(),
        // Panels of nr columns: one or two 16-column panels of the stored layout.
        panel_len: k_pad * nr,
        k: k_pad,
        n,
        // One pass over K: exact i32 sums, and the 512-bit kernel finds its second 16-column
        // panel kc · 16 bytes after the first.
        kc: usize::MAX,
    };
    let sink = Int8Sink {
        out: SendPtr(out.as_mut_ptr()),
        n,
        rows: &activations.row_quantization[..m],
        channel_scales: &weight.scales,
        channel_sums: &weight.channel_sums,
        isa: weight.isa.f32_isa(),
        epilogue: &epilogue,
    };
    for_each_task(m, n.div_ceil(nr), mr, |rows, panels| {
        // SAFETY: tasks write disjoint (row tile × column group) blocks of `out` (m × n values,
        // asserted above); the path was detected on this CPU (QuantizedWeight::pack).
        unsafe { int8_block(weight.isa, &ops, rows, panels, &sink) };
    });
}

/// The one place an int8 path picks its kernel.
///
/// # Safety
/// `isa` is available; the sink may be written for these rows and panels by this caller alone.
unsafe fn int8_block(
    isa: Int8Isa,
    ops: &Operands<'_, u8, i8>,
    rows: Range<usize>,
    panels: Range<usize>,
    sink: &Int8Sink<'_>,
) {
    match isa {
        // SAFETY: forwarded contract.
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Avx512Vnni => unsafe { vnni::task(ops, rows, panels, sink) },
        // SAFETY: as above (AMX is only listed where the OS granted it: amx::available).
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Amx => unsafe { amx::task(ops, rows, panels, sink) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Int8Isa::AvxVnni => unsafe { avxvnni::task(ops, rows, panels, sink) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Avx2 => unsafe { avx2::task(ops, rows, panels, sink) },
        // SAFETY: the portable kernel needs no features.
        _ => unsafe {
            crate::gemm::driver::gemm_task::<scalar::ScalarInt8, _>(ops, rows, panels, sink)
        },
    }
}

/// Dequantizes int8 tiles, `(Σ u·w − 128·Σ w) · s_x[row] · s_w[col]`, then the epilogue.
pub(crate) struct Int8Sink<'a> {
    out: SendPtr,
    n: usize,
    rows: &'a [RowQuantization],
    channel_scales: &'a [f32],
    channel_sums: &'a [i32],
    isa: Isa,
    epilogue: &'a Epilogue<'a>,
}

impl TileSink<i32> for Int8Sink<'_> {
    #[inline(always)]
    unsafe fn write(&self, row: usize, col0: usize, acc: &[i32], _first: bool, _last: bool) {
        let width = acc.len();
        let RowQuantization { scale, zero_point } = self.rows[row];
        let (scales, sums) = (
            &self.channel_scales[col0..col0 + width],
            &self.channel_sums[col0..col0 + width],
        );
        // SAFETY: (row, col0 .. col0 + width) is inside `out` (m × n) and this task's (the
        // trait's contract).
        let c = unsafe {
            std::slice::from_raw_parts_mut(self.out.get().add(row * self.n + col0), width)
        };
        // Dequantized straight into the output row (one K chunk: nothing to merge).
        for j in 0..width {
            c[j] = (acc[j] - zero_point * sums[j]) as f32 * (scale * scales[j]);
        }
        crate::gemm::finish_tile(self.isa, c, col0, self.epilogue);
    }
}
