//! `densa quantize`: write a model folder whose encoder linear layers are stored as int8.
//!
//! Layout (also in docs/QUANTIZATION.md): for every encoder linear layer
//! (`encoder.layer.N.attention.self.{query,key,value}`, `attention.output.dense`,
//! `intermediate.dense`, `output.dense`, under the checkpoint's own prefix):
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
use crate::model::TRUNK_PREFIXES;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;

/// Metadata key marking a quantized checkpoint.
pub const METADATA_KEY: &str = "densa_quantization";
/// Its value.
pub const METADATA_VALUE: &str = "int8-symmetric-per-output-channel";

/// What [`quantize_dir`] did.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    pub quantized_tensors: usize,
    pub copied_tensors: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

/// Whether `name` (without the trunk prefix) is an encoder linear layer's weight.
fn is_encoder_linear_weight(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("encoder.layer.") else {
        return false;
    };
    let Some((index, layer)) = rest.split_once('.') else {
        return false;
    };
    index.parse::<usize>().is_ok()
        && matches!(
            layer,
            "attention.self.query.weight"
                | "attention.self.key.weight"
                | "attention.self.value.weight"
                | "attention.output.dense.weight"
                | "intermediate.dense.weight"
                | "output.dense.weight"
        )
}

/// Reads the model folder `src` and writes `dst` with int8 encoder linear layers; every other
/// file of the folder (config, tokenizer, sentence-transformers modules) is copied.
pub fn quantize_dir(src: &Path, dst: &Path) -> Result<QuantizeReport> {
    BertConfig::from_file(&src.join("config.json"))?;
    let checkpoint = Checkpoint::open_dir(src)?;
    if checkpoint.metadata(METADATA_KEY).is_some() {
        return Err(Error::InvalidInput(format!(
            "{}: already quantized",
            src.display()
        )));
    }
    let prefix = TRUNK_PREFIXES
        .into_iter()
        .find(|p| checkpoint.contains(&format!("{p}embeddings.word_embeddings.weight")))
        .ok_or_else(|| Error::MissingTensor {
            name: "embeddings.word_embeddings.weight".into(),
            prefixes: String::new(),
        })?;

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
        if info.name.starts_with(prefix) && is_encoder_linear_weight(short) && info.shape.len() == 2
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
                scales.push(densa_kernels::int8::quantize_row(row, q_row));
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
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Safetensors {
                    path: src.to_owned(),
                    message: format!("{name}: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata: HashMap<String, String> = [
        ("format".to_string(), "pt".to_string()),
        (METADATA_KEY.to_string(), METADATA_VALUE.to_string()),
    ]
    .into();

    std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    copy_folder_files(src, dst)?;
    let out = dst.join("model.safetensors");
    let tmp = dst.join(".model.safetensors.densa-tmp");
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| {
        Error::Safetensors {
            path: tmp.clone(),
            message: e.to_string(),
        }
    })?;
    std::fs::rename(&tmp, &out).map_err(|e| Error::io(&out, e))?;
    report.bytes_out = std::fs::metadata(&out)
        .map_err(|e| Error::io(&out, e))?
        .len() as usize;
    Ok(report)
}

/// Copies every file of the model folder (and of its sub-folders, one level: sentence-
/// transformers' `1_Pooling/`) except the weights, which `quantize_dir` writes itself.
fn copy_folder_files(src: &Path, dst: &Path) -> Result<()> {
    let skip = |name: &str| {
        name == "pytorch_model.bin" || (name.starts_with("model") && name.contains(".safetensors"))
    };
    for entry in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let name = entry.file_name();
        let path = entry.path();
        if path.is_dir() {
            let sub = dst.join(&name);
            std::fs::create_dir_all(&sub).map_err(|e| Error::io(&sub, e))?;
            for inner in std::fs::read_dir(&path).map_err(|e| Error::io(&path, e))? {
                let inner = inner.map_err(|e| Error::io(&path, e))?.path();
                if inner.is_file() {
                    let to = sub.join(inner.file_name().expect("a file has a name"));
                    std::fs::copy(&inner, &to).map_err(|e| Error::io(&to, e))?;
                }
            }
        } else if !skip(&name.to_string_lossy()) {
            let to = dst.join(&name);
            std::fs::copy(&path, &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    Ok(())
}
