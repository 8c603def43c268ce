//! Checkpoints that lie: a corpus of broken model folders, generated here from the bert-tiny
//! fixture by small, named mutations (never hand-edited binaries). Each must fail to load
//! with a typed error whose message names the file or tensor and what was expected; none may
//! panic.
//!
//! `DENSA_WRITE_CORPUS=DIR cargo test --test hostile_checkpoints` also writes every broken
//! `model.safetensors` to `DIR/<case>.safetensors` (tools/fuzz.sh seeds the loader's fuzz
//! corpus with them).

mod common;

use common::model_dir;
use densa::{Encoder, Error, Options};
use serde_json::{json, Value};
use std::path::Path;

/// A safetensors file taken apart: header as JSON, data bytes.
struct Parts {
    header: Value,
    data: Vec<u8>,
}

impl Parts {
    fn read(path: &Path) -> Parts {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        Parts {
            header: serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        file_bytes(self.header.to_string().as_bytes(), &self.data)
    }

    /// The `[start, end)` byte range of tensor `name` in the data.
    fn range(&self, name: &str) -> (usize, usize) {
        let o = &self.header[name]["data_offsets"];
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    }

    /// Tensor names in data order.
    fn names_by_offset(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .header
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect();
        names.sort_by_key(|n| self.range(n).0);
        names
    }
}

/// `u64` header length, header, data: the safetensors layout.
fn file_bytes(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

const LAYER_WEIGHT: &str = "bert.encoder.layer.1.attention.self.key.weight";
const EMBEDDINGS: &str = "bert.embeddings.word_embeddings.weight";

/// What a case must produce: the error variant and words its message must contain.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Safetensors(&'static [&'static str]),
    Config(&'static [&'static str]),
    Shape(&'static [&'static str]),
    Dtype(&'static [&'static str]),
    Missing(&'static [&'static str]),
    NonFinite(&'static [&'static str]),
    Tokenizer(&'static [&'static str]),
}

impl Expect {
    fn check(self, case: &str, e: &Error) {
        let (ok, words) = match self {
            Expect::Safetensors(w) => (matches!(e, Error::Safetensors { .. }), w),
            Expect::Config(w) => (matches!(e, Error::Config { .. }), w),
            Expect::Shape(w) => (matches!(e, Error::Shape { .. }), w),
            Expect::Dtype(w) => (matches!(e, Error::Dtype { .. }), w),
            Expect::Missing(w) => (
                matches!(e, Error::MissingTensor { .. } | Error::MissingFile { .. }),
                w,
            ),
            Expect::NonFinite(w) => (matches!(e, Error::NonFinite { .. }), w),
            Expect::Tokenizer(w) => (matches!(e, Error::Tokenizer(_)), w),
        };
        let message = e.to_string();
        assert!(ok, "{case}: expected {self:?}, got {message}");
        for w in words {
            assert!(message.contains(w), "{case}: {message:?} lacks {w:?}");
        }
    }
}

/// Breaks a copy of bert-tiny: returns the new `model.safetensors` bytes (or None to keep
/// them) and may edit the folder's other files.
type Breaker = Box<dyn Fn(&Parts, &Path) -> Option<Vec<u8>>>;

/// One broken folder: how to break a copy of bert-tiny, and the error it must give.
struct Case {
    name: &'static str,
    /// Returns the new `model.safetensors` bytes (or None to keep them) and edits the folder.
    break_it: Breaker,
    expect: Expect,
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(path, config.to_string()).unwrap();
}

/// A case that sets one field of `config.json` to `value` and expects `expect`.
fn config_field(name: &'static str, key: &'static str, value: Value, expect: Expect) -> Case {
    Case {
        name,
        break_it: Box::new(move |_, dir| {
            edit_config(dir, |c| {
                c.insert(key.into(), value.clone());
            });
            None
        }),
        expect,
    }
}

/// A case whose safetensors header is replaced by `header` (not a valid header).
fn raw_header(name: &'static str, header: &'static [u8]) -> Case {
    Case {
        name,
        break_it: Box::new(move |p, _| Some(file_bytes(header, &p.data))),
        expect: Expect::Safetensors(&["model.safetensors"]),
    }
}

/// A case that sets one field of the layer weight's header entry and expects `expect`.
fn weight_header_field(
    name: &'static str,
    field: &'static str,
    value: Value,
    expect: Expect,
) -> Case {
    Case {
        name,
        break_it: Box::new(move |p, _| {
            with_header(p, |h| {
                h[LAYER_WEIGHT][field] = value.clone();
            })
        }),
        expect,
    }
}

fn with_header(p: &Parts, edit: impl FnOnce(&mut Value)) -> Option<Vec<u8>> {
    let mut header = p.header.clone();
    edit(&mut header);
    Some(file_bytes(header.to_string().as_bytes(), &p.data))
}

/// Removes the bytes `cut` from the data and moves every offset of `header` to match: an
/// offset past the cut moves down by its length, one inside it moves to its start.
fn cut_data(p: &Parts, header: &mut Value, cut: std::ops::Range<usize>) -> Vec<u8> {
    let mut data = p.data.clone();
    data.drain(cut.clone());
    let moved = |x: u64| {
        let x = x as usize;
        if x >= cut.end {
            json!(x - cut.len())
        } else {
            json!(x.min(cut.start))
        }
    };
    for (name, info) in header.as_object_mut().unwrap() {
        if name != "__metadata__" {
            let o = &mut info["data_offsets"];
            *o = json!([moved(o[0].as_u64().unwrap()), moved(o[1].as_u64().unwrap())]);
        }
    }
    data
}

/// Writes `value` over every f32 of tensor `name`'s first element.
fn poison(p: &Parts, name: &str, value: f32) -> Option<Vec<u8>> {
    let (start, _) = p.range(name);
    let mut data = p.data.clone();
    data[start + 4 * 7..start + 4 * 8].copy_from_slice(&value.to_le_bytes());
    Some(file_bytes(p.header.to_string().as_bytes(), &data))
}

fn corpus() -> Vec<Case> {
    vec![
        Case {
            name: "empty-file",
            break_it: Box::new(|_, _| Some(Vec::new())),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        Case {
            name: "shorter-than-length-field",
            break_it: Box::new(|_, _| Some(vec![1, 2, 3])),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        Case {
            name: "header-length-beyond-file",
            break_it: Box::new(|p, _| {
                let mut b = p.bytes();
                let lying = (b.len() as u64 * 2).to_le_bytes();
                b[..8].copy_from_slice(&lying);
                Some(b)
            }),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        Case {
            name: "header-length-u64-max",
            break_it: Box::new(|p, _| {
                let mut b = p.bytes();
                b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                Some(b)
            }),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        raw_header("header-not-json", b"this is { not json"),
        raw_header("header-not-utf8", &[0xff, 0xfe, b'{', b'}']),
        raw_header("header-not-an-object", b"[1, 2, 3]"),
        Case {
            name: "truncated-data",
            break_it: Box::new(|p, _| {
                let b = p.bytes();
                Some(b[..b.len() - 1000].to_vec())
            }),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        Case {
            name: "offsets-beyond-data",
            break_it: Box::new(|p, _| {
                let last = p.names_by_offset().pop().unwrap();
                let (start, end) = p.range(&last);
                with_header(p, |h| {
                    h[&last]["data_offsets"] = json!([start + 4096, end + 4096]);
                })
            }),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        Case {
            name: "offsets-overlapping",
            break_it: Box::new(|p, _| {
                let names = p.names_by_offset();
                let (start, end) = p.range(&names[1]);
                let len = end - start;
                // The second tensor starts inside the first.
                with_header(p, |h| {
                    h[&names[1]]["data_offsets"] = json!([start - 4, start - 4 + len]);
                })
            }),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        Case {
            name: "offsets-reversed",
            break_it: Box::new(|p, _| {
                let (start, end) = p.range(LAYER_WEIGHT);
                with_header(p, |h| {
                    h[LAYER_WEIGHT]["data_offsets"] = json!([end, start]);
                })
            }),
            expect: Expect::Safetensors(&["model.safetensors"]),
        },
        weight_header_field(
            "bytes-not-dtype-times-shape",
            "shape",
            json!([32, 31]),
            Expect::Safetensors(&["model.safetensors"]),
        ),
        weight_header_field(
            "shape-overflows",
            "shape",
            json!([1u64 << 62, 1u64 << 62, 16]),
            Expect::Safetensors(&["model.safetensors"]),
        ),
        weight_header_field(
            "unknown-dtype",
            "dtype",
            json!("Q4_K"),
            Expect::Safetensors(&["model.safetensors"]),
        ),
        weight_header_field(
            "integer-dtype-for-a-weight",
            "dtype",
            json!("I32"),
            Expect::Dtype(&[LAYER_WEIGHT, "I32"]),
        ),
        Case {
            name: "missing-tensor",
            break_it: Box::new(|p, _| {
                // Dropping a tensor from the header leaves a hole: move the later ones down.
                let mut header = p.header.clone();
                let (start, end) = p.range(LAYER_WEIGHT);
                header.as_object_mut().unwrap().remove(LAYER_WEIGHT);
                let data = cut_data(p, &mut header, start..end);
                Some(file_bytes(header.to_string().as_bytes(), &data))
            }),
            expect: Expect::Missing(&[LAYER_WEIGHT]),
        },
        config_field(
            "shape-contradicts-config",
            "intermediate_size",
            json!(48),
            Expect::Shape(&["intermediate.dense.weight", "[48, 32]", "[64, 32]"]),
        ),
        config_field(
            "vocab-size-differs-from-embedding-rows",
            "vocab_size",
            json!(31010),
            Expect::Shape(&[EMBEDDINGS, "31010", "31002"]),
        ),
        Case {
            name: "tokenizer-larger-than-embedding-table",
            break_it: Box::new(|p, dir| {
                // A vocabulary of 31002 tokens against an embedding table of 31000 rows.
                edit_config(dir, |c| {
                    c.insert("vocab_size".into(), json!(31000));
                });
                let (_, end) = p.range(EMBEDDINGS);
                let cut = 2 * 32 * 4;
                let mut header = p.header.clone();
                let data = cut_data(p, &mut header, end - cut..end);
                header[EMBEDDINGS]["shape"] = json!([31000, 32]);
                Some(file_bytes(header.to_string().as_bytes(), &data))
            }),
            expect: Expect::Config(&["ids up to 31001", "vocab_size is 31000"]),
        },
        Case {
            name: "nan-in-a-weight",
            break_it: Box::new(|p, _| poison(p, LAYER_WEIGHT, f32::NAN)),
            expect: Expect::NonFinite(&[LAYER_WEIGHT, "NaN", "index 7"]),
        },
        Case {
            name: "inf-in-the-embeddings",
            break_it: Box::new(|p, _| poison(p, EMBEDDINGS, f32::INFINITY)),
            expect: Expect::NonFinite(&[EMBEDDINGS, "inf"]),
        },
        Case {
            name: "config-not-json",
            break_it: Box::new(|_, dir| {
                std::fs::write(dir.join("config.json"), "{\"hidden_size\": 32,").unwrap();
                None
            }),
            expect: Expect::Config(&["config.json"]),
        },
        Case {
            name: "config-missing-hidden-size",
            break_it: Box::new(|_, dir| {
                edit_config(dir, |c| {
                    c.remove("hidden_size");
                });
                None
            }),
            expect: Expect::Config(&["config.json", "hidden_size"]),
        },
        config_field(
            "config-zero-heads",
            "num_attention_heads",
            json!(0),
            Expect::Config(&["num_attention_heads"]),
        ),
        config_field(
            "config-heads-do-not-divide-hidden",
            "num_attention_heads",
            json!(3),
            Expect::Config(&["not divisible"]),
        ),
        config_field(
            "config-zero-layers",
            "num_hidden_layers",
            json!(0),
            Expect::Config(&["num_hidden_layers"]),
        ),
        config_field(
            "config-absurd-hidden",
            "hidden_size",
            json!(1_000_000_000u64),
            Expect::Config(&["hidden_size"]),
        ),
        config_field(
            "config-absurd-positions",
            "max_position_embeddings",
            json!(1u64 << 40),
            Expect::Config(&["max_position_embeddings"]),
        ),
        config_field(
            "config-negative-eps",
            "layer_norm_eps",
            json!(-1.0),
            Expect::Config(&["layer_norm_eps"]),
        ),
        config_field(
            "config-hidden-size-is-a-string",
            "hidden_size",
            json!("768"),
            Expect::Config(&["hidden_size"]),
        ),
        Case {
            name: "tokenizer-json-does-not-parse",
            break_it: Box::new(|_, dir| {
                std::fs::write(
                    dir.join("tokenizer.json"),
                    "{\"model\": {\"type\": \"WordPiece\"",
                )
                .unwrap();
                None
            }),
            expect: Expect::Tokenizer(&["tokenizer.json"]),
        },
        Case {
            name: "model-file-missing",
            break_it: Box::new(|_, dir| {
                std::fs::remove_file(dir.join("model.safetensors")).unwrap();
                None
            }),
            expect: Expect::Missing(&["model.safetensors"]),
        },
    ]
}

/// A fresh copy of bert-tiny broken by `case`.
fn broken_copy(case: &Case, original: &Parts) -> (tempfile::TempDir, Option<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir("bert-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let bytes = (case.break_it)(original, dir.path());
    if let Some(b) = &bytes {
        std::fs::write(dir.path().join("model.safetensors"), b).unwrap();
    }
    (dir, bytes)
}

#[test]
fn every_lying_checkpoint_gets_a_typed_error() {
    let original = Parts::read(&model_dir("bert-tiny").join("model.safetensors"));
    // The unbroken fixture loads: the errors below come from the mutations alone.
    Encoder::from_dir(model_dir("bert-tiny"), Options::default()).unwrap();
    let corpus_dir = std::env::var_os("DENSA_WRITE_CORPUS").map(std::path::PathBuf::from);
    for case in corpus() {
        let (dir, bytes) = broken_copy(&case, &original);
        let options = Options {
            threads: 1,
            ..Options::default()
        };
        match Encoder::from_dir(dir.path(), options) {
            Ok(_) => panic!("{}: loaded but should not", case.name),
            Err(e) => case.expect.check(case.name, &e),
        }
        if let (Some(out), Some(b)) = (&corpus_dir, bytes) {
            std::fs::create_dir_all(out).unwrap();
            std::fs::write(out.join(format!("{}.safetensors", case.name)), b).unwrap();
        }
    }
}

#[test]
fn non_finite_weights_load_when_allowed_and_inspect_names_them() {
    let original = Parts::read(&model_dir("bert-tiny").join("model.safetensors"));
    let case = corpus()
        .into_iter()
        .find(|c| c.name == "nan-in-a-weight")
        .unwrap();
    let (dir, _) = broken_copy(&case, &original);
    let options = Options {
        allow_non_finite: true,
        ..Options::default()
    };
    let encoder = Encoder::from_dir(dir.path(), options).unwrap();
    // The NaN reaches the vectors: the user asked for it.
    let e = encoder.embed(&["hola"]).unwrap();
    assert!(e.data.iter().any(|v| v.is_nan()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(["inspect", "--model"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = String::from_utf8(out.stdout).unwrap();
    let line = report.lines().find(|l| l.contains(LAYER_WEIGHT)).unwrap();
    assert!(line.contains("1 NaN/Inf"), "{line}");
    assert!(report.contains("finite:       NO: 1 tensors"), "{report}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(["embed", "--model"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(LAYER_WEIGHT) && stderr.contains("--allow-non-finite"),
        "{stderr}"
    );
}
