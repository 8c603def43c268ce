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
//! - **256-bit VNNI** (AVX-VNNI, or AVX-512 VNNI's VL form): the same unsigned shift, 6 × 16.
//! - **AVX2** (`vpmaddubsw` would saturate u8 × s8 pair sums at 16 bits): the sign trick,
//!   `x_q · w_q = (sign(w_q) · x_q) · |w_q|`, keeps both factors within 127, so a pair sum is
//!   at most 2 · 127 · 127 = 32258 and never saturates; `vpmaddwd` with ones widens to s32.
//! - **scalar**: the plain sum.
//!
//! Weights are packed like the f32 GEMM's panels, four k at a time:
//! `panel[p][k/4][j][k%4]` for NR columns, K padded with zeros to a multiple of 4.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod vnni;

use crate::gemm::Epilogue;
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
    /// 256-bit VNNI in the AVX-VNNI (VEX) encoding: CPUs whose widest path is AVX2.
    AvxVnni,
    /// The same 256-bit kernel in the AVX-512 VNNI + VL (EVEX) encoding. Never selected (an
    /// AVX-512 CPU takes the 512-bit kernel): it runs the 256-bit loop in tests on CPUs that
    /// lack the `avxvnni` flag (see `avxvnni.rs`).
    AvxVnniEvex,
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
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avxvnni") {
                    out.push(Int8Isa::AvxVnni);
                }
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                    out.push(Int8Isa::AvxVnniEvex);
                }
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

    /// The best available, capped by `DENSA_ISA` as the f32 kernels are: on an AVX-512 CPU,
    /// `DENSA_ISA=avx2` selects the AVX2 sign-trick path (so that the CI run with it covers
    /// that path end to end); a CPU whose best f32 path is AVX2 gets AVX-VNNI when it has it,
    /// with or without `DENSA_ISA=avx2`.
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
            Int8Isa::Scalar => scalar::SHAPE,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx2 => avx2::SHAPE,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::AvxVnni | Int8Isa::AvxVnniEvex => avxvnni::SHAPE,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx512Vnni => vnni::SHAPE,
            #[cfg(not(target_arch = "x86_64"))]
            _ => scalar::SHAPE,
        }
    }

    /// The f32 ISA of the same machine level (for the epilogue's activations).
    pub fn f32_isa(self) -> Isa {
        match self {
            Int8Isa::Scalar => Isa::Scalar,
            Int8Isa::Avx2 | Int8Isa::AvxVnni | Int8Isa::AvxVnniEvex => Isa::Avx2,
            Int8Isa::Avx512Vnni => Isa::Avx512,
        }
    }

    /// Whether the kernel multiplies unsigned activations (`vpdpbusd`): they are stored as
    /// `q + 128` and the weights carry the compensation `128 · Σ_k w`.
    pub fn shifts_activations(self) -> bool {
        matches!(
            self,
            Int8Isa::AvxVnni | Int8Isa::AvxVnniEvex | Int8Isa::Avx512Vnni
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::Scalar => "scalar",
            Int8Isa::Avx2 => "avx2",
            Int8Isa::AvxVnni => "avxvnni",
            Int8Isa::AvxVnniEvex => "avx512vnni-ymm",
            Int8Isa::Avx512Vnni => "avx512vnni",
        }
    }
}

/// Symmetric int8 quantization of a row: `(q, scale)` with `q = round(x / scale)`,
/// `scale = max|x| / 127` (1 for an all-zero row). `q` is padded with zeros to its length.
pub fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
    quantize_row_body(x, q)
}

/// The body of [`quantize_row`], written to vectorise: lane maxima, rounding to nearest
/// (ties to even) by adding and subtracting 1.5·2²³, the integer read from the float's bits.
#[inline(always)]
fn quantize_row_body(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = crate::simd::max_abs(x);
    let scale = if amax > 0.0 && amax.is_finite() {
        amax / 127.0
    } else {
        1.0
    };
    let inv = 1.0 / scale;
    const ROUND: f32 = 12_582_912.0;
    for (q, &v) in q.iter_mut().zip(x) {
        let shifted = (v * inv).clamp(-127.0, 127.0) + ROUND;
        *q = (shifted.to_bits() as i32 - 0x4B40_0000) as i8;
    }
    q[x.len()..].fill(0);
    scale
}

crate::multiversion! {
    /// `q ^= 0x80` bytewise: `q + 128` as unsigned (padding zeros become 128, multiplied by the
    /// zero-padded weights).
    fn flip_sign_bits / flip_sign_bits_isa(q: &mut [i8]) {
        for v in q.iter_mut() {
            *v ^= i8::MIN;
        }
    }
}

crate::multiversion! {
    /// [`quantize_row`] for every row of `x` (rows of `k` values into rows of `k_pad`).
    fn quantize_rows / quantize_rows_isa(x: &[f32], q: &mut [i8], scales: &mut [f32], k: usize) {
        let k_pad = q.len() / scales.len().max(1);
        for ((row, q_row), s) in x.chunks_exact(k.max(1)).zip(q.chunks_exact_mut(k_pad.max(1))).zip(scales.iter_mut()) {
            *s = quantize_row_body(row, q_row);
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

    pub fn isa(&self) -> Int8Isa {
        self.isa
    }
}

/// Activations quantized per token for one int8 path: `(rows, k_pad)` int8 (stored as `q + 128`
/// where the path multiplies unsigned values) and one scale per row. Reused across calls (no
/// allocation once grown). Filled by [`Int8Scratch::quantize`], or by the LayerNorm that
/// produces the activations ([`crate::add_layer_norm_quantize`]).
#[derive(Default)]
pub struct Int8Scratch {
    quantized: Vec<i8>,
    scales: Vec<f32>,
    rows: usize,
    k: usize,
    /// Whether `quantized` holds `q + 128`.
    shifted: bool,
}

impl Int8Scratch {
    /// Quantizes `inp (m, k)` per row for `isa`'s kernels.
    pub fn quantize(&mut self, inp: &[f32], m: usize, k: usize, isa: Int8Isa) {
        assert!(
            inp.len() >= m * k,
            "quantize: input has {} values, ({m}, {k}) needs {}",
            inp.len(),
            m * k
        );
        let rows_per_task = 16;
        let (quantized, scales) = self.prepare(m, k, isa);
        let k_pad = k.next_multiple_of(4);
        quantized
            .par_chunks_mut((k_pad * rows_per_task).max(1))
            .zip(scales.par_chunks_mut(rows_per_task))
            .enumerate()
            .for_each(|(t, (q, s))| {
                let first = t * rows_per_task;
                quantize_rows_for(isa, &inp[first * k..(first + s.len()) * k], q, s, k);
            });
    }

    /// Sizes the buffers for `(m, k)` on `isa` and returns them to be filled: `(m, k_pad)`
    /// quantized values and `m` scales.
    pub(crate) fn prepare(&mut self, m: usize, k: usize, isa: Int8Isa) -> (&mut [i8], &mut [f32]) {
        let k_pad = k.next_multiple_of(4);
        self.quantized.resize(m * k_pad, 0);
        self.scales.resize(m, 0.0);
        (self.rows, self.k, self.shifted) = (m, k, isa.shifts_activations());
        (&mut self.quantized[..m * k_pad], &mut self.scales[..m])
    }
}

/// Quantizes rows of `k` values of `x` into rows of `k_pad` of `q` (one scale each) in the
/// form `isa`'s kernels read.
pub(crate) fn quantize_rows_for(
    isa: Int8Isa,
    x: &[f32],
    q: &mut [i8],
    scales: &mut [f32],
    k: usize,
) {
    let f32_isa = isa.f32_isa();
    quantize_rows_isa(f32_isa, x, q, scales, k);
    if isa.shifts_activations() {
        // VNNI multiplies unsigned activations: store q + 128 (the sign bit flipped).
        flip_sign_bits_isa(f32_isa, q);
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
    // Each step checks its own slices: the input here, the output, bias and residual there.
    scratch.quantize(inp, m, weight.k, weight.isa);
    linear_int8_quantized(out, weight, m, epilogue, scratch);
}

/// [`linear_int8`] on activations already quantized (by [`Int8Scratch::quantize`] or a fused
/// LayerNorm) for this weight's path.
pub fn linear_int8_quantized(
    out: &mut [f32],
    weight: &QuantizedWeight,
    m: usize,
    epilogue: Epilogue<'_>,
    activations: &Int8Scratch,
) {
    let (k, k_pad, n, nr) = (weight.k, weight.k_pad, weight.n, weight.nr);
    assert!(
        activations.rows == m && activations.k == k,
        "linear_int8: activations quantized as ({}, {}), the layer needs ({m}, {k})",
        activations.rows,
        activations.k
    );
    assert!(
        activations.shifted == weight.isa.shifts_activations(),
        "linear_int8: activations quantized for another int8 path than {}",
        weight.isa.name()
    );
    // The output, bias and residual (the input was checked when it was quantized).
    crate::gemm::check_linear_shapes("linear_int8", out, &[], m, 0, n, &epilogue);
    if m == 0 || n == 0 {
        return;
    }
    let (quantized, scales) = (
        &activations.quantized[..m * k_pad],
        &activations.scales[..m],
    );

    let grid = crate::gemm::TaskGrid::new(m, n.div_ceil(nr), weight.isa.shape().0);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..grid.tasks()).into_par_iter().for_each(|task| {
        let (rows, panel_range) = grid.task(task);
        // SAFETY: tasks write disjoint (row tile × column group) blocks of `out` (m × n
        // values, asserted above); the int8 path was detected on this CPU.
        unsafe {
            int8_task(
                out_ptr.get(),
                weight,
                quantized,
                scales,
                rows,
                panel_range,
                &epilogue,
            )
        };
    });
}

/// One task of [`linear_int8`], compiled once per path so the dequantization and the epilogue
/// run at the micro-kernel's vector width.
///
/// # Safety
/// `out` points at `m × n` values of which this task alone writes rows `rows` × the columns of
/// `panels`.
unsafe fn int8_task(
    out: *mut f32,
    weight: &QuantizedWeight,
    quantized: &[i8],
    scales: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
) {
    match weight.isa {
        // SAFETY: forwarded contract; the path exists on this CPU (QuantizedWeight::for_isa).
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Avx512Vnni => unsafe {
            int8_task_vnni(out, weight, quantized, scales, rows, panels, epilogue)
        },
        // SAFETY: as above (AVX-VNNI implies AVX2: Int8Isa::available).
        #[cfg(target_arch = "x86_64")]
        Int8Isa::Avx2 | Int8Isa::AvxVnni | Int8Isa::AvxVnniEvex => unsafe {
            int8_task_avx2(out, weight, quantized, scales, rows, panels, epilogue)
        },
        // SAFETY: forwarded contract.
        _ => unsafe { int8_task_generic(out, weight, quantized, scales, rows, panels, epilogue) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int8_task_vnni(
    out: *mut f32,
    w: &QuantizedWeight,
    q: &[i8],
    s: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    e: &Epilogue<'_>,
) {
    // SAFETY: forwarded contract.
    unsafe { int8_task_generic(out, w, q, s, rows, panels, e) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int8_task_avx2(
    out: *mut f32,
    w: &QuantizedWeight,
    q: &[i8],
    s: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    e: &Epilogue<'_>,
) {
    // SAFETY: forwarded contract.
    unsafe { int8_task_generic(out, w, q, s, rows, panels, e) }
}

/// The body of [`int8_task`].
#[inline(always)]
unsafe fn int8_task_generic(
    out: *mut f32,
    weight: &QuantizedWeight,
    quantized: &[i8],
    scales: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
) {
    let (k_pad, n, nr) = (weight.k_pad, weight.n, weight.nr);
    let mr = weight.isa.shape().0;
    let f32_isa = weight.isa.f32_isa();
    let shifted = weight.isa.shifts_activations();
    let mut acc_i32 = [0i32; 8 * 32];
    let mut acc_f32 = [0.0f32; 8 * 32];
    let mut row_ptrs = [std::ptr::null::<i8>(); 8];
    // Panels go in blocks of about 256 KiB of weights (they stay in L2), each block swept by
    // every row tile of the task: a row's outputs for the block are then written as one
    // contiguous run, not 32 columns at a time down all the rows (which missed the cache and
    // the TLB on nearly every store).
    let panels_per_block = (256 * 1024 / (k_pad * nr).max(1)).max(1);
    let mut block_start = panels.start;
    while block_start < panels.end {
        let block = block_start..(block_start + panels_per_block).min(panels.end);
        block_start = block.end;
        for r0 in rows.clone().step_by(mr) {
            let valid = mr.min(rows.end - r0);
            for (r, ptr) in row_ptrs[..mr].iter_mut().enumerate() {
                // Rows past the tile repeat its last row; their results are dropped.
                *ptr = quantized[(r0 + r.min(valid - 1)) * k_pad..].as_ptr();
            }
            for p in block.clone() {
                let b = &weight.data[p * k_pad * nr..][..k_pad * nr];
                let (col0, width) = (p * nr, nr.min(n - p * nr));
                let (channel_scales, compensation) = (
                    &weight.scales[col0..col0 + width],
                    &weight.shift_compensation[col0..col0 + width],
                );
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
                    let (dots, values) = (
                        &acc_i32[r * nr..r * nr + width],
                        &mut acc_f32[r * nr..r * nr + width],
                    );
                    for j in 0..width {
                        let dot = if shifted {
                            dots[j] - compensation[j]
                        } else {
                            dots[j]
                        };
                        values[j] = dot as f32 * (sx * channel_scales[j]);
                    }
                    // SAFETY: row < m and col0 + width <= n: in bounds; this block is ours
                    // (contract).
                    let c =
                        unsafe { std::slice::from_raw_parts_mut(out.add(row * n + col0), width) };
                    crate::gemm::write_tile_with(f32_isa, c, values, n, row, col0, epilogue);
                }
            }
        }
    }
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
        #[cfg(target_arch = "x86_64")]
        Int8Isa::AvxVnni => unsafe { avxvnni::kernel_vex(k_pad, rows, b, acc) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Int8Isa::AvxVnniEvex => unsafe { avxvnni::kernel_evex(k_pad, rows, b, acc) },
        // SAFETY: as above.
        _ => unsafe { scalar::kernel(k_pad, rows, b, acc) },
    }
}
