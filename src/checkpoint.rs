//! Checkpoint loading: memory-mapped safetensors, single-file or sharded.
//!
//! `f32` tensors are used in place, straight out of the mmap, when their bytes are 4-byte
//! aligned (safetensors does not promise alignment: a misaligned tensor is copied once).
//! `F16` and `BF16` tensors are converted to `f32` once at load.

use crate::error::{Error, Result};
use densa_kernels::memory::SharedBytes;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `f32` values of one tensor: borrowed from a mapped file, or owned.
#[derive(Clone)]
enum TensorData {
    /// `len` f32 values at byte `offset` of `map`; `offset` is a multiple of 4.
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<[f32]>),
}

/// A weight tensor as `f32`, with its shape. Cheap to clone (the data is shared).
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// A tensor that owns its values. Panics if `values` does not match `shape`.
    pub fn from_vec(shape: Vec<usize>, values: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "tensor values do not match shape {shape:?}"
        );
        Tensor {
            shape,
            data: TensorData::Owned(values.into()),
        }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.data {
            TensorData::Mapped { map, offset, len } => {
                let bytes = &map[*offset..*offset + *len * 4];
                // SAFETY: `bytes` is in bounds (the slice above is checked) and holds exactly
                // `len * 4` bytes; its start is 4-byte aligned (checked when the tensor was
                // made, and mmap bases are page-aligned); every bit pattern is a valid f32; the
                // Arc keeps the mapping alive as long as `self`. The file must not be truncated
                // or rewritten while mapped (true of every mmap-based loader; documented).
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
            TensorData::Owned(values) => values,
        }
    }

    /// Whether the values live in the mapped file (no copy was made).
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, TensorData::Mapped { .. })
    }
}

/// Where one tensor of a checkpoint is stored.
#[derive(Clone)]
enum Source {
    File {
        file: usize,
        dtype: Dtype,
        byte_start: usize,
        byte_len: usize,
    },
    Memory(Tensor),
}

/// Description of one stored tensor, for `densa inspect`.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub file: Option<PathBuf>,
}

/// All tensors of a model folder, indexed by name, with their files mapped.
pub struct Checkpoint {
    files: Vec<(PathBuf, Arc<Mmap>)>,
    entries: BTreeMap<String, (Vec<usize>, Source)>,
}

impl Checkpoint {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.is_file() {
            Self::open_files(&[single])
        } else if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let parsed: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Config {
                    path: index.clone(),
                    message: format!("not valid JSON: {e}"),
                })?;
            let map = parsed
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Config {
                    path: index.clone(),
                    message: "no \"weight_map\" object".into(),
                })?;
            let mut shards: Vec<PathBuf> = Vec::new();
            for file in map.values() {
                let name = file.as_str().ok_or_else(|| Error::Config {
                    path: index.clone(),
                    message: "weight_map values must be file names".into(),
                })?;
                if name.contains('/') || name.contains('\\') || name == ".." {
                    return Err(Error::Config {
                        path: index.clone(),
                        message: format!("shard name {name:?} must be a plain file name"),
                    });
                }
                let path = dir.join(name);
                if !shards.contains(&path) {
                    shards.push(path);
                }
            }
            shards.sort();
            Self::open_files(&shards)
        } else if dir.join("pytorch_model.bin").is_file() {
            Err(Error::PytorchOnly {
                dir: dir.to_owned(),
            })
        } else if !dir.is_dir() {
            Err(Error::MissingFile {
                path: dir.to_owned(),
                hint: " (expected a model folder)".into(),
            })
        } else {
            Err(Error::MissingFile {
                path: single,
                hint: " (nor model.safetensors.index.json)".into(),
            })
        }
    }

    /// Maps the given safetensors files and indexes their tensors.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = BTreeMap::new();
        for (file_index, path) in paths.iter().enumerate() {
            let file = std::fs::File::open(path).map_err(|e| Error::reading(path, e))?;
            // SAFETY: the mapping is read-only; densa never writes through it. Like every
            // mmap-based loader, we rely on nobody truncating the file while it is mapped.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let map = Arc::new(map);
            let parsed = SafeTensors::deserialize(&map[..]).map_err(|e| Error::Safetensors {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let base = map.as_ptr() as usize;
            for (name, view) in parsed.tensors() {
                let data = view.data();
                let byte_start = data.as_ptr() as usize - base;
                let source = Source::File {
                    file: file_index,
                    dtype: view.dtype(),
                    byte_start,
                    byte_len: data.len(),
                };
                if entries
                    .insert(name.clone(), (view.shape().to_vec(), source))
                    .is_some()
                {
                    return Err(Error::Safetensors {
                        path: path.clone(),
                        message: format!("tensor {name} appears in more than one shard"),
                    });
                }
            }
            files.push((path.clone(), map));
        }
        Ok(Checkpoint { files, entries })
    }

    /// A checkpoint held in memory (tests and tools that make weights themselves).
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        let entries = tensors
            .into_iter()
            .map(|(name, t)| (name, (t.shape.clone(), Source::Memory(t))))
            .collect();
        Checkpoint {
            files: Vec::new(),
            entries,
        }
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Every stored tensor, sorted by name.
    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        self.entries
            .iter()
            .map(|(name, (shape, source))| match source {
                Source::File { file, dtype, .. } => TensorInfo {
                    name: name.clone(),
                    dtype: format!("{dtype:?}"),
                    shape: shape.clone(),
                    file: Some(self.files[*file].0.clone()),
                },
                Source::Memory(_) => TensorInfo {
                    name: name.clone(),
                    dtype: "F32".into(),
                    shape: shape.clone(),
                    file: None,
                },
            })
            .collect()
    }

    /// Drops this process's resident pages of the mapped files. Called once the model is
    /// built: the linear layers' weights were copied into packed form and are never read from
    /// the map again, so their pages need not count against the process; the tensors still used
    /// in place (embeddings, LayerNorm, biases) are simply read back from the page cache on
    /// their next touch.
    pub fn release_resident_pages(&self) {
        #[cfg(unix)]
        for (_, map) in &self.files {
            // SAFETY: the mapping is private and read-only and densa never writes through it,
            // so MADV_DONTNEED loses nothing: a later read faults the same file bytes back in.
            // No reference into the pages is invalidated (their contents stay the same).
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
        // Loading freed large temporaries (stacked and quantized weights before packing); glibc
        // keeps such memory for reuse unless asked to hand it back.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free heap memory to the OS; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// Drops this process's resident pages of one tensor (those wholly inside it) once it has
    /// been copied into packed form, so that loading never holds a weight twice: the peak
    /// stays near the packed weights' size instead of the file's plus theirs.
    pub fn release_tensor_pages(&self, name: &str) {
        if let Some((_, _, file, bytes)) = self.located(name) {
            self.release_pages_within(&self.files[file].1[bytes]);
        }
    }

    /// Drops this process's resident pages wholly inside `values`, a slice of one of the
    /// mapped files (nothing for other memory): for a large tensor used in place but read
    /// sparsely (a vocabulary's embedding table), once a load-time pass has read it all.
    pub fn release_pages_within<T>(&self, values: &[T]) {
        let page = 4096;
        let start = values.as_ptr() as usize;
        let end = start + std::mem::size_of_val(values);
        for (_, map) in &self.files {
            let base = map.as_ptr() as usize;
            if start < base || end > base + map.len() {
                continue;
            }
            let (first, last) = (
                (start - base).next_multiple_of(page),
                (end - base) / page * page,
            );
            #[cfg(unix)]
            if last > first {
                // SAFETY: as in release_resident_pages: the mapping is private and read-only,
                // so MADV_DONTNEED on a range inside it loses nothing (a later read faults the
                // same file bytes back in) and invalidates no reference.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        last - first,
                    )
                };
            }
            #[cfg(not(unix))]
            let _ = (first, last);
        }
    }

    /// Total bytes of the mapped files.
    pub fn mapped_bytes(&self) -> usize {
        self.files.iter().map(|(_, m)| m.len()).sum()
    }

    /// The stored dtype, shape and bytes of a tensor in a mapped file (None for a missing
    /// tensor or one held in memory).
    pub fn raw(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let (dtype, shape, file, bytes) = self.located(name)?;
        Some((dtype, shape, &self.files[file].1[bytes]))
    }

    /// A tensor stored in a mapped file: its dtype, shape, file and byte range.
    fn located(&self, name: &str) -> Option<(Dtype, &[usize], usize, std::ops::Range<usize>)> {
        match self.entries.get(name)? {
            (
                shape,
                Source::File {
                    file,
                    dtype,
                    byte_start,
                    byte_len,
                },
            ) => Some((
                *dtype,
                shape.as_slice(),
                *file,
                *byte_start..*byte_start + *byte_len,
            )),
            (_, Source::Memory(_)) => None,
        }
    }

    /// [`Checkpoint::raw`] with the bytes held by a shared handle on the mapped file, so that
    /// a kernel can keep using them in place after the checkpoint is dropped.
    pub fn shared(&self, name: &str) -> Option<(Dtype, &[usize], SharedBytes)> {
        let (dtype, shape, file, bytes) = self.located(name)?;
        let map: Arc<dyn AsRef<[u8]> + Send + Sync> = self.files[file].1.clone();
        let bytes = SharedBytes::new(map, bytes.start, bytes.len())?;
        Some((dtype, shape, bytes))
    }

    /// Raw tensor bytes (from [`Checkpoint::raw`]) viewed as the I8 values they hold.
    pub fn as_i8(bytes: &[u8]) -> &[i8] {
        // SAFETY: u8 and i8 have the same size and alignment and every bit pattern is valid
        // for both; the view borrows `bytes` for its lifetime.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
    }

    /// How many values of tensor `name` are NaN or ±Inf (0 for integer tensors).
    pub fn non_finite_count(&self, name: &str) -> Result<usize> {
        let (shape, source) = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.into(),
            prefixes: String::new(),
        })?;
        if let Source::File { dtype, .. } = source {
            if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Ok(0);
            }
        }
        let tensor = self.tensor(name, &shape.clone())?;
        Ok(tensor.as_slice().iter().filter(|v| !v.is_finite()).count())
    }

    /// The `__metadata__` entry `key` of the first file.
    pub fn metadata(&self, key: &str) -> Option<String> {
        let (_, map) = self.files.first()?;
        let (_, meta) = SafeTensors::read_metadata(&map[..]).ok()?;
        meta.metadata().as_ref()?.get(key).cloned()
    }

    /// The tensor `name` as `f32`, checked against `expected_shape`.
    pub fn tensor(&self, name: &str, expected_shape: &[usize]) -> Result<Tensor> {
        let (shape, source) = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.into(),
            prefixes: String::new(),
        })?;
        if shape != expected_shape {
            return Err(Error::Shape {
                name: name.into(),
                expected: expected_shape.to_vec(),
                found: shape.clone(),
            });
        }
        let len: usize = shape.iter().product();
        let (file, dtype, byte_start, byte_len) = match source {
            Source::Memory(t) => return Ok(t.clone()),
            Source::File {
                file,
                dtype,
                byte_start,
                byte_len,
            } => (*file, *dtype, *byte_start, *byte_len),
        };
        let map = &self.files[file].1;
        let bytes = &map[byte_start..byte_start + byte_len];
        let bad_len = || Error::Safetensors {
            path: self.files[file].0.clone(),
            message: format!(
                "tensor {name}: {byte_len} bytes do not hold {len} values of {dtype:?}"
            ),
        };
        let data = match dtype {
            Dtype::F32 => {
                if byte_len != len * 4 {
                    return Err(bad_len());
                }
                let aligned = (map.as_ptr() as usize + byte_start)
                    .is_multiple_of(std::mem::align_of::<f32>());
                // safetensors is little-endian: only then are the mapped bytes our f32s.
                if aligned && cfg!(target_endian = "little") {
                    TensorData::Mapped {
                        map: Arc::clone(map),
                        offset: byte_start,
                        len,
                    }
                } else {
                    let values = bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    TensorData::Owned(values)
                }
            }
            Dtype::F16 | Dtype::BF16 => {
                if byte_len != len * 2 {
                    return Err(bad_len());
                }
                let halves = bytes
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]));
                let values: Arc<[f32]> = if dtype == Dtype::F16 {
                    halves.map(|h| half::f16::from_bits(h).to_f32()).collect()
                } else {
                    halves.map(|h| half::bf16::from_bits(h).to_f32()).collect()
                };
                TensorData::Owned(values)
            }
            other => {
                return Err(Error::Dtype {
                    name: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok(Tensor {
            shape: shape.clone(),
            data,
        })
    }
}
