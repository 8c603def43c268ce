//! Linear layers: `out (M, N) = inp (M, K) · weightᵀ (K, N) + bias (N)`.
//!
//! This is the baseline implementation: matrixmultiply's `sgemm` (a packed, cache-blocked
//! GEMM) on strided views, split across the current rayon pool. Tall inputs are split by
//! rows; short ones (a 16-token question) by output columns, so every thread still has work.
//! Either way each output element is the same dot product in the same order, so the result
//! does not depend on the number of threads or on the other rows of the batch.

use crate::SendPtr;
use rayon::prelude::*;

/// Rows per parallel task below which we split the output columns instead.
const MIN_ROWS_PER_TASK: usize = 32;
/// Output columns per task when splitting by columns (a multiple of the micro-tile width).
const MIN_COLS_PER_TASK: usize = 64;

/// `out (m, n) = inp (m, k) · weightᵀ + bias`, with `weight` laid out `(n, k)` as in PyTorch.
///
/// Panics with a message if a slice is shorter than its shape says.
pub fn linear_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) {
    crate::check_shape("linear", "input", inp.len(), m, k);
    crate::check_shape("linear", "weight", weight.len(), n, k);
    crate::check_shape("linear", "output", out.len(), m, n);
    if let Some(b) = bias {
        assert!(
            b.len() >= n,
            "linear: bias has {} values, needs {n}",
            b.len()
        );
    }
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let out = &mut out[..m * n];
    if threads == 1 || m >= threads * MIN_ROWS_PER_TASK {
        // Split by rows: each task owns a contiguous block of output rows.
        let rows_per_task = m.div_ceil(threads).max(1);
        out.par_chunks_mut(rows_per_task * n)
            .zip(inp[..m * k].par_chunks(rows_per_task * k))
            .for_each(|(out_rows, inp_rows)| {
                let rows = out_rows.len() / n;
                linear_block(
                    out_rows.as_mut_ptr(),
                    n,
                    inp_rows,
                    k,
                    weight,
                    bias,
                    rows,
                    0..n,
                );
            });
    } else {
        // Split by output columns: each task owns columns [c0, c1) of every row.
        let cols_per_task = n
            .div_ceil(threads)
            .next_multiple_of(16)
            .max(MIN_COLS_PER_TASK);
        let out_ptr = SendPtr(out.as_mut_ptr());
        (0..n.div_ceil(cols_per_task))
            .into_par_iter()
            .for_each(|task| {
                let c0 = task * cols_per_task;
                let c1 = (c0 + cols_per_task).min(n);
                linear_block(out_ptr.get(), n, &inp[..m * k], k, weight, bias, m, c0..c1);
            });
    }
}

/// Computes output columns `cols` of `rows` rows into `out` (row stride `out_stride`).
#[allow(clippy::too_many_arguments)]
fn linear_block(
    out: *mut f32,
    out_stride: usize,
    inp: &[f32],
    k: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    cols: std::ops::Range<usize>,
) {
    let width = cols.end - cols.start;
    // Start from the bias (or zero), then accumulate the product onto it (beta = 1).
    for r in 0..rows {
        // SAFETY: `out` points at a buffer of at least `rows * out_stride` values (checked by
        // the caller's asserts), and `cols.end <= out_stride`, so the row slice is in bounds;
        // concurrent tasks write disjoint column ranges or disjoint row blocks.
        let row =
            unsafe { std::slice::from_raw_parts_mut(out.add(r * out_stride + cols.start), width) };
        match bias {
            Some(b) => row.copy_from_slice(&b[cols.clone()]),
            None => row.fill(0.0),
        }
    }
    assert!(inp.len() >= rows * k && weight.len() >= cols.end * k);
    // SAFETY: A = inp (rows, k) row-major; B = weightᵀ restricted to `cols`, i.e. element
    // (kk, j) at weight[(cols.start + j) * k + kk], all within `weight` (asserted above);
    // C = out columns `cols` of `rows` rows with row stride `out_stride`, in bounds as above.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            width,
            1.0,
            inp.as_ptr(),
            k as isize,
            1,
            weight.as_ptr().add(cols.start * k),
            1,
            k as isize,
            1.0,
            out.add(cols.start),
            out_stride as isize,
            1,
        );
    }
}
