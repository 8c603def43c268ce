//! The one blocked GEMM loop, shared by the f32 and the int8 linear layers and by attention.
//!
//! A [`MicroKernel`] is the only thing that differs between ISAs and element types: its tile
//! shape (MR × NR), how many k one packed group holds, and a body that computes one MR × NR
//! tile over a K chunk into registers. A [`TileSink`] is what happens to a finished tile row
//! (the f32 epilogue, or int8 dequantization then the epilogue). Everything else, the
//! blocking and the split into parallel tasks, is written once here:
//!
//! ```text
//! tasks (parallel, TaskGrid): ≤ MC rows × a group of NR-wide column panels
//!   for pc in 0..K step KC                     ← one pass for K ≤ KC (every int8 layer)
//!     for each block of panels (≈ PANEL_BLOCK_BYTES of B, stays in L2)
//!       for each MR-row block of the task      ← A rows read in place, stay in L1
//!         for each panel p of the block
//!           micro-kernel: acc (MR × NR) = A[rows, pc..pc+kc] · B[p][pc..pc+kc]
//!           sink: each tile row written once per K chunk (epilogue at the last)
//! ```
//!
//! The row block is the inner loop's constant: its MR rows are read from L1 for every panel
//! of the block, and each output row of the block is written as one contiguous run.

use rayon::prelude::*;
use std::ops::Range;

/// Rows per task tile (at most).
pub const MC: usize = 128;
/// Bytes of packed B swept by each row block before moving on: the block stays in L2 (half of
/// the smallest L2 seen, 512 KiB of AMD Zen 3).
pub const PANEL_BLOCK_BYTES: usize = 256 * 1024;
/// The largest MR and MR × NR of any kernel (on-stack row pointers and accumulators).
pub const MAX_MR: usize = 32;
pub const MAX_TILE: usize = 32 * 32;

/// `(MR, NR)` of a micro-kernel.
pub(crate) fn tile_shape<K: MicroKernel>() -> (usize, usize) {
    (K::MR, K::NR)
}

/// One ISA's micro-kernel for one element type.
pub(crate) trait MicroKernel {
    /// Elements of A (activations) and B (packed weights).
    type A: Copy;
    type B: Copy;
    /// Accumulator element: f32, or exact i32 for int8.
    type Acc: Copy + Default;
    const MR: usize;
    const NR: usize;
    /// `acc[r·NR + j] = Σ_{k < kc} rows[r][k] · b[k][j]` in the packed layout of B.
    /// `next` is where the chunk of the next panel starts (`kc × NR` values, perhaps past
    /// the end of B: only prefetched, never read): the kernel prefetches it into L2 along its
    /// k loop, so the next tile's weights are on their way from memory while this one's are
    /// used (the hardware prefetchers follow one stream; they cannot guess the next panel).
    ///
    /// # Safety
    /// The CPU has the kernel's features; each of the MR row pointers has `kc` readable
    /// values; `b` has a whole K chunk of one panel (`kc × NR` values); `acc` holds MR × NR.
    unsafe fn tile(
        kc: usize,
        rows: &[*const Self::A],
        b: *const Self::B,
        next: *const Self::B,
        acc: &mut [Self::Acc],
    );
}

/// Declares an ISA's micro-kernel: the type `$name` implementing [`MicroKernel`] with the body
/// `$body` (an `unsafe fn(kc, rows, b, acc)`), and, given the kernel's `target_feature`s,
/// `task`: the blocked loop compiled with those features (so that the sink's epilogue inlines
/// at the kernel's width).
macro_rules! micro_kernel {
    // Only the type: for kernels that need no features (scalar) or run the loop themselves (AMX).
    ($name:ident: $a:ty, $b:ty => $acc:ty, $mr:expr, $nr:expr, $body:ident) => {
        pub(crate) struct $name;

        impl $crate::gemm::driver::MicroKernel for $name {
            type A = $a;
            type B = $b;
            type Acc = $acc;
            const MR: usize = $mr;
            const NR: usize = $nr;

            #[inline(always)]
            unsafe fn tile(
                kc: usize,
                rows: &[*const $a],
                b: *const $b,
                next: *const $b,
                acc: &mut [$acc],
            ) {
                // SAFETY: the trait's contract is the body's.
                unsafe { $body(kc, rows, b, next, acc) }
            }
        }
    };
    // The type and `task`, the loop compiled with the kernel's features.
    ($name:ident: $a:ty, $b:ty => $acc:ty, $mr:expr, $nr:expr, $features:literal, $body:ident) => {
        $crate::gemm::driver::micro_kernel!($name: $a, $b => $acc, $mr, $nr, $body);

        /// One task of the blocked loop with this kernel's features enabled.
        ///
        /// # Safety
        /// The CPU has those features; the sink may be written for these rows and panels.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn task<S: $crate::gemm::driver::TileSink<$acc>>(
            ops: &$crate::gemm::driver::Operands<'_, $a, $b>,
            rows: std::ops::Range<usize>,
            panels: std::ops::Range<usize>,
            sink: &S,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::gemm::driver::gemm_task::<$name, S>(ops, rows, panels, sink) }
        }
    };
}
pub(crate) use micro_kernel;

/// Receives finished tile rows.
pub(crate) trait TileSink<Acc>: Sync {
    /// `acc`: the `acc.len()` columns from `col0` of output row `row`, summed over one K chunk;
    /// `first` / `last`: whether it is the first / last chunk of K.
    ///
    /// # Safety
    /// Called by one task only for the rows and columns that task owns.
    unsafe fn write(&self, row: usize, col0: usize, acc: &[Acc], first: bool, last: bool);
}

/// The operands of one GEMM: `A (m, k)` row-major with stride `lda`, `B` packed in panels of
/// NR columns (`panel_len` values each; chunk `pc` of panel `p` at `p · panel_len + pc · NR`).
pub(crate) struct Operands<'a, A, B> {
    pub a: &'a [A],
    pub lda: usize,
    pub b: &'a [B],
    pub panel_len: usize,
    /// K as the kernel sees it (padded to whole groups for int8).
    pub k: usize,
    pub n: usize,
    /// K chunk length: `usize::MAX` for one pass.
    pub kc: usize,
}

/// Rows `rows` × panels `panels` of the product, on the calling thread, into `sink`.
///
/// # Safety
/// The CPU has `K`'s features; `sink` may be written for these rows and panels' columns.
#[inline(always)]
pub(crate) unsafe fn gemm_task<K: MicroKernel, S: TileSink<K::Acc>>(
    ops: &Operands<'_, K::A, K::B>,
    rows: Range<usize>,
    panels: Range<usize>,
    sink: &S,
) {
    let (mr, nr, k, n) = (K::MR, K::NR, ops.k, ops.n);
    assert!(
        rows.is_empty() || ops.a.len() >= (rows.end - 1) * ops.lda + k,
        "gemm: A is too short"
    );
    assert!(
        panels.end <= n.div_ceil(nr) && ops.b.len() >= panels.end * ops.panel_len,
        "gemm: B is too short"
    );
    assert!(mr <= MAX_MR && mr * nr <= MAX_TILE && ops.panel_len >= k * nr);
    let mut acc = [K::Acc::default(); MAX_TILE];
    let mut row_ptrs = [std::ptr::null::<K::A>(); MAX_MR];
    let kc_max = ops.kc.min(k).max(1);
    let chunk_bytes = kc_max * nr * std::mem::size_of::<K::B>();
    let panels_per_block = (PANEL_BLOCK_BYTES / chunk_bytes).max(1);
    for pc in (0..k).step_by(kc_max) {
        let kc = kc_max.min(k - pc);
        let (first, last) = (pc == 0, pc + kc == k);
        let mut block_start = panels.start;
        while block_start < panels.end {
            let block = block_start..(block_start + panels_per_block).min(panels.end);
            block_start = block.end;
            for r0 in rows.clone().step_by(mr) {
                let valid = mr.min(rows.end - r0);
                for (r, ptr) in row_ptrs[..mr].iter_mut().enumerate() {
                    // Rows past the task repeat its last row; their results are dropped.
                    *ptr = ops.a[(r0 + r.min(valid - 1)) * ops.lda + pc..].as_ptr();
                }
                for p in block.clone() {
                    let b = ops.b[p * ops.panel_len + pc * nr..][..kc * nr].as_ptr();
                    // Panel p + 1's chunk (the next block's first panel after the last).
                    let next = b.wrapping_add(ops.panel_len);
                    // SAFETY: each row pointer has kc values (A's length, asserted), b a whole
                    // chunk (sliced above), acc MR × NR; the features are the caller's; `next`
                    // is only prefetched.
                    unsafe { K::tile(kc, &row_ptrs[..mr], b, next, &mut acc[..mr * nr]) };
                    let (col0, width) = (p * nr, nr.min(n - p * nr));
                    for r in 0..valid {
                        let tile_row = &acc[r * nr..r * nr + width];
                        // SAFETY: row r0 + r and these columns belong to this task (caller).
                        unsafe { sink.write(r0 + r, col0, tile_row, first, last) };
                    }
                }
            }
        }
    }
}

/// Runs `task(rows, panels)` over an `(m rows × panels)` output cut by [`TaskGrid`], in
/// parallel on the current rayon pool.
pub(crate) fn for_each_task(
    m: usize,
    panels: usize,
    mr: usize,
    task: impl Fn(Range<usize>, Range<usize>) + Sync,
) {
    let grid = TaskGrid::new(m, panels, mr);
    if grid.tasks() == 1 {
        let (rows, panels) = grid.task(0);
        return task(rows, panels);
    }
    (0..grid.tasks()).into_par_iter().for_each(|t| {
        let (rows, panels) = grid.task(t);
        task(rows, panels)
    });
}

/// How an `(m rows × panels)` output is cut into parallel tasks: about four per thread, for
/// balance on a shared machine. Column groups first (each streams its share of the weights
/// once); when the panels run out (many threads, narrow layers), rows are split too, in tiles
/// of whole micro-kernel rows, at most MC.
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
        let row_tiles_wanted = tasks_wanted.div_ceil(panels.max(1)).max(m.div_ceil(MC));
        let row_tile = m
            .div_ceil(row_tiles_wanted)
            .next_multiple_of(mr)
            .clamp(mr, MC.next_multiple_of(mr));
        let row_tiles = m.div_ceil(row_tile).max(1);
        let col_groups = tasks_wanted.div_ceil(row_tiles).clamp(1, panels.max(1));
        let panels_per_group = panels.div_ceil(col_groups).max(1);
        let col_groups = panels.div_ceil(panels_per_group).max(1);
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
    pub(crate) fn task(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let (tile, group) = (t / self.col_groups, t % self.col_groups);
        let rows = (tile * self.row_tile).min(self.m)..((tile + 1) * self.row_tile).min(self.m);
        let panels = (group * self.panels_per_group).min(self.panels)
            ..((group + 1) * self.panels_per_group).min(self.panels);
        (rows, panels)
    }
}
