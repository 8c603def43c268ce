//! The linear layer: its weight as stored, as packed or quantized for the kernels, and the
//! one forward that runs it.

use crate::checkpoint::Tensor;
use crate::error::{Error, Result};
use densa_kernels as k;

/// Arithmetic precision of the encoder's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// int8 for a checkpoint written by `densa quantize`, f32 otherwise.
    #[default]
    Auto,
    /// f32 weights and arithmetic: transformers' numbers.
    F32,
    /// int8 weights (symmetric, per output channel, quantized at load) and per-token int8
    /// activations in the encoder's linear layers; embeddings, LayerNorm, softmax, attention,
    /// pooler and projection stay f32.
    Int8,
}

impl Precision {
    /// Every precision, in the order of the C API's `DENSA_PRECISION_*` values (0, 1, 2).
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::F32, Precision::Int8];

    /// Its name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }

    /// A precision by name as a user types it (`float32` for `f32` too); an unknown name is an
    /// error that lists the valid ones.
    pub fn parse(name: &str) -> std::result::Result<Precision, String> {
        let name = if name == "float32" { "f32" } else { name };
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "{name:?} is not a precision: use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A linear layer's weight, prepared once at load for its kernel.
pub enum LinearWeight {
    /// Packed into the f32 GEMM's panels.
    F32(k::PackedWeight),
    /// Quantized and packed for the int8 GEMM.
    Int8(k::QuantizedWeight),
}

/// A linear layer's weight as the checkpoint stores it.
pub enum StoredWeight<'a> {
    /// `(out, in)` f32 (converted from F16/BF16 if need be), as one or more row blocks stacked
    /// along the output dimension (Q, K and V kept apart: packing reads them in place).
    F32(Vec<Tensor>),
    /// `(out, in)` int8 with per-output-channel scales, `W ≈ scales[:, None] · q`, as row
    /// blocks read in place from the mapped file.
    Int8 {
        q: Vec<&'a [i8]>,
        scales: Vec<f32>,
        out_features: usize,
        in_features: usize,
    },
}

impl<'a> StoredWeight<'a> {
    /// `(out_features, in_features)`
    fn shape(&self) -> (usize, usize) {
        match self {
            StoredWeight::F32(parts) => (
                parts.iter().map(|t| t.shape()[0]).sum(),
                parts[0].shape()[1],
            ),
            StoredWeight::Int8 {
                out_features,
                in_features,
                ..
            } => (*out_features, *in_features),
        }
    }

    /// Several weights of the same input (`names`) stacked along the output dimension. They
    /// must be stored alike: all int8 (as `densa quantize` writes Q, K and V) or all float.
    pub(super) fn stack(
        names: &[String],
        parts: Vec<StoredWeight<'a>>,
    ) -> Result<StoredWeight<'a>> {
        let in_features = parts[0].shape().1;
        let out_features = parts.iter().map(|p| p.shape().0).sum();
        let (mut q, mut scales, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
        for part in parts {
            match part {
                StoredWeight::Int8 {
                    q: pq, scales: ps, ..
                } => {
                    q.extend(pq);
                    scales.extend(ps);
                }
                StoredWeight::F32(parts) => blocks.extend(parts),
            }
        }
        match (q.is_empty(), blocks.is_empty()) {
            (false, true) => Ok(StoredWeight::Int8 {
                q,
                scales,
                out_features,
                in_features,
            }),
            (true, false) => Ok(StoredWeight::F32(blocks)),
            _ => Err(Error::InvalidInput(format!(
                "tensors {}: some are int8 (with a weight_scale), some are not; densa quantize writes them alike (re-run densa quantize on the original folder)",
                names.join(", ")
            ))),
        }
    }

    /// The f32 values, row by row (dequantized if stored as int8).
    fn dequantized(&self) -> Vec<f32> {
        match self {
            StoredWeight::F32(blocks) => {
                blocks.iter().flat_map(|t| t.as_slice().to_vec()).collect()
            }
            StoredWeight::Int8 {
                q,
                scales,
                in_features,
                ..
            } => q
                .iter()
                .flat_map(|block| block.chunks_exact((*in_features).max(1)))
                .zip(scales)
                .flat_map(|(row, &s)| row.iter().map(move |&v| v as f32 * s))
                .collect(),
        }
    }
}

/// `y = x · Wᵀ + b` with `W (out_features, in_features)`, prepared once at load for the GEMM's
/// micro-kernel (the checkpoint's copy is not used after that).
pub struct Linear {
    pub weight: LinearWeight,
    /// `None`: a layer without bias (ModernBERT's, `attention_bias = mlp_bias = false`).
    pub bias: Option<Tensor>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    pub(super) fn new(
        name: &str,
        weight: StoredWeight<'_>,
        bias: Option<Tensor>,
        precision: Precision,
    ) -> Result<Self> {
        let (out_features, in_features) = weight.shape();
        let (n, k) = (out_features, in_features);
        let weight = match (weight, precision) {
            (StoredWeight::Int8 { q, scales, .. }, Precision::Int8 | Precision::Auto) => {
                LinearWeight::Int8(k::QuantizedWeight::from_quantized_blocks(&q, &scales, n, k).ok_or_else(
                    || {
                        Error::InvalidInput(format!(
                            "tensor {name}.weight: int8 values outside ±63; densa's int8 kernels take 7-bit weights (re-run densa quantize on the original folder)"
                        ))
                    },
                )?)
            }
            (StoredWeight::F32(parts), precision) => {
                let blocks: Vec<&[f32]> = parts.iter().map(Tensor::as_slice).collect();
                if precision == Precision::Int8 {
                    let isa = k::Int8Isa::selected();
                    LinearWeight::Int8(k::QuantizedWeight::from_row_blocks(&blocks, k, isa))
                } else {
                    let isa = k::Isa::selected();
                    LinearWeight::F32(k::PackedWeight::from_row_blocks(&blocks, k, isa))
                }
            }
            // int8 in the folder, f32 asked for: the dequantized values.
            (stored, _) => LinearWeight::F32(k::PackedWeight::new(&stored.dequantized(), n, k)),
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// A weight stored quantized and packed (`densa quantize`'s panels, used in place from the
    /// mapped file); dequantized into f32 panels if f32 is asked for.
    pub(super) fn from_quantized(
        weight: k::QuantizedWeight,
        bias: Option<Tensor>,
        precision: Precision,
    ) -> Self {
        let (out_features, in_features) = weight.shape();
        let weight = match precision {
            Precision::Int8 | Precision::Auto => LinearWeight::Int8(weight),
            Precision::F32 => {
                let rows = weight.rows();
                let stored = StoredWeight::Int8 {
                    q: vec![&rows],
                    scales: weight.scales().to_vec(),
                    out_features,
                    in_features,
                };
                let values = stored.dequantized();
                LinearWeight::F32(k::PackedWeight::new(&values, out_features, in_features))
            }
        };
        Linear {
            weight,
            bias,
            in_features,
            out_features,
        }
    }

    /// A weight stored packed at f32 (`densa pack`'s panels for this CPU's kernel, used in
    /// place from the mapped file); quantized from its values if int8 is asked for.
    pub(super) fn from_packed(
        weight: k::PackedWeight,
        bias: Option<Tensor>,
        precision: Precision,
    ) -> Self {
        let (out_features, in_features) = weight.shape();
        let weight = match precision {
            Precision::Int8 => {
                let rows = weight.rows();
                let isa = k::Int8Isa::selected();
                LinearWeight::Int8(k::QuantizedWeight::from_row_blocks(
                    &[&rows],
                    in_features,
                    isa,
                ))
            }
            Precision::F32 | Precision::Auto => LinearWeight::F32(weight),
        };
        Linear {
            weight,
            bias,
            in_features,
            out_features,
        }
    }

    /// Whether the weight's values are read in place from the mapped checkpoint.
    pub fn is_borrowed(&self) -> bool {
        match &self.weight {
            LinearWeight::F32(w) => w.is_borrowed(),
            LinearWeight::Int8(w) => w.is_borrowed(),
        }
    }

    /// Whether the weight is int8 (its input is then quantized per token).
    pub fn is_int8(&self) -> bool {
        matches!(self.weight, LinearWeight::Int8(_))
    }

    /// `out (rows, out_features) = act(input (rows, in_features) · Wᵀ + b)`, each output
    /// element written once (bias and activation in the GEMM's epilogue). An int8 layer reads
    /// the input quantized: as the LayerNorm before it left it, or quantized here.
    pub fn forward(
        &self,
        out: &mut [f32],
        input: LinearInput<'_>,
        rows: usize,
        activation: k::Activation,
    ) {
        let epilogue = k::Epilogue {
            bias: self.bias.as_ref().map(Tensor::as_slice),
            activation,
        };
        match (&self.weight, input) {
            (LinearWeight::F32(w), LinearInput::Rows(x, _) | LinearInput::Quantized(x, _)) => {
                k::linear_packed(out, x, w, rows, epilogue)
            }
            (LinearWeight::Int8(w), LinearInput::Rows(x, scratch)) => {
                k::linear_int8(out, x, w, rows, epilogue, scratch)
            }
            (LinearWeight::Int8(w), LinearInput::Quantized(_, quantized)) => {
                k::linear_int8_quantized(out, w, rows, epilogue, quantized)
            }
        }
    }
}

/// What a linear layer reads: `(rows, in_features)` f32 values, with the int8 scratch they
/// are quantized into.
pub enum LinearInput<'a> {
    /// Not yet quantized: an int8 layer quantizes them into the scratch first.
    Rows(&'a [f32], &'a mut k::Int8Scratch),
    /// Already quantized into the scratch by the LayerNorm that produced them
    /// ([`super::LayerNorm::forward`] handing off to an int8 layer).
    Quantized(&'a [f32], &'a k::Int8Scratch),
}
