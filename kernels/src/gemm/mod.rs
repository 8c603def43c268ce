//! Linear layers: `out (M, N) = epilogue(inp (M, K) · Wᵀ)`, with `W (N, K)` as in PyTorch.
//!
//! Two implementations behind one interface:
//! - [`linear_forward`] (in `baseline.rs`): matrixmultiply's `sgemm` on the unpacked weight,
//!   the reference point for speed and a fallback.
//! - [`linear_packed`]: our GEMM. The weight is packed once at load ([`PackedWeight`]) into
//!   the micro-kernel's panel layout; each call runs the blocked loop below with a per-ISA
//!   micro-kernel chosen at run time ([`Isa::selected`]) and writes every output element once,
//!   with the bias, GELU and residual add fused into that write ([`Epilogue`]).
//!
//! ## The blocked loop (BLIS's five loops, with B packed ahead of time)
//!
//! ```text
//! tasks (parallel): output tiles of ≤ MC rows × a group of NR-wide column panels
//!   for pc in 0..K step KC                     ← KC×NR panel chunk of B (96 KiB) stays in L2
//!     for each column panel p of the tile      ← B streamed once from memory per tile
//!       for each MR-row block of the tile      ← rows of A read in place (row pointers)
//!         micro-kernel: acc (MR×NR) = A[rows, pc..pc+KC] · B[p][pc..pc+KC]
//!         epilogue: C (+)= acc; at the last KC chunk: + bias, GELU, + residual
//! ```
//!
//! Block sizes, for Zen 5 (L1d 48 KiB, L2 1 MiB per core): KC = 768, so BERT-base's 768-wide
//! inputs take one pass (each output element is written once) and the 3072-wide FFN input
//! four. A B chunk (768 × 32 × 4 B = 96 KiB) then lives in L2, which feeds the micro-kernel's
//! 128 bytes per 16 FMAs easily; KC = 256 (B chunk in L1, but three to twelve read-modify-write
//! passes over C) measured 4–8 % slower end to end. MC = 256 rows, so the A block
//! (256 × 768 × 4 B = 768 KiB) stays in L2 while the panels of the tile stream past. A is not packed: the micro-kernel reads MR rows through row pointers
//! (rows past M point at the last row; their results are dropped), which costs nothing on
//! these shapes and needs no workspace.
//!
//! Small M (a 16-token question) needs no special case: tiles then span all rows, so each B
//! chunk is loaded from memory once, in order, and reused from L2 by the second row block,
//! and the column panels are spread over the threads: the weights stream once per call.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod baseline;
mod scalar;

pub use baseline::linear_forward;

use crate::isa::Isa;
use crate::{activation, SendPtr};
use rayon::prelude::*;

/// K-chunk of the blocked loop.
pub const KC: usize = 768;
/// Rows per task tile.
pub const MC: usize = 256;
/// Largest micro-tile any kernel uses (for the on-stack accumulator).
const MAX_TILE: usize = 8 * 32;

/// An activation applied in the epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    GeluErf,
    GeluTanh,
}

/// What happens to each output element on its one write: `act(acc + bias) + residual`.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// `(N)`
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
    /// `(M, N)`, added after the activation (BERT's residual connections).
    pub residual: Option<&'a [f32]>,
}

impl Epilogue<'_> {
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        activation: Activation::None,
        residual: None,
    };
}

/// A weight `(N, K)` packed for one ISA's micro-kernel: column panels of `nr` outputs, each
/// `K × nr` contiguous (`panel[p][k][j] = W[p·nr + j][k]`), zero-padded to whole panels,
/// 64-byte aligned.
pub struct PackedWeight {
    isa: Isa,
    nr: usize,
    k: usize,
    n: usize,
    storage: Vec<f32>,
    offset: usize,
}

impl PackedWeight {
    /// Packs `weight (n, k)` for the selected ISA.
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        Self::for_isa(weight, n, k, Isa::selected())
    }

    /// Packs `weight (n, k)` for a given ISA (tests run every ISA the CPU has).
    /// An ISA the CPU lacks falls back to scalar: the micro-kernels rely on this.
    pub fn for_isa(weight: &[f32], n: usize, k: usize, isa: Isa) -> Self {
        let isa = if isa.is_available() { isa } else { Isa::Scalar };
        assert!(
            weight.len() >= n * k,
            "pack: weight has {} values, ({n}, {k}) needs {}",
            weight.len(),
            n * k
        );
        let nr = kernel_shape(isa).1;
        let panels = n.div_ceil(nr);
        let len = panels * k * nr;
        // Over-allocate by 16 floats to start the panels on a 64-byte boundary.
        let mut storage = vec![0.0f32; len + 16];
        let offset = storage.as_ptr().align_offset(64).min(16);
        let packed = &mut storage[offset..offset + len];
        packed
            .par_chunks_mut(k * nr)
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..nr.min(n - p * nr) {
                    let row = &weight[(p * nr + j) * k..][..k];
                    for (kk, &w) in row.iter().enumerate() {
                        panel[kk * nr + j] = w;
                    }
                }
            });
        PackedWeight {
            isa,
            nr,
            k,
            n,
            storage,
            offset,
        }
    }

    fn data(&self) -> &[f32] {
        &self.storage[self.offset..self.offset + self.n.div_ceil(self.nr) * self.k * self.nr]
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// `(MR, NR)` of an ISA's micro-kernel.
pub fn kernel_shape(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Scalar => scalar::SHAPE,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::SHAPE,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::SHAPE,
        #[cfg(not(target_arch = "x86_64"))]
        _ => scalar::SHAPE,
    }
}

/// `out (m, N) = epilogue(inp (m, K) · Wᵀ)` with the packed weight `W`.
///
/// Panics with a message if a slice is shorter than its shape says.
pub fn linear_packed(
    out: &mut [f32],
    inp: &[f32],
    weight: &PackedWeight,
    m: usize,
    epilogue: Epilogue<'_>,
) {
    let (k, n) = (weight.k, weight.n);
    check_linear_shapes("linear", out, inp, m, k, n, &epilogue);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // Empty product: the epilogue of zero.
        let zeros = vec![0.0; n];
        for (i, row) in out[..m * n].chunks_exact_mut(n).enumerate() {
            write_tile(weight.isa, row, &zeros, n, i, 0, &epilogue, true, true);
        }
        return;
    }
    let (mr, nr) = kernel_shape(weight.isa);
    let grid = TaskGrid::new(m, n.div_ceil(nr), mr);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..grid.tasks()).into_par_iter().for_each(|task| {
        let (rows, panel_range) = grid.task(task);
        // SAFETY: tasks write disjoint (row tile × column group) blocks of `out`, which holds
        // m × n values (asserted above) and outlives the parallel loop.
        unsafe {
            gemm_block(
                out_ptr.get(),
                n,
                inp,
                k,
                weight.panels(),
                rows,
                panel_range,
                &epilogue,
            )
        };
    });
}

/// Panics with a message naming `what` if a slice is shorter than the shape says.
pub(crate) fn check_linear_shapes(
    what: &str,
    out: &[f32],
    inp: &[f32],
    m: usize,
    k: usize,
    n: usize,
    e: &Epilogue<'_>,
) {
    assert!(
        inp.len() >= m * k,
        "{what}: input has {} values, ({m}, {k}) needs {}",
        inp.len(),
        m * k
    );
    assert!(
        out.len() >= m * n,
        "{what}: output has {} values, ({m}, {n}) needs {}",
        out.len(),
        m * n
    );
    if let Some(b) = e.bias {
        assert!(
            b.len() >= n,
            "{what}: bias has {} values, needs {n}",
            b.len()
        );
    }
    if let Some(r) = e.residual {
        assert!(
            r.len() >= m * n,
            "{what}: residual has {} values, needs {}",
            r.len(),
            m * n
        );
    }
}

/// How an `(m rows × panels)` output is cut into parallel tasks: about four per thread, for
/// balance. Column groups first (each streams its share of the weights once); when the panels
/// run out (many threads, narrow layers), rows are split too, in tiles of whole micro-kernel
/// rows, at most MC.
pub(crate) struct TaskGrid {
    m: usize,
    panels: usize,
    row_tile: usize,
    panels_per_group: usize,
    row_tiles: usize,
    col_groups: usize,
}

impl TaskGrid {
    pub(crate) fn new(m: usize, panels: usize, mr: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let tasks_wanted = if threads == 1 { 1 } else { 4 * threads };
        let row_tiles_wanted = tasks_wanted.div_ceil(panels).max(m.div_ceil(MC));
        let row_tile = m
            .div_ceil(row_tiles_wanted)
            .next_multiple_of(mr)
            .clamp(mr, MC);
        let row_tiles = m.div_ceil(row_tile);
        let col_groups = tasks_wanted.div_ceil(row_tiles).clamp(1, panels);
        let panels_per_group = panels.div_ceil(col_groups);
        let col_groups = panels.div_ceil(panels_per_group);
        TaskGrid {
            m,
            panels,
            row_tile,
            panels_per_group,
            row_tiles,
            col_groups,
        }
    }

    pub(crate) fn tasks(&self) -> usize {
        self.row_tiles * self.col_groups
    }

    /// The rows and column panels of task `t`: disjoint from every other task's.
    pub(crate) fn task(&self, t: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (tile, group) = (t / self.col_groups, t % self.col_groups);
        let rows = tile * self.row_tile..((tile + 1) * self.row_tile).min(self.m);
        let panels =
            group * self.panels_per_group..((group + 1) * self.panels_per_group).min(self.panels);
        (rows, panels)
    }
}

/// A right-hand matrix `B (k, n)` in the micro-kernel's panel layout: panels of `nr`
/// columns, each `k × nr` contiguous, zero-padded to whole panels.
#[derive(Clone, Copy)]
pub(crate) struct Panels<'a> {
    pub data: &'a [f32],
    pub k: usize,
    pub n: usize,
    pub nr: usize,
    pub isa: Isa,
}

impl PackedWeight {
    pub(crate) fn panels(&self) -> Panels<'_> {
        Panels {
            data: self.data(),
            k: self.k,
            n: self.n,
            nr: self.nr,
            isa: self.isa,
        }
    }
}

/// Rows `rows` × column panels `panels` of `C = epilogue(A · B)`, on the calling thread.
/// `A` is read in place with row stride `lda`; `C` has row stride `ldc`.
///
/// # Safety
/// `out` must point at a matrix with at least `rows.end` rows of stride `ldc ≥ B.n`, whose
/// block (rows × panel columns) no other thread touches meanwhile; `a` must hold
/// `(rows.end - 1) · lda + B.k` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_block(
    out: *mut f32,
    ldc: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
) {
    // The whole loop is compiled once per ISA, so that the epilogue's adds inline at the
    // micro-kernel's vector width.
    match b.isa {
        // SAFETY: Panels only carry an ISA this CPU has (PackedWeight::for_isa, attention);
        // the caller's contract is forwarded unchanged.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { gemm_block_avx512(out, ldc, a, lda, b, rows, panels, epilogue) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { gemm_block_avx2(out, ldc, a, lda, b, rows, panels, epilogue) },
        // SAFETY: the caller's contract, forwarded.
        _ => unsafe { gemm_block_generic(out, ldc, a, lda, b, rows, panels, epilogue) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block_avx512(
    out: *mut f32,
    ldc: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
) {
    // SAFETY: forwarded contract.
    unsafe { gemm_block_generic(out, ldc, a, lda, b, rows, panels, epilogue) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block_avx2(
    out: *mut f32,
    ldc: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
) {
    // SAFETY: forwarded contract.
    unsafe { gemm_block_generic(out, ldc, a, lda, b, rows, panels, epilogue) }
}

/// The body of [`gemm_block`], inlined into each ISA's copy.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block_generic(
    out: *mut f32,
    ldc: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
) {
    let (k, n, nr) = (b.k, b.n, b.nr);
    let mr = kernel_shape(b.isa).0;
    assert!(
        rows.is_empty() || a.len() >= (rows.end - 1) * lda + k,
        "gemm: A is too short"
    );
    assert!(
        b.data.len() >= n.div_ceil(nr) * k * nr && panels.end <= n.div_ceil(nr),
        "gemm: B is too short"
    );
    let mut acc = [0.0f32; MAX_TILE];
    let mut row_ptrs = [std::ptr::null::<f32>(); 8];
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let (first, last) = (pc == 0, pc + kc == k);
        for p in panels.clone() {
            let b_chunk = &b.data[p * k * nr + pc * nr..][..kc * nr];
            let (col0, width) = (p * nr, nr.min(n - p * nr));
            for r0 in rows.clone().step_by(mr) {
                let valid_rows = mr.min(rows.end - r0);
                for (r, ptr) in row_ptrs[..mr].iter_mut().enumerate() {
                    // Rows past the block repeat its last row; their results are dropped.
                    *ptr = a[(r0 + r.min(valid_rows - 1)) * lda + pc..].as_ptr();
                }
                micro_kernel(b.isa, kc, &row_ptrs[..mr], b_chunk, &mut acc[..mr * nr]);
                for r in 0..valid_rows {
                    let row = r0 + r;
                    // SAFETY: row < rows.end and col0 + width <= n <= ldc: in bounds of `out`;
                    // this block belongs to this caller alone (contract above).
                    let c =
                        unsafe { std::slice::from_raw_parts_mut(out.add(row * ldc + col0), width) };
                    let acc_row = &acc[r * nr..r * nr + width];
                    write_tile(b.isa, c, acc_row, n, row, col0, epilogue, first, last);
                }
            }
        }
    }
}

/// Packs `B = scale · srcᵀ` into panel layout, where `src` is `(n, k)` with row stride `ld`:
/// `panel[p][kk][j] = scale · src[(p·nr + j)·ld + kk]`. `dst` holds `⌈n/nr⌉ · k · nr` values.
pub(crate) fn pack_transposed(
    dst: &mut [f32],
    src: &[f32],
    ld: usize,
    n: usize,
    k: usize,
    nr: usize,
    scale: f32,
) {
    for (p, panel) in dst[..n.div_ceil(nr) * k * nr]
        .chunks_exact_mut(k * nr)
        .enumerate()
    {
        let cols = nr.min(n - p * nr);
        for j in 0..nr {
            if j < cols {
                let row = &src[(p * nr + j) * ld..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * nr + j] = scale * v;
                }
            } else {
                (0..k).for_each(|kk| panel[kk * nr + j] = 0.0);
            }
        }
    }
}

/// Packs `B (k, n)`, row-major with row stride `ld`, into panel layout:
/// `panel[p][kk][j] = src[kk·ld + p·nr + j]`. `dst` holds `⌈n/nr⌉ · k · nr` values.
pub(crate) fn pack_rows(dst: &mut [f32], src: &[f32], ld: usize, k: usize, n: usize, nr: usize) {
    for (p, panel) in dst[..n.div_ceil(nr) * k * nr]
        .chunks_exact_mut(k * nr)
        .enumerate()
    {
        let cols = nr.min(n - p * nr);
        for (kk, out) in panel.chunks_exact_mut(nr).enumerate() {
            out[..cols].copy_from_slice(&src[kk * ld + p * nr..][..cols]);
            out[cols..].fill(0.0);
        }
    }
}

/// Dispatches to the micro-kernel of `isa`: `acc (MR × NR) = Σ_k rows[r][k] · b[k][j]`.
#[inline]
fn micro_kernel(isa: Isa, kc: usize, rows: &[*const f32], b: &[f32], acc: &mut [f32]) {
    match isa {
        // SAFETY: the ISA was detected on this CPU (Isa::available) before a PackedWeight for
        // it could exist; every row pointer has kc readable values (they point into `inp` at
        // column pc, and pc + kc <= K); b holds kc × NR values; acc holds MR × NR.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::kernel(kc, rows, b, acc) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::kernel(kc, rows, b, acc) },
        // SAFETY: as above, without ISA requirements.
        _ => unsafe { scalar::kernel(kc, rows, b, acc) },
    }
}

/// Writes one row of finished results (the int8 path's dequantized tile) through the epilogue.
#[inline(always)]
pub(crate) fn write_tile_with(
    isa: Isa,
    c: &mut [f32],
    acc: &[f32],
    n: usize,
    row: usize,
    col0: usize,
    e: &Epilogue<'_>,
) {
    write_tile(isa, c, acc, n, row, col0, e, true, true);
}

/// Merges one row of a micro-tile into the output: on the first K chunk `c = acc`, later
/// `c += acc`; on the last chunk add the bias, apply the activation, add the residual.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn write_tile(
    isa: Isa,
    c: &mut [f32],
    acc: &[f32],
    n: usize,
    row: usize,
    col0: usize,
    e: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let width = c.len();
    if first {
        c.copy_from_slice(&acc[..width]);
    } else {
        c.iter_mut().zip(acc).for_each(|(c, a)| *c += a);
    }
    if !last {
        return;
    }
    if let Some(bias) = e.bias {
        c.iter_mut()
            .zip(&bias[col0..col0 + width])
            .for_each(|(c, b)| *c += b);
    }
    // The activation runs in its vectorised, ISA-specific form.
    match e.activation {
        Activation::None => {}
        Activation::GeluErf => activation::gelu_erf_chunk_isa(isa, c),
        Activation::GeluTanh => activation::gelu_tanh_chunk_isa(isa, c),
    }
    if let Some(residual) = e.residual {
        c.iter_mut()
            .zip(&residual[row * n + col0..][..width])
            .for_each(|(c, r)| *c += r);
    }
}
