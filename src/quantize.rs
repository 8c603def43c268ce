//! `densa quantize`: write a model folder whose encoder linear layers are stored as int8.
//!
//! Layout (also in docs/QUANTIZATION.md): for every linear layer of the encoder as densa runs
//! it (`encoder.layer.N.attention.self.query_key_value`: Q, K and V stacked, then
//! `attention.output.dense`, `intermediate.dense`, `output.dense`, or DistilBERT's
//! `transformer.layer.N.attention.q_lin_k_lin_v_lin` … `ffn.lin2`, under the checkpoint's own
//! prefix):
//! - `<layer>.weight_panels`: I8 `(panels, K_pad / 4, 16, 4)`, the 7-bit weights (symmetric,
//!   per output channel) in the int8 kernels' panel layout ([`densa_kernels::int8::packed_shape`]);
//! - `<layer>.weight_scale`: F32 `(out)`, so that `W ≈ weight_scale[:, None] · w_q`.
//!
//! The biases and every other tensor are copied as they are. The file's metadata carries
//! `densa_quantization = "int7-symmetric-per-output-channel"`, which makes `--precision auto`
//! (the default) load it as int8, and `densa_int8_layout` = [`LAYOUT_VALUE`]. Loading maps the
//! file and uses the panels in place (checked, not copied): the process starts without
//! repacking. Folders written with the earlier row layout (`<layer>.weight` I8 `(out, in)`, no
//! layout key) still load, packed at load.

use crate::checkpoint::Checkpoint;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::io::output::{write_folder, FileContent, FolderFile};
use crate::model::{fused_name, Precision, TensorNames};
use safetensors::Dtype;
use std::path::{Path, PathBuf};

/// Metadata key marking a quantized checkpoint.
pub const METADATA_KEY: &str = "densa_quantization";
/// Its value: 7-bit weights (±63) stored as I8, the int8 kernels' input on every CPU.
pub const METADATA_VALUE: &str = "int7-symmetric-per-output-channel";
/// Metadata key naming how the int8 weights are laid out (absent: rows, packed at load).
pub const LAYOUT_KEY: &str = "densa_int8_layout";
/// Its value: the kernels' panels (16 columns, 4 k per group, K padded to 64, an even number
/// of panels), version 1. A folder with another value is refused with a message to quantize
/// again.
pub const LAYOUT_VALUE: &str = "panels-16x4-k64-v1";
/// Metadata key naming the f32 panel layout of a `densa pack` folder ([`crate::pack`]).
pub const F32_LAYOUT_KEY: &str = "densa_f32_layout";
/// The value written before weights became 7-bit (±127): such folders are refused with a
/// message to quantize again.
pub const METADATA_VALUE_8BIT: &str = "int8-symmetric-per-output-channel";

/// The precision `requested` means for a checkpoint: [`Precision::Auto`] is int8 for a folder
/// `densa quantize` wrote, f32 otherwise. A folder written before weights became 7-bit is
/// refused (`dir` names it), whatever was requested.
pub fn resolve_precision(
    checkpoint: &Checkpoint,
    requested: Precision,
    dir: &Path,
) -> Result<Precision> {
    let written_by_quantize = checkpoint.metadata(METADATA_KEY);
    if written_by_quantize.as_deref() == Some(METADATA_VALUE_8BIT) {
        return Err(Error::InvalidInput(format!(
            "{}: written by an older densa quantize (8-bit weights); densa's int8 kernels now take 7-bit weights: re-run densa quantize on the original folder",
            dir.display()
        )));
    }
    if let Some(layout) = checkpoint.metadata(LAYOUT_KEY) {
        if layout != LAYOUT_VALUE {
            return Err(Error::InvalidInput(format!(
                "{}: int8 weights laid out as {layout:?}, this densa reads {LAYOUT_VALUE:?}: re-run densa quantize on the original folder",
                dir.display()
            )));
        }
    }
    Ok(match requested {
        Precision::Auto if written_by_quantize.is_some() => Precision::Int8,
        Precision::Auto => Precision::F32,
        chosen => chosen,
    })
}

/// What [`quantize_dir`] (or [`crate::pack::pack_dir`]) did: `quantized_tensors` counts the
/// linear weights converted.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    pub quantized_tensors: usize,
    pub copied_tensors: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

/// Reads the model folder `src` and writes `dst` with int8 encoder linear layers; every other
/// file of the folder (config, tokenizer, sentence-transformers modules) is copied.
///
/// `dst` must not be `src` or inside it. A new `dst` is written in a temporary folder renamed
/// into place whole; an existing one must not hold any file this would write unless
/// `overwrite` is set (each file is then replaced whole, keeping its permissions).
pub fn quantize_dir(src: &Path, dst: &Path, overwrite: bool) -> Result<QuantizeReport> {
    let checkpoint = Checkpoint::open_dir(src)?;
    if checkpoint.metadata(METADATA_KEY).is_some() {
        return Err(Error::InvalidInput(format!(
            "{}: already quantized",
            src.display()
        )));
    }
    refuse_packed(&checkpoint, src, "quantize")?;
    let metadata = [
        ("format", "pt"),
        (METADATA_KEY, METADATA_VALUE),
        (LAYOUT_KEY, LAYOUT_VALUE),
    ];
    rewrite_linear_layers(src, &checkpoint, dst, overwrite, &metadata, quantize_group)
}

/// Refuses to quantize or pack (`what`) a folder densa pack wrote: convert the original.
pub(crate) fn refuse_packed(checkpoint: &Checkpoint, dir: &Path, what: &str) -> Result<()> {
    if checkpoint.metadata(F32_LAYOUT_KEY).is_some() {
        return Err(Error::InvalidInput(format!(
            "{}: written by densa pack; {what} the original model folder instead",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes `dst`: the model folder `src` with each encoder linear layer group (Q, K and V
/// stacked, then each other layer) replaced by the tensors `convert` makes of it, every other
/// tensor copied, the file's metadata `metadata`, and every other file of the folder copied.
pub(crate) fn rewrite_linear_layers(
    src: &Path,
    checkpoint: &Checkpoint,
    dst: &Path,
    overwrite: bool,
    metadata: &[(&str, &str)],
    convert: impl Fn(&Checkpoint, &str, &[(String, usize, usize)]) -> Result<Vec<OwnedTensor>>,
) -> Result<QuantizeReport> {
    let config = BertConfig::from_file(&src.join("config.json"))?;
    refuse_output_inside_input(src, dst)?;
    let names = TensorNames::of(config.model_type);
    let prefix = names.find_prefix(checkpoint)?;

    // The encoder's linear layers as the model runs them: Q, K and V stacked into one.
    let groups: Vec<Vec<(String, usize, usize)>> = (0..config.num_hidden_layers)
        .flat_map(|i| names.linear_groups(i, &config))
        .collect();
    let quantized: std::collections::HashSet<String> = groups
        .iter()
        .flatten()
        .map(|(name, ..)| format!("{prefix}{name}.weight"))
        .collect();

    // Owned bytes of every tensor to write: the converted weights, and the rest as stored.
    let mut owned: Vec<OwnedTensor> = Vec::new();
    let mut report = QuantizeReport {
        quantized_tensors: 0,
        copied_tensors: 0,
        bytes_in: checkpoint.mapped_bytes(),
        bytes_out: 0,
    };
    for group in &groups {
        owned.extend(convert(checkpoint, prefix, group)?);
        report.quantized_tensors += group.len();
    }
    for info in checkpoint.tensor_infos() {
        if quantized.contains(&info.name) {
            continue;
        }
        let (dtype, shape, bytes) =
            checkpoint
                .raw(&info.name)
                .ok_or_else(|| Error::MissingTensor {
                    name: info.name.clone(),
                    prefixes: String::new(),
                })?;
        owned.push((info.name.clone(), dtype, shape.to_vec(), bytes.to_vec()));
        report.copied_tensors += 1;
    }
    let weights = safetensors_bytes(owned, metadata);
    report.bytes_out = weights.len();
    // The folder's other files first, the weights last: a folder without model.safetensors
    // is never mistaken for a model.
    let mut files = folder_files(src)?;
    files.push(FolderFile {
        name: PathBuf::from("model.safetensors"),
        content: FileContent::Bytes(weights),
    });
    write_folder(dst, &files, overwrite)?;
    Ok(report)
}

/// The layers of `group` (`(name, out_features, in_features)`, one input), quantized row by
/// row and stacked into one weight: its panels and scales, as tensors to write.
fn quantize_group(
    checkpoint: &Checkpoint,
    prefix: &str,
    group: &[(String, usize, usize)],
) -> Result<Vec<OwnedTensor>> {
    let in_features = group[0].2;
    let (mut rows, mut scales) = (Vec::new(), Vec::new());
    for (name, out_features, _) in group {
        let name = format!("{prefix}{name}.weight");
        let weight = checkpoint.tensor(&name, &[*out_features, in_features])?;
        for row in weight.as_slice().chunks_exact(in_features.max(1)) {
            let start = rows.len();
            rows.resize(start + in_features, 0i8);
            scales.push(densa_kernels::int8::quantize_weight_row(
                row,
                &mut rows[start..],
            ));
        }
    }
    let n = scales.len();
    let packed = densa_kernels::QuantizedWeight::from_quantized(&rows, &scales, n, in_features)
        .ok_or_else(|| Error::InvalidInput(format!("{prefix}: a quantized weight outside ±63")))?;
    let names: Vec<String> = group.iter().map(|(name, ..)| name.clone()).collect();
    let name = format!("{prefix}{}", fused_name(&names));
    Ok(vec![
        (
            format!("{name}.weight_panels"),
            Dtype::I8,
            densa_kernels::int8::packed_shape(n, in_features).to_vec(),
            packed.panels().iter().map(|&v| v as u8).collect(),
        ),
        (
            format!("{name}.weight_scale"),
            Dtype::F32,
            vec![n],
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ),
    ])
}

/// A tensor to write: name, dtype, shape, little-endian bytes.
pub(crate) type OwnedTensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Every file of the model folder (and of its sub-folders, one level: sentence-transformers'
/// `1_Pooling/`) except the weights, which `quantize_dir` writes itself.
fn folder_files(src: &Path) -> Result<Vec<FolderFile>> {
    let skip = |name: &str| {
        name == "pytorch_model.bin" || (name.starts_with("model") && name.contains(".safetensors"))
    };
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| Error::io(src, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = PathBuf::from(entry.file_name());
        let path = entry.path();
        if path.is_dir() {
            let mut inner: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| Error::io(&path, e))?
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io(&path, e))?;
            inner.sort_by_key(|e| e.file_name());
            for file in inner.into_iter().map(|e| e.path()).filter(|p| p.is_file()) {
                files.push(FolderFile {
                    name: name.join(file.file_name().unwrap_or_default()),
                    content: FileContent::CopyOf(file),
                });
            }
        } else if path.is_file() && !skip(&name.to_string_lossy()) {
            files.push(FolderFile {
                name,
                content: FileContent::CopyOf(path),
            });
        }
    }
    Ok(files)
}

/// The output folder may not be the model folder or inside it (writing there would replace
/// the model's own files with copies of themselves being written).
fn refuse_output_inside_input(src: &Path, dst: &Path) -> Result<()> {
    let src_real = std::fs::canonicalize(src).map_err(|e| Error::io(src, e))?;
    let dst_real = crate::io::output::resolve_folder(dst)?;
    if dst_real.starts_with(&src_real) {
        return Err(Error::InvalidInput(format!(
            "{}: the output folder is the model folder {} or inside it; write the quantized copy to another folder",
            dst.display(),
            src.display()
        )));
    }
    Ok(())
}

/// A safetensors file holding `tensors` (name, dtype, shape, little-endian bytes) and
/// `metadata`, laid out deterministically: the same tensors give the same bytes on every run
/// (safetensors' own writer orders the metadata by a hash map). Tensors are ordered by element
/// size, largest first, then by name, and the header is padded to 8 bytes, so that every
/// tensor starts aligned to its element size (loaders map F32 data in place).
fn safetensors_bytes(
    mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    tensors.sort_by(|a, b| {
        b.1.bitsize()
            .cmp(&a.1.bitsize())
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut header = serde_json::Map::new();
    let metadata: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|&(k, v)| (k.to_string(), v.into()))
        .collect();
    header.insert("__metadata__".into(), metadata.into());
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in &tensors {
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype.to_string(),
                "shape": shape,
                "data_offsets": [offset, offset + bytes.len()],
            }),
        );
        offset += bytes.len();
    }
    // serde_json's map is ordered by key (no "preserve_order" feature): deterministic.
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(&bytes);
    }
    out
}
