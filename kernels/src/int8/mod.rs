//! int8 linear layers: weights quantized once (symmetric, per output channel), activations
//! quantized per token on the fly, integer dot products, f32 out.
//!
//! ```text
//! W (N, K) f32  →  w_q (N, K) i8 = round(W / s_w[n]),  s_w[n] = max|W[n, :]| / 127
//! x (M, K) f32  →  x_q (M, K) i8 = round(x / s_x[m]),  s_x[m] = max|x[m, :]| / 127
//! out[m, n]     =  s_x[m] · s_w[n] · Σ_k x_q[m, k] · w_q[n, k]   (+ bias, GELU, residual)
//! ```
//!
//! The integer sum is exact on every path, so every ISA gives bit-identical results:
//! - **AVX-512 VNNI** (`vpdpbusd`, u8 × s8 → s32, 4 products per lane): the activations are
//!   shifted to unsigned, `x_q + 128`, and the extra `128 · Σ_k w_q[n, k]` is subtracted with a
//!   per-channel term computed once at packing.
//! - **AVX2** (`vpmaddubsw` would saturate u8 × s8 pair sums at 16 bits): the sign trick,
//!   `x_q · w_q = (sign(w_q) · x_q) · |w_q|`, keeps both factors within 127, so a pair sum is
//!   at most 2 · 127 · 127 = 32258 and never saturates; `vpmaddwd` with ones widens to s32.
//! - **scalar**: the plain sum.
//!
//! Weights are packed like the f32 GEMM's panels, four k at a time:
//! `panel[p][k/4][j][k%4]` for NR columns, K padded with zeros to a multiple of 4.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod vnni;

use crate::gemm::{write_tile_f32, Epilogue};
use crate::isa::Isa;
use crate::SendPtr;
use rayon::prelude::*;
use std::sync::OnceLock;

/// The family of int8 micro-kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Int8Isa {
    Scalar,
    /// AVX2 with the sign trick.
    Avx2,
    /// AVX-512 VNNI.
    Avx512Vnni,
}

impl Int8Isa {
    /// Every int8 path this CPU can run, lowest first.
    pub fn available() -> &'static [Int8Isa] {
        static AVAILABLE: OnceLock<Vec<Int8Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut out = vec![Int8Isa::Scalar];
            if Isa::Avx2.is_available() {
                out.push(Int8Isa::Avx2);
            }
            #[cfg(target_arch = "x86_64")]
            if Isa::Avx512.is_available()
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512bw")
            {
                out.push(Int8Isa::Avx512Vnni);
            }
            out
        })
    }

    /// The best available, capped by `DENSA_ISA` as the f32 kernels are.
    pub fn selected() -> Int8Isa {
        let best = *Int8Isa::available()
            .last()
            .expect("scalar is always available");
        match Isa::selected() {
            Isa::Scalar => Int8Isa::Scalar,
            Isa::Avx2 => best.min(Int8Isa::Avx2),
            Isa::Avx512 => best,
        }
    }

    pub fn is_available(self) -> bool {
        Int8Isa::available().contains(&self)
    }

    /// `(MR, NR)` of the micro-kernel.
    pub fn shape(self) -> (usize, usize) {
        match self {
            Int8Isa::Scalar => scalar::SHAPE,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx2 => avx2::SHAPE,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx512Vnni => vnni::SHAPE,
            #[cfg(not(target_arch = "x86_64"))]
            _ => scalar::SHAPE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::Scalar => "scalar",
            Int8Isa::Avx2 => "avx2",
            Int8Isa::Avx512Vnni => "avx512vnni",
        }
    }
}

/// Symmetric int8 quantization of a row: `(q, scale)` with `q = round(x / scale)`,
/// `scale = max|x| / 127` (1 for an all-zero row). `q` is padded with zeros to its length.
pub fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if amax > 0.0 && amax.is_finite() {
        amax / 127.0
    } else {
        1.0
    };
    let inv = 1.0 / scale;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    q[x.len()..].fill(0);
    scale
}

/// Weights `(N, K)` quantized per output channel and packed for one int8 micro-kernel.
pub struct QuantizedWeight {
    isa: Int8Isa,
    k: usize,
    /// K rounded up to a multiple of 4.
    k_pad: usize,
    n: usize,
    nr: usize,
    /// `panel[p][k/4][j][k%4]`, zero-padded.
    data: Vec<i8>,
    /// `(N)`: dequantization scale of each output channel.
    scales: Vec<f32>,
    /// `(N)`: `128 · Σ_k w_q[n, k]`, the VNNI path's unsigned-shift compensation.
    shift_compensation: Vec<i32>,
}

impl QuantizedWeight {
    /// Quantizes and packs `weight (n, k)` for the selected int8 path.
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        Self::for_isa(weight, n, k, Int8Isa::selected())
    }

    /// Quantizes and packs for a given path (scalar if the CPU lacks it).
    pub fn for_isa(weight: &[f32], n: usize, k: usize, isa: Int8Isa) -> Self {
        assert!(
            weight.len() >= n * k,
            "quantize: weight has {} values, ({n}, {k}) needs {}",
            weight.len(),
            n * k
        );
        let isa = if isa.is_available() {
            isa
        } else {
            Int8Isa::Scalar
        };
        let k_pad = k.next_multiple_of(4);
        let mut rows = vec![0i8; n * k_pad];
        let mut scales = vec![0.0f32; n];
        rows.par_chunks_mut(k_pad.max(1))
            .zip(scales.par_iter_mut())
            .enumerate()
            .for_each(|(j, (q, s))| {
                *s = quantize_row(&weight[j * k..(j + 1) * k], q);
            });
        Self::pack(rows, scales, n, k, isa)
    }

    /// Packs weights that are already quantized: `q (n, k)` with per-channel `scales (n)`,
    /// `W ≈ scales[:, None] · q` (a checkpoint written by `densa quantize`).
    pub fn from_quantized(q: &[i8], scales: &[f32], n: usize, k: usize) -> Self {
        assert!(
            q.len() >= n * k && scales.len() >= n,
            "from_quantized: ({n}, {k}) needs {} values and {n} scales",
            n * k
        );
        let isa = Int8Isa::selected();
        let k_pad = k.next_multiple_of(4);
        let mut rows = vec![0i8; n * k_pad];
        for j in 0..n {
            rows[j * k_pad..j * k_pad + k].copy_from_slice(&q[j * k..(j + 1) * k]);
        }
        Self::pack(rows, scales[..n].to_vec(), n, k, isa)
    }

    /// Packs quantized rows `(n, k_pad)` (zero-padded) into the micro-kernel's panels.
    fn pack(rows: Vec<i8>, scales: Vec<f32>, n: usize, k: usize, isa: Int8Isa) -> Self {
        let nr = isa.shape().1;
        let k_pad = k.next_multiple_of(4);
        let shift_compensation = (0..n)
            .map(|j| {
                128 * rows[j * k_pad..(j + 1) * k_pad]
                    .iter()
                    .map(|&v| v as i32)
                    .sum::<i32>()
            })
            .collect();
        let panels = n.div_ceil(nr);
        let mut data = vec![0i8; panels * k_pad * nr];
        data.par_chunks_mut((k_pad * nr).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..nr.min(n - p * nr) {
                    let row = &rows[(p * nr + j) * k_pad..][..k_pad];
                    for (kk, &v) in row.iter().enumerate() {
                        panel[(kk / 4) * nr * 4 + j * 4 + kk % 4] = v;
                    }
                }
            });
        QuantizedWeight {
            isa,
            k,
            k_pad,
            n,
            nr,
            data,
            scales,
            shift_compensation,
        }
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn isa(&self) -> Int8Isa {
        self.isa
    }

    /// Per-channel scales `(N)`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Bytes held (packed weights, scales, compensation).
    pub fn bytes(&self) -> usize {
        self.data.len() + 8 * self.n
    }
}

/// Scratch for quantized activations, reused across calls (no allocation once grown).
#[derive(Default)]
pub struct Int8Scratch {
    quantized: Vec<i8>,
    scales: Vec<f32>,
}

impl Int8Scratch {
    pub fn bytes(&self) -> usize {
        self.quantized.capacity() + 4 * self.scales.capacity()
    }
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
    let (k, k_pad, n, nr) = (weight.k, weight.k_pad, weight.n, weight.nr);
    assert!(
        inp.len() >= m * k,
        "linear_int8: input has {} values, ({m}, {k}) needs {}",
        inp.len(),
        m * k
    );
    assert!(
        out.len() >= m * n,
        "linear_int8: output has {} values, ({m}, {n}) needs {}",
        out.len(),
        m * n
    );
    if let Some(b) = epilogue.bias {
        assert!(
            b.len() >= n,
            "linear_int8: bias has {} values, needs {n}",
            b.len()
        );
    }
    if let Some(r) = epilogue.residual {
        assert!(
            r.len() >= m * n,
            "linear_int8: residual has {} values, needs {}",
            r.len(),
            m * n
        );
    }
    if m == 0 || n == 0 {
        return;
    }
    // Quantize every input row once (per token).
    scratch.quantized.resize(m * k_pad, 0);
    scratch.scales.resize(m, 0.0);
    scratch
        .quantized
        .par_chunks_mut(k_pad.max(1))
        .zip(scratch.scales.par_iter_mut())
        .enumerate()
        .for_each(|(i, (q, s))| *s = quantize_row(&inp[i * k..(i + 1) * k], q));
    let (quantized, scales) = (&scratch.quantized[..], &scratch.scales[..]);

    let mr = weight.isa.shape().0;
    let panels = n.div_ceil(nr);
    let threads = rayon::current_num_threads().max(1);
    let tasks_wanted = if threads == 1 { 1 } else { 4 * threads };
    let row_tiles_wanted = tasks_wanted
        .div_ceil(panels)
        .max(m.div_ceil(crate::gemm::MC));
    let row_tile = m
        .div_ceil(row_tiles_wanted)
        .next_multiple_of(mr)
        .clamp(mr, crate::gemm::MC);
    let row_tiles = m.div_ceil(row_tile);
    let col_groups = tasks_wanted.div_ceil(row_tiles).clamp(1, panels);
    let panels_per_group = panels.div_ceil(col_groups);
    let col_groups = panels.div_ceil(panels_per_group);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..row_tiles * col_groups)
        .into_par_iter()
        .for_each(|task| {
            let (tile, group) = (task / col_groups, task % col_groups);
            let rows = tile * row_tile..((tile + 1) * row_tile).min(m);
            let panel_range =
                group * panels_per_group..((group + 1) * panels_per_group).min(panels);
            let mut acc_i32 = [0i32; 8 * 32];
            let mut acc_f32 = [0.0f32; 8 * 32];
            let mut row_ptrs = [std::ptr::null::<i8>(); 8];
            for p in panel_range {
                let b = &weight.data[p * k_pad * nr..][..k_pad * nr];
                let (col0, width) = (p * nr, nr.min(n - p * nr));
                for r0 in rows.clone().step_by(mr) {
                    let valid = mr.min(rows.end - r0);
                    for (r, ptr) in row_ptrs[..mr].iter_mut().enumerate() {
                        // Rows past the tile repeat its last row; their results are dropped.
                        *ptr = quantized[(r0 + r.min(valid - 1)) * k_pad..].as_ptr();
                    }
                    micro_kernel(
                        weight.isa,
                        k_pad,
                        &row_ptrs[..mr],
                        b,
                        &mut acc_i32[..mr * nr],
                    );
                    for r in 0..valid {
                        let row = r0 + r;
                        let sx = scales[row];
                        for j in 0..width {
                            let mut dot = acc_i32[r * nr + j];
                            if weight.isa == Int8Isa::Avx512Vnni {
                                dot -= weight.shift_compensation[col0 + j];
                            }
                            acc_f32[r * nr + j] = dot as f32 * (sx * weight.scales[col0 + j]);
                        }
                        // SAFETY: row < m, col0 + width <= n: in bounds of out (m × n); tasks write
                        // disjoint (row tile × column group) blocks.
                        let c = unsafe {
                            std::slice::from_raw_parts_mut(out_ptr.get().add(row * n + col0), width)
                        };
                        write_tile_f32(
                            c,
                            &acc_f32[r * nr..r * nr + width],
                            n,
                            row,
                            col0,
                            &epilogue,
                        );
                    }
                }
            }
        });
}

/// `acc (MR × NR) i32 = Σ_k rows[r][k] · b[k/4][j][k%4]` on the given path.
#[inline]
fn micro_kernel(isa: Int8Isa, k_pad: usize, rows: &[*const i8], b: &[i8], acc: &mut [i32]) {
    match isa {
        // SAFETY: the path was detected on this CPU (QuantizedWeight::for_isa); every row
        // pointer has k_pad readable values; b holds k_pad × NR; acc holds MR × NR.
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Avx512Vnni => unsafe { vnni::kernel(k_pad, rows, b, acc) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Avx2 => unsafe { avx2::kernel(k_pad, rows, b, acc) },
        // SAFETY: as above.
        _ => unsafe { scalar::kernel(k_pad, rows, b, acc) },
    }
}
