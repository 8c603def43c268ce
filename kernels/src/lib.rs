//! # densa-kernels
//!
//! The numeric kernels behind densa, with no knowledge of BERT: a linear layer (GEMM plus
//! bias), LayerNorm, GELU (and its gated form), tanh, a row-wise softmax, rotary position
//! embeddings and multi-head scaled dot-product attention (global or within a sliding
//! window) over packed variable-length sequences.
//!
//! Every kernel here is the *interface* the model calls; behind it, per-ISA implementations are
//! chosen at run time (a blocked GEMM over AVX-512, AVX2 and portable micro-kernels, int8 on
//! AMX, VNNI, AVX2 or portable code, multiversioned elementwise loops), rayon over rows and
//! heads. Each kernel has a naive twin in `reference` (computed in `f64`, built with the
//! `reference` feature) that the property tests compare it with.
//!
//! Conventions, as in PyTorch: matrices are row-major; a linear layer's weight is
//! `(out_features, in_features)` and computes `y = x · Wᵀ + b`.
//!
//! Parallel kernels run on the *current* rayon pool, so a caller that wants `T` threads
//! installs a pool of `T` threads around the call (`pool.install(|| ...)`).

// Functions stay short enough to read at once (clippy.toml: 80 lines).
#![warn(clippy::too_many_lines)]

pub mod activation;
pub mod attention;
pub mod gemm;
pub mod int8;
pub mod isa;
pub mod math;
pub mod memory;
pub mod norm;
pub mod probe;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
pub mod rotary;
pub mod search;
pub mod simd;
pub mod softmax;

pub use activation::{geglu, gelu_erf, gelu_tanh, tanh};
pub use attention::{attention_forward, windowed_attention_forward, Rows};
pub use gemm::{
    linear_forward, linear_packed, Activation, Epilogue, PackedError, PackedWeight, RowBlocks,
};
pub use int8::{linear_int8, linear_int8_quantized, Int8Isa, Int8Scratch, QuantizedWeight};
pub use isa::Isa;
pub use norm::{add_layer_norm, add_then_layer_norm, layer_norm};
pub use rotary::{apply_rotary, RotaryTable};
pub use search::{inner_products, top_k_inner_product, Hit};
pub use softmax::softmax_rows;

/// A raw pointer that may cross threads. Used only where parallel tasks write provably
/// disjoint parts of one buffer (each use says why in its `SAFETY:` comment).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: the pointer is only dereferenced by tasks that write disjoint elements of a buffer
// that outlives the parallel scope (rayon joins all tasks before the scope returns).
unsafe impl Send for SendPtr {}
// SAFETY: as above; shared references to SendPtr only copy the address.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The address. A method (not `.0`) so that closures capture the whole `SendPtr`.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Panics with a message naming the kernel and the buffer if a buffer of `len` values is
/// shorter than its shape `(rows, cols)` says: a caller's bug, said plainly rather than as an
/// index out of bounds deep in a micro-kernel.
#[inline]
#[track_caller]
pub(crate) fn check_shape(kernel: &str, buffer: &str, len: usize, rows: usize, cols: usize) {
    assert!(
        len >= rows * cols,
        "{kernel}: {buffer} has {len} values, ({rows}, {cols}) needs {}",
        rows * cols
    );
}
