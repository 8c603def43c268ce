//! `densa quantize`: write a model folder whose encoder linear layers are stored as int8.
//!
//! Layout (also in docs/QUANTIZATION.md): for every encoder linear layer
//! (`encoder.layer.N.attention.self.{query,key,value}`, `attention.output.dense`,
//! `intermediate.dense`, `output.dense`, or DistilBERT's `transformer.layer.N.attention.q_lin`
//! … `ffn.lin2`, under the checkpoint's own prefix):
//! - `<layer>.weight`: I8 `(out, in)`, symmetric, per output channel;
//! - `<layer>.weight_scale`: F32 `(out)`, so that `W ≈ weight_scale[:, None] · weight`.
//!
//! Every other tensor is copied as it is. The file's metadata carries
//! `densa_quantization = "int8-symmetric-per-output-channel"`, which makes `--precision auto`
//! (the default) load it as int8. Loading maps the file and packs the int8 weights: no f32
//! copy of them ever exists.

use crate::checkpoint::Checkpoint;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::io::output::{write_folder, FileContent, FolderFile};
use crate::model::{Precision, TensorNames};
use safetensors::Dtype;
use std::path::{Path, PathBuf};

/// Metadata key marking a quantized checkpoint.
pub const METADATA_KEY: &str = "densa_quantization";
/// Its value: 7-bit weights (±63) stored as I8, the int8 kernels' input on every CPU.
pub const METADATA_VALUE: &str = "int7-symmetric-per-output-channel";
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
    Ok(match requested {
        Precision::Auto if written_by_quantize.is_some() => Precision::Int8,
        Precision::Auto => Precision::F32,
        chosen => chosen,
    })
}

/// What [`quantize_dir`] did.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    pub quantized_tensors: usize,
    pub copied_tensors: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

/// Whether `name` (without the trunk prefix) is an encoder linear layer's weight, under the
/// architecture's names.
fn is_encoder_linear_weight(names: &TensorNames, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(names.layer)
        .and_then(|r| r.strip_prefix('.'))
    else {
        return false;
    };
    let Some((index, layer)) = rest.split_once('.') else {
        return false;
    };
    let linear = [
        names.query,
        names.key,
        names.value,
        names.attention_output,
        names.intermediate,
        names.output,
    ];
    index.parse::<usize>().is_ok()
        && layer
            .strip_suffix(".weight")
            .is_some_and(|l| linear.contains(&l))
}

/// Reads the model folder `src` and writes `dst` with int8 encoder linear layers; every other
/// file of the folder (config, tokenizer, sentence-transformers modules) is copied.
///
/// `dst` must not be `src` or inside it. A new `dst` is written in a temporary folder renamed
/// into place whole; an existing one must not hold any file this would write unless
/// `overwrite` is set (each file is then replaced whole, keeping its permissions).
pub fn quantize_dir(src: &Path, dst: &Path, overwrite: bool) -> Result<QuantizeReport> {
    let config = BertConfig::from_file(&src.join("config.json"))?;
    let checkpoint = Checkpoint::open_dir(src)?;
    refuse_output_inside_input(src, dst)?;
    if checkpoint.metadata(METADATA_KEY).is_some() {
        return Err(Error::InvalidInput(format!(
            "{}: already quantized",
            src.display()
        )));
    }
    let names = TensorNames::of(config.model_type);
    let prefix = names.find_prefix(&checkpoint)?;

    // Owned bytes of every tensor to write: int8 weights and scales, and the rest as stored.
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut report = QuantizeReport {
        quantized_tensors: 0,
        copied_tensors: 0,
        bytes_in: checkpoint.mapped_bytes(),
        bytes_out: 0,
    };
    for info in checkpoint.tensor_infos() {
        let short = info.name.strip_prefix(prefix).unwrap_or(&info.name);
        if info.name.starts_with(prefix)
            && is_encoder_linear_weight(&names, short)
            && info.shape.len() == 2
        {
            let (n, k) = (info.shape[0], info.shape[1]);
            let weight = checkpoint.tensor(&info.name, &info.shape)?;
            let mut q = vec![0i8; n * k];
            let mut scales = Vec::with_capacity(n);
            for (row, q_row) in weight
                .as_slice()
                .chunks_exact(k.max(1))
                .zip(q.chunks_exact_mut(k.max(1)))
            {
                scales.push(densa_kernels::int8::quantize_weight_row(row, q_row));
            }
            let scale_name = format!("{}_scale", info.name);
            owned.push((
                info.name.clone(),
                Dtype::I8,
                vec![n, k],
                q.into_iter().map(|v| v as u8).collect(),
            ));
            owned.push((
                scale_name,
                Dtype::F32,
                vec![n],
                scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
            ));
            report.quantized_tensors += 1;
        } else {
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
    }
    let weights = safetensors_bytes(owned, &[("format", "pt"), (METADATA_KEY, METADATA_VALUE)]);
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
