//! `densa pack`: write a model folder whose encoder linear layers are stored at f32 in the
//! GEMM's panel layout for this CPU's micro-kernel, so that loading maps them and uses them in
//! place instead of packing 340 MB (BERT-base) at every start.
//!
//! Layout (also in docs/QUANTIZATION.md): for every linear layer of the encoder as densa runs
//! it (Q, K and V stacked as `…query_key_value`, then each other layer, under the checkpoint's
//! own prefix), `<layer>.weight_packed`: F32 `(panels, in, nr)`, `panel[p][k][j] =
//! W[p·nr + j][k]`, zero-padded to whole panels ([`densa_kernels::PackedWeight`]). The biases
//! and every other tensor are copied as they are. The file's metadata carries
//! `densa_f32_layout = "panels-nr<nr>-v1"`.
//!
//! The panel width `nr` is the micro-kernel's: 32 for AVX-512, 16 for AVX2 and for the
//! scalar and aarch64 kernels. A folder packed for another width (written on another CPU, or
//! run under `DENSA_ISA`) still loads, with the same numbers: its weights are unpacked and
//! packed again at load, as an ordinary folder's are. int8 (`--precision int8`) quantizes the
//! packed values at load, as it quantizes an f32 folder's.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::fused_name;
use crate::quantize::{rewrite_linear_layers, OwnedTensor, QuantizeReport};
use densa_kernels as k;
use safetensors::Dtype;
use std::path::Path;

/// Metadata key naming the f32 panel layout of a `densa pack` folder.
pub use crate::quantize::F32_LAYOUT_KEY as LAYOUT_KEY;

/// The layout value for panels `nr` columns wide (version 1).
pub fn layout_value(nr: usize) -> String {
    format!("panels-nr{nr}-v1")
}

/// The panel width a checkpoint's f32 layout names: `None` for a folder `densa pack` did not
/// write; an error naming the folder for a layout this densa does not read.
pub fn packed_width(checkpoint: &Checkpoint, dir: &Path) -> Result<Option<usize>> {
    let Some(layout) = checkpoint.metadata(LAYOUT_KEY) else {
        return Ok(None);
    };
    layout
        .strip_prefix("panels-nr")
        .and_then(|rest| rest.strip_suffix("-v1"))
        .and_then(|nr| nr.parse::<usize>().ok())
        .filter(|&nr| nr > 0)
        .map(Some)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: f32 weights laid out as {layout:?}, this densa reads \"panels-nr<width>-v1\": re-run densa pack on the original folder",
                dir.display()
            ))
        })
}

/// Reads the model folder `src` and writes `dst` with its encoder linear layers packed at
/// f32 for `isa`'s micro-kernel (the CPU's own: [`k::Isa::selected`]); every other file of the
/// folder is copied. `dst` is written as [`crate::quantize::quantize_dir`] writes its folder.
pub fn pack_dir(src: &Path, dst: &Path, overwrite: bool, isa: k::Isa) -> Result<QuantizeReport> {
    let checkpoint = Checkpoint::open_dir(src)?;
    crate::quantize::refuse_packed(&checkpoint, src, "pack")?;
    if checkpoint.metadata(crate::quantize::METADATA_KEY).is_some() {
        return Err(Error::InvalidInput(format!(
            "{}: written by densa quantize (int8); pack the original f32 folder instead",
            src.display()
        )));
    }
    let isa = if isa.is_available() {
        isa
    } else {
        k::Isa::Scalar
    };
    let nr = k::gemm::kernel_shape(isa).1;
    let layout = layout_value(nr);
    let metadata = [("format", "pt"), (LAYOUT_KEY, layout.as_str())];
    rewrite_linear_layers(
        src,
        &checkpoint,
        dst,
        overwrite,
        &metadata,
        |checkpoint, prefix, group| pack_group(checkpoint, prefix, group, isa),
    )
}

/// The layers of `group` (`(name, out_features, in_features)`, one input) stacked and packed:
/// one tensor to write.
fn pack_group(
    checkpoint: &Checkpoint,
    prefix: &str,
    group: &[(String, usize, usize)],
    isa: k::Isa,
) -> Result<Vec<OwnedTensor>> {
    let in_features = group[0].2;
    let tensors = group
        .iter()
        .map(|(name, out_features, _)| {
            let name = format!("{prefix}{name}.weight");
            let tensor = checkpoint.tensor(&name, &[*out_features, in_features])?;
            if let Some(i) = tensor.as_slice().iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "tensor {name}: value {} at index {i} is not finite; densa pack writes finite weights only",
                    tensor.as_slice()[i]
                )));
            }
            Ok(tensor)
        })
        .collect::<Result<Vec<_>>>()?;
    let blocks: Vec<&[f32]> = tensors.iter().map(|t| t.as_slice()).collect();
    let packed = k::PackedWeight::from_row_blocks(&blocks, in_features, isa);
    let (n, nr) = (packed.shape().0, packed.nr());
    let names: Vec<String> = group.iter().map(|(name, ..)| name.clone()).collect();
    Ok(vec![(
        format!("{prefix}{}.weight_packed", fused_name(&names)),
        Dtype::F32,
        k::PackedWeight::packed_shape(n, in_features, nr).to_vec(),
        packed.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
    )])
}
