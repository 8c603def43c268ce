//! Bad input met along the way gets a clear, typed error, never a panic.

mod common;

use common::model_dir;
use densa::{Encoder, Error, Options, Pooling, Tokenized};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Opening `model` (a fixture) with [`opts`] edited by `edit` fails: the error.
fn open_fails(model: &str, edit: impl FnOnce(&mut Options)) -> Error {
    let mut options = opts();
    edit(&mut options);
    Encoder::from_dir(model_dir(model), options).err().unwrap()
}

/// Asserts that `e` is of the expected kind (`kind_matches`) and its message names `needle`.
fn expect_error(e: &Error, kind_matches: bool, needle: &str) {
    assert!(kind_matches && e.to_string().contains(needle), "{e}");
}

fn opts() -> Options {
    Options {
        threads: 1,
        ..Options::default()
    }
}

/// A copy of a fixture folder that a test may damage.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Rewrites `model.safetensors` through `edit`, which may drop or change tensors.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

fn load_err(dir: &Path) -> Error {
    match Encoder::from_dir(dir, opts()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_folder() {
    let e = load_err(Path::new("/nonexistent/densa-model"));
    assert!(matches!(e, Error::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/densa-model"));
}

#[test]
fn pytorch_only_folder_names_the_converter() {
    let dir = copy_fixture("dpr-ctx-tiny");
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::PytorchOnly { .. }), "{e}");
    assert!(
        e.to_string().contains("tools/convert_to_safetensors.py"),
        "{e}"
    );
}

#[test]
fn missing_config() {
    let dir = copy_fixture("bert-tiny");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = load_err(dir.path());
    expect_error(&e, matches!(e, Error::MissingFile { .. }), "config.json");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("bert-tiny");
    rewrite_weights(dir.path(), |t| {
        t.retain(|(n, ..)| n != "bert.encoder.layer.1.intermediate.dense.bias")
    });
    let e = load_err(dir.path());
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("bert.encoder.layer.1.intermediate.dense.bias"),
        "{e}"
    );
}

#[test]
fn shape_contradicting_config() {
    let dir = copy_fixture("bert-tiny");
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 128"),
    )
    .unwrap();
    let e = load_err(dir.path());
    match &e {
        Error::Shape {
            name,
            expected,
            found,
        } => {
            assert!(name.contains("intermediate.dense.weight"), "{e}");
            assert_eq!(
                (expected.clone(), found.clone()),
                (vec![128, 32], vec![64, 32])
            );
        }
        _ => panic!("expected a shape error, got {e}"),
    }
}

#[test]
fn unsupported_dtype() {
    let dir = copy_fixture("bert-tiny");
    rewrite_weights(dir.path(), |t| {
        let entry = t
            .iter_mut()
            .find(|(n, ..)| n == "bert.embeddings.LayerNorm.bias")
            .unwrap();
        entry.1 = Dtype::I32;
    });
    let e = load_err(dir.path());
    expect_error(&e, matches!(e, Error::Dtype { .. }), "I32");
}

#[test]
fn truncated_and_garbage_safetensors() {
    let dir = copy_fixture("bert-tiny");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load_err(dir.path()), Error::Safetensors { .. }));
    std::fs::write(&path, b"this is not a safetensors file").unwrap();
    assert!(matches!(load_err(dir.path()), Error::Safetensors { .. }));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(load_err(dir.path()), Error::Safetensors { .. }));
    // A header length far beyond the file.
    let mut lying = (1u64 << 40).to_le_bytes().to_vec();
    lying.extend_from_slice(b"{}");
    std::fs::write(&path, lying).unwrap();
    assert!(matches!(load_err(dir.path()), Error::Safetensors { .. }));
}

#[test]
fn bad_configs() {
    for (from, to, needle) in [
        (
            "\"num_attention_heads\": 4",
            "\"num_attention_heads\": 5",
            "not divisible",
        ),
        (
            "\"model_type\": \"bert\"",
            "\"model_type\": \"mpnet\"",
            "model_type \"mpnet\" is not supported",
        ),
        (
            "\"hidden_act\": \"gelu\"",
            "\"hidden_act\": \"relu\"",
            "relu",
        ),
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 0",
            "num_hidden_layers",
        ),
        (
            "\"hidden_size\": 32",
            "\"hidden_size\": 1000000000",
            "hidden_size",
        ),
        (
            "\"hidden_act\"",
            "\"position_embedding_type\": \"relative_key\", \"hidden_act\"",
            "relative_key",
        ),
        ("{", "[", "not a valid config"),
    ] {
        let dir = copy_fixture("bert-tiny");
        let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(config.contains(from), "fixture config lacks {from}");
        std::fs::write(dir.path().join("config.json"), config.replacen(from, to, 1)).unwrap();
        let e = load_err(dir.path());
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains(needle),
            "{to}: {e}"
        );
    }
}

#[test]
fn bad_options_and_inputs() {
    let e = open_fails("dpr-ctx-tiny", |o| o.pooling = Pooling::Pooler);
    assert!(e.to_string().contains("no pooler"), "{e}");
    let e = open_fails("bert-tiny", |o| o.max_length = Some(65));
    assert!(e.to_string().contains("max_position_embeddings"), "{e}");
    let e = open_fails("bert-tiny", |o| o.batch_size = 0);
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");

    let encoder = Encoder::from_dir(model_dir("bert-tiny"), opts()).unwrap();
    let beyond = Tokenized {
        ids: vec![4, 31002, 5],
        type_ids: vec![0; 3],
        tokens: vec![],
        truncated: false,
    };
    let e = encoder.embed_tokenized(&[beyond]).err().unwrap();
    assert!(e.to_string().contains("31002"), "{e}");
    let too_long = Tokenized {
        ids: vec![4; 65],
        type_ids: vec![0; 65],
        tokens: vec![],
        truncated: false,
    };
    assert!(encoder.embed_tokenized(&[too_long]).is_err());
    // Empty input lists are fine and give no rows.
    assert_eq!(encoder.embed(&[]).unwrap().len(), 0);
}

#[test]
fn unparsable_tokenizer() {
    let dir = copy_fixture("bert-tiny");
    std::fs::write(dir.path().join("tokenizer.json"), "{ not json").unwrap();
    assert!(matches!(load_err(dir.path()), Error::Tokenizer(_)));
    let dir = copy_fixture("dpr-ctx-tiny");
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("vocab.txt"), "{e}");
}

/// Every value a caller can build and hand to the library gets a typed error, never a panic.
#[test]
fn hostile_values_through_the_rust_api() {
    let encoder = Encoder::from_dir(model_dir("bert-tiny"), opts()).unwrap();
    let tokenized = |ids: Vec<u32>, type_ids: Vec<u32>| Tokenized {
        ids,
        type_ids,
        tokens: vec![],
        truncated: false,
    };
    // No ids at all, mismatched type ids, a type beyond the model's.
    for (bad, needle) in [
        (tokenized(vec![], vec![]), "has no tokens"),
        (tokenized(vec![4, 5], vec![0]), "2 ids but 1 type ids"),
        (tokenized(vec![4, 5], vec![0, 9]), "token type 9"),
    ] {
        let good = tokenized(vec![4, 5], vec![0, 0]);
        let e = encoder.embed_tokenized(&[good, bad]).err().unwrap();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        assert!(e.to_string().contains("tokenized input 1"), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    // A packed batch built by hand: it cannot hold a sequence without tokens or with a type id
    // missing (its offsets are private, so they cannot lie), and the model refuses what its
    // tables cannot embed, naming the caller's number of the input.
    let model = encoder.model();
    let mut workspace = densa::model::Workspace::default();
    let mut batch = densa::model::PackedBatch::new();
    for (input, ids, types, needle) in [
        (
            7,
            &[][..],
            &[][..],
            "tokenized input 7 (counting from 0) has no tokens",
        ),
        (
            8,
            &[4, 5][..],
            &[0][..],
            "tokenized input 8 (counting from 0) has 2 ids but 1 type ids",
        ),
    ] {
        let e = batch.push(input, ids, types).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    assert_eq!(batch.num_sequences(), 0, "a refused sequence is not packed");
    let empty = model.forward(&batch, &mut workspace, densa::Rows::All, None);
    assert_eq!(
        empty.unwrap().len(),
        0,
        "an empty batch has an empty hidden state"
    );
    batch.push(9, &[4, 31002, 5], &[0, 0, 0]).unwrap();
    let e = model
        .forward(&batch, &mut workspace, densa::Rows::All, None)
        .err()
        .unwrap();
    assert!(e.to_string().contains("tokenized input 9"), "{e}");
    assert!(e.to_string().contains("token id 31002"), "{e}");
    // pool with an output of the wrong size, or a hidden state shorter than the batch.
    let mut batch = densa::model::PackedBatch::new();
    batch.push(0, &[4, 5], &[0, 0]).unwrap();
    let hidden = vec![0.0f32; 2 * model.config.hidden_size];
    let mut out = vec![0.0f32; 3];
    let e = densa::pooling::pool(model, Pooling::Cls, &hidden, &batch, 0, &mut out)
        .err()
        .unwrap();
    assert!(e.to_string().contains("output holds 3 values"), "{e}");
    let mut out = vec![0.0f32; model.config.hidden_size];
    let e = densa::pooling::pool(model, Pooling::Mean, &hidden[..10], &batch, 0, &mut out)
        .err()
        .unwrap();
    assert!(e.to_string().contains("hidden state holds 0 rows"), "{e}");
    // npy with data that is not (rows, cols).
    let e = densa::io::npy::write_f32_matrix(&mut Vec::new(), &[1.0; 5], 2, 3).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = densa::io::npy::write_f32_matrix(&mut Vec::new(), &[], usize::MAX, 2).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // Thread counts beyond reason.
    let e = open_fails("bert-tiny", |o| o.threads = 10_000);
    assert!(e.to_string().contains("more than 4 per core"), "{e}");
    // max_length below a text's special tokens.
    let e = open_fails("bert-tiny", |o| o.max_length = Some(1));
    assert!(
        e.to_string().contains("max_length 1 must be at least 2"),
        "{e}"
    );
    let short = Encoder::from_dir(
        model_dir("bert-tiny"),
        Options {
            max_length: Some(2),
            ..opts()
        },
    )
    .unwrap();
    let e = short.embed_pairs(&[("a", "b")]).err().unwrap();
    assert!(
        e.to_string()
            .contains("max_length 2 is shorter than the 3 special tokens a pair of texts gets"),
        "{e}"
    );
    assert_eq!(short.embed(&["un texto largo"]).unwrap().len(), 1);
}

/// Finite weights that overflow: the embedding holds ±Inf/NaN, which is an error naming the
/// input unless allow_non_finite is set (then the values come back as they are).
#[test]
fn non_finite_embeddings_are_refused_by_default() {
    let dir = copy_fixture("bert-tiny");
    rewrite_weights(dir.path(), |tensors| {
        for (name, dtype, _, bytes) in tensors.iter_mut() {
            if name.ends_with("output.LayerNorm.weight") && *dtype == Dtype::F32 {
                for value in bytes.chunks_exact_mut(4) {
                    value.copy_from_slice(&3.0e38f32.to_le_bytes());
                }
            }
        }
    });
    let encoder = Encoder::from_dir(dir.path(), opts()).unwrap();
    let e = encoder.embed(&["hola", "adiós"]).err().unwrap();
    assert!(
        matches!(e, Error::NonFiniteOutput { input: 0, count } if count > 0),
        "{e}"
    );
    let permissive = Encoder::from_dir(
        dir.path(),
        Options {
            allow_non_finite: true,
            ..opts()
        },
    )
    .unwrap();
    let e = permissive.embed(&["hola"]).unwrap();
    assert!(e.data.iter().any(|v| !v.is_finite()));
}

/// An XLM-R folder with only a SentencePiece model (no tokenizer.json) gets an error that says
/// what to do.
#[test]
fn a_sentencepiece_only_folder_is_told_how_to_get_a_tokenizer_json() {
    let dir = copy_fixture("xlmr-tiny");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("sentencepiece.bpe.model"), b"not read").unwrap();
    let e = load_err(dir.path());
    expect_error(
        &e,
        matches!(e, Error::MissingFile { .. }),
        "sentencepiece.bpe.model is a SentencePiece model, which densa does not read",
    );
}

/// Q, K and V are stacked into one layer, so they must be stored alike: a folder where one is
/// int8 (with a weight_scale, as densa quantize writes) and the others float is refused,
/// naming them, instead of being mixed.
#[test]
fn int8_and_float_mixed_in_one_stacked_layer_are_refused() {
    let dir = copy_fixture("bert-tiny");
    let key = "bert.encoder.layer.0.attention.self.key";
    rewrite_weights(dir.path(), |t| {
        let at = t
            .iter()
            .position(|(n, ..)| n == &format!("{key}.weight"))
            .unwrap();
        let shape = t[at].2.clone();
        let values = shape.iter().product::<usize>();
        t[at] = (t[at].0.clone(), Dtype::I8, shape.clone(), vec![1u8; values]);
        let scales: Vec<u8> = (0..shape[0]).flat_map(|_| 0.01f32.to_le_bytes()).collect();
        t.push((
            format!("{key}.weight_scale"),
            Dtype::F32,
            vec![shape[0]],
            scales,
        ));
    });
    let e = load_err(dir.path());
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    assert!(e.to_string().contains(key), "{e}");
    assert!(e.to_string().contains("some are int8"), "{e}");
}
