//! Linear layers: `out (M, N) = epilogue(inp (M, K) · Wᵀ)`, with `W (N, K)` as in PyTorch.
//!
//! Two implementations behind one interface:
//! - [`linear_forward`] (in `baseline.rs`): matrixmultiply's `sgemm` on the unpacked weight,
//!   the reference point for speed and a fallback.
//! - [`linear_packed`]: our GEMM. The weight is packed once at load ([`PackedWeight`]) into
//!   the micro-kernel's panel layout; each call runs the blocked loop below with a per-ISA
//!   micro-kernel chosen at run time ([`Isa::selected`]) and writes every output element once,
//!   with the bias and GELU fused into that write ([`Epilogue`]).
//!
//! The blocked loop itself is in `driver.rs`, shared with the int8 layers and attention; this
//! file holds the f32 parts: the packed weight, the kernels' dispatch and the epilogue.
//!
//! Block sizes, for Zen 5 (L1d 48 KiB, L2 1 MiB per core): KC = 768, so BERT-base's 768-wide
//! inputs take one pass (each output element is written once) and the 3072-wide FFN input
//! four. A B chunk (768 × 32 × 4 B = 96 KiB) then lives in L2, which feeds the micro-kernel's
//! 128 bytes per 16 FMAs easily; KC = 256 (B chunk in L1, but three to twelve read-modify-write
//! passes over C) measured 4–8 % slower end to end. A is not packed: the micro-kernel reads MR
//! rows through row pointers (rows past M point at the last row; their results are dropped),
//! which costs nothing on these shapes and needs no workspace.
//!
//! Small M (a 16-token question) needs no special case: tiles then span all rows, so each B
//! chunk is loaded from memory once, in order, and reused from L2 by the second row block,
//! and the column panels are spread over the threads: the weights stream once per call.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod baseline;
pub(crate) mod driver;
mod scalar;

pub use baseline::linear_forward;
pub use driver::{MC, PANEL_BLOCK_BYTES};

use crate::isa::Isa;
use crate::memory::SharedBytes;
use crate::{activation, SendPtr};
use driver::{for_each_task, Operands, TileSink};
use rayon::prelude::*;
use std::ops::Range;

/// K-chunk of the f32 blocked loop.
pub const KC: usize = 768;

/// An activation applied in the epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    GeluErf,
    GeluTanh,
}

/// What happens to each output element on its one write: `act(acc + bias)`. (BERT's residual
/// add is fused into the LayerNorm that follows each sub-layer instead: `add_layer_norm`.)
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// `(N)`
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
}

impl Epilogue<'_> {
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        activation: Activation::None,
    };
}

/// A weight `(N, K)` packed for one ISA's micro-kernel: column panels of `nr` outputs, each
/// `K × nr` contiguous (`panel[p][k][j] = W[p·nr + j][k]`), zero-padded to whole panels,
/// 64-byte aligned when packed here, or used in place from a mapped file
/// ([`PackedWeight::from_panels`]).
pub struct PackedWeight {
    isa: Isa,
    nr: usize,
    k: usize,
    n: usize,
    storage: Storage,
}

enum Storage {
    /// Packed at load: the panels start `offset` values in (a 64-byte boundary).
    Owned { values: Vec<f32>, offset: usize },
    /// Packed by whoever wrote the file (`densa pack`), 4-byte aligned, checked at load.
    Shared(SharedBytes),
}

/// Why bytes are not a packed f32 weight of the shape and ISA asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum PackedError {
    /// Packed for a micro-kernel `nr` columns wide; this CPU's takes another width.
    Width { stored: usize, wanted: usize },
    /// The bytes are not `(n, k)`'s packed size at that width.
    Length { expected: usize, found: usize },
    /// The bytes do not start on a 4-byte boundary.
    Alignment,
    /// NaN or ±Inf at output `column`, input `k`.
    NonFinite { column: usize, k: usize },
    /// A padding value (a column past `n`) that is not 0.
    Padding { column: usize, k: usize },
}

impl std::fmt::Display for PackedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackedError::Width { stored, wanted } => write!(
                f,
                "panels {stored} columns wide, this CPU's kernel reads {wanted}"
            ),
            PackedError::Length { expected, found } => write!(
                f,
                "{found} bytes, the panel layout of this shape has {expected}"
            ),
            PackedError::Alignment => write!(f, "the values are not 4-byte aligned"),
            PackedError::NonFinite { column, k } => {
                write!(f, "NaN or infinity at output {column}, input {k}")
            }
            PackedError::Padding { column, k } => {
                write!(f, "padding at output {column}, input {k} is not 0")
            }
        }
    }
}

impl std::error::Error for PackedError {}

impl PackedWeight {
    /// Packs `weight (n, k)` for the selected ISA.
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        Self::for_isa(weight, n, k, Isa::selected())
    }

    /// Packs `weight (n, k)` for a given ISA (tests run every ISA the CPU has).
    /// An ISA the CPU lacks falls back to scalar: the micro-kernels rely on this.
    pub fn for_isa(weight: &[f32], n: usize, k: usize, isa: Isa) -> Self {
        crate::check_shape("pack", "weight", weight.len(), n, k);
        Self::pack(&RowBlocks::new(&[&weight[..n * k]], k), n, k, isa)
    }

    /// Packs the weight made of `blocks` stacked along the output dimension (each `(rows, k)`,
    /// row-major; BERT's Q, K and V as one layer), without first copying them together.
    pub fn from_row_blocks(blocks: &[&[f32]], k: usize, isa: Isa) -> Self {
        let rows = RowBlocks::new(blocks, k);
        Self::pack(&rows, rows.len(), k, isa)
    }

    /// Packs the `n` rows of `rows` (`n` given: with k = 0 the blocks cannot say).
    fn pack(rows: &RowBlocks<'_>, n: usize, k: usize, isa: Isa) -> Self {
        let isa = if isa.is_available() { isa } else { Isa::Scalar };
        let nr = kernel_shape(isa).1;
        let panels = n.div_ceil(nr);
        let len = panels * k * nr;
        // Over-allocate by 16 floats to start the panels on a 64-byte boundary.
        let mut storage = crate::memory::zeroed_vec::<f32>(len + 16);
        let offset = storage.as_ptr().align_offset(64).min(16);
        let packed = &mut storage[offset..offset + len];
        packed
            .par_chunks_mut((k * nr).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..nr.min(n - p * nr) {
                    for (kk, &w) in rows.row(p * nr + j).iter().enumerate() {
                        panel[kk * nr + j] = w;
                    }
                }
            });
        PackedWeight {
            isa,
            nr,
            k,
            n,
            storage: Storage::Owned {
                values: storage,
                offset,
            },
        }
    }

    /// The `(panels, k, nr)` shape of `(n, k)` packed `nr` columns wide.
    pub fn packed_shape(n: usize, k: usize, nr: usize) -> [usize; 3] {
        [n.div_ceil(nr.max(1)), k, nr]
    }

    /// Uses `panels` (`(n, k)` packed `nr` wide, as [`PackedWeight::data`] holds them, e.g.
    /// mapped from a file `densa pack` wrote) in place for `isa`'s micro-kernel. Checks the
    /// width against the kernel's, the length, the alignment, that every value is finite and
    /// the padding zero (one parallel pass, which also faults the pages in); nothing is
    /// copied.
    pub fn from_panels(
        panels: SharedBytes,
        n: usize,
        k: usize,
        nr: usize,
        isa: Isa,
    ) -> Result<Self, PackedError> {
        let isa = if isa.is_available() { isa } else { Isa::Scalar };
        let wanted = kernel_shape(isa).1;
        if nr != wanted {
            return Err(PackedError::Width { stored: nr, wanted });
        }
        let expected = Self::packed_shape(n, k, nr).iter().product::<usize>() * 4;
        if panels.len() != expected {
            return Err(PackedError::Length {
                expected,
                found: panels.len(),
            });
        }
        let values = panels.as_f32().ok_or(PackedError::Alignment)?;
        check_panels(values, n, k, nr)?;
        Ok(PackedWeight {
            isa,
            nr,
            k,
            n,
            storage: Storage::Shared(panels),
        })
    }

    /// The packed values, panel after panel (what [`PackedWeight::from_panels`] takes).
    pub fn data(&self) -> &[f32] {
        let len = self.n.div_ceil(self.nr) * self.k * self.nr;
        match &self.storage {
            Storage::Owned { values, offset } => &values[*offset..*offset + len],
            Storage::Shared(bytes) => &bytes.as_f32().expect("checked at load")[..len],
        }
    }

    /// `W (n, k)` row by row, unpacked from the panels.
    pub fn rows(&self) -> Vec<f32> {
        unpack_rows(self.data(), self.n, self.k, self.nr)
    }

    /// Whether the panels are borrowed (from a mapped file) rather than packed here.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.storage, Storage::Shared(_))
    }

    /// The panel width, in output columns.
    pub fn nr(&self) -> usize {
        self.nr
    }

    /// `(out_features, in_features)`
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// `W (n, k)` row by row from its panels `nr` wide (`values` holds whole panels).
pub fn unpack_rows(values: &[f32], n: usize, k: usize, nr: usize) -> Vec<f32> {
    let mut rows = vec![0.0; n * k];
    for (column, row) in rows.chunks_exact_mut(k.max(1)).enumerate().take(n) {
        let panel = &values[(column / nr) * k * nr..];
        for (kk, value) in row.iter_mut().enumerate() {
            *value = panel[kk * nr + column % nr];
        }
    }
    rows
}

/// Every value of `(n, k)` packed `nr` wide (`values`: whole panels) is finite and every
/// padding value 0.
pub fn check_panels(values: &[f32], n: usize, k: usize, nr: usize) -> Result<(), PackedError> {
    if values.len() != n.div_ceil(nr.max(1)) * k * nr {
        return Err(PackedError::Length {
            expected: n.div_ceil(nr.max(1)) * k * nr * 4,
            found: values.len() * 4,
        });
    }
    let panel_len = (k * nr).max(1);
    values
        .par_chunks(panel_len)
        .enumerate()
        .try_for_each(|(p, panel)| {
            // The common case in one sweep; the culprit located only on failure. Finite means
            // an exponent below all ones: the largest |bits| under +Inf's (a max the compiler
            // vectorizes, unlike an early-exit `all`).
            let columns = nr.min(n - p * nr);
            let largest = panel.iter().map(|v| v.to_bits() & 0x7fff_ffff).max();
            let finite = largest.unwrap_or(0) < f32::INFINITY.to_bits();
            let padded = columns == nr
                || (0..k).all(|kk| {
                    panel[kk * nr + columns..(kk + 1) * nr]
                        .iter()
                        .all(|&v| v == 0.0)
                });
            if finite && padded {
                return Ok(());
            }
            for kk in 0..k {
                for j in 0..nr {
                    let v = panel[kk * nr + j];
                    let column = p * nr + j;
                    if j < columns && !v.is_finite() {
                        return Err(PackedError::NonFinite { column, k: kk });
                    }
                    if j >= columns && v != 0.0 {
                        return Err(PackedError::Padding { column, k: kk });
                    }
                }
            }
            Ok(())
        })
}

/// Rows of `k` values spread over blocks stacked one after the other.
pub struct RowBlocks<'a, T = f32> {
    blocks: &'a [&'a [T]],
    k: usize,
}

impl<'a, T> RowBlocks<'a, T> {
    /// Panics if a block is not a whole number of rows.
    pub fn new(blocks: &'a [&'a [T]], k: usize) -> Self {
        assert!(
            blocks
                .iter()
                .all(|b| k > 0 && b.len().is_multiple_of(k) || b.is_empty()),
            "row blocks must hold whole rows of {k} values"
        );
        RowBlocks { blocks, k }
    }

    pub fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.len() / self.k.max(1)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` of the stack (empty when k = 0).
    pub fn row(&self, mut i: usize) -> &'a [T] {
        if self.k == 0 {
            return &[];
        }
        for block in self.blocks {
            let rows = block.len() / self.k;
            if i < rows {
                return &block[i * self.k..(i + 1) * self.k];
            }
            i -= rows;
        }
        panic!("row {i} past the stacked blocks");
    }
}

/// `(MR, NR)` of an ISA's micro-kernel.
pub fn kernel_shape(isa: Isa) -> (usize, usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => driver::tile_shape::<avx2::Avx2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => driver::tile_shape::<avx512::Avx512>(),
        _ => driver::tile_shape::<scalar::Scalar>(),
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
        for row in out[..m * n].chunks_exact_mut(n) {
            write_tile(weight.isa, row, &zeros, 0, &epilogue, true, true);
        }
        return;
    }
    let (mr, nr) = kernel_shape(weight.isa);
    let sink = F32Sink {
        out: SendPtr(out.as_mut_ptr()),
        ldc: n,
        isa: weight.isa,
        epilogue: &epilogue,
    };
    for_each_task(m, n.div_ceil(nr), mr, |rows, panels| {
        // SAFETY: tasks write disjoint (row tile × column group) blocks of `out`, which holds
        // m × n values (asserted above) and outlives the parallel loop; inp holds m × k.
        unsafe { gemm_block(&sink, inp, k, weight.panels(), rows, panels) };
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
    crate::check_shape(what, "input", inp.len(), m, k);
    crate::check_shape(what, "output", out.len(), m, n);
    if let Some(b) = e.bias {
        assert!(
            b.len() >= n,
            "{what}: bias has {} values, needs {n}",
            b.len()
        );
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

/// Where f32 tiles go: `C (rows, ldc)` through the epilogue.
pub(crate) struct F32Sink<'a> {
    pub out: SendPtr,
    pub ldc: usize,
    pub isa: Isa,
    pub epilogue: &'a Epilogue<'a>,
}

impl TileSink<f32> for F32Sink<'_> {
    #[inline(always)]
    unsafe fn write(&self, row: usize, col0: usize, acc: &[f32], first: bool, last: bool) {
        // SAFETY: (row, col0 .. col0 + acc.len()) lies inside C and belongs to the calling
        // task (the trait's contract).
        let c = unsafe {
            std::slice::from_raw_parts_mut(self.out.get().add(row * self.ldc + col0), acc.len())
        };
        write_tile(self.isa, c, acc, col0, self.epilogue, first, last);
    }
}

/// Rows `rows` × column panels `panels` of `C = epilogue(A · B)`, on the calling thread: the
/// f32 entry to the blocked loop (linear layers and attention). `A` is read in place with row
/// stride `lda`. The one place an f32 ISA picks its kernel.
///
/// # Safety
/// `sink` must be writable for these rows and the panels' columns by this caller alone; `a`
/// must hold `(rows.end - 1) · lda + B.k` values (checked).
pub(crate) unsafe fn gemm_block(
    sink: &F32Sink<'_>,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let ops = Operands {
        a,
        lda,
        b: b.data,
        panel_len: b.k * b.nr,
        k: b.k,
        n: b.n,
        kc: KC,
    };
    match b.isa {
        // SAFETY: Panels only carry an ISA this CPU has (PackedWeight::for_isa, attention);
        // the caller's contract is forwarded.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::task(&ops, rows, panels, sink) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::task(&ops, rows, panels, sink) },
        // SAFETY: the portable kernel needs no features.
        _ => unsafe { driver::gemm_task::<scalar::Scalar, _>(&ops, rows, panels, sink) },
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

/// Merges one row of a micro-tile into the output: on the first K chunk `c = acc`, later
/// `c += acc`; on the last chunk [`finish_tile`]. `c` starts at column `col0`.
#[inline(always)]
pub(crate) fn write_tile(
    isa: Isa,
    c: &mut [f32],
    acc: &[f32],
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
    if last {
        finish_tile(isa, c, col0, e);
    }
}

/// The epilogue on one finished row of a tile, in place: add the bias, apply the activation.
/// `c` starts at column `col0`. (The int8 path dequantizes straight into `c`, then this.)
#[inline(always)]
pub(crate) fn finish_tile(isa: Isa, c: &mut [f32], col0: usize, e: &Epilogue<'_>) {
    let width = c.len();
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
}
