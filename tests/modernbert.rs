//! ModernBERT beyond the per-layer goldens (tests/reference.rs, tests/rerank.rs,
//! tests/full_shape.rs): batches of mixed lengths bit for bit as texts alone, `[CLS]` pooling's
//! last layer (first rows only) bit for bit as the full pass, int8 close to transformers, the
//! published checkpoints' older config spelling read alike, and what densa refuses.

mod common;

use common::{cases, cosine, model_dir, Golden};
use densa::{BertConfig, Encoder, Input, Options, Pooling, Precision};
use std::path::Path;

fn encoder(dir: &Path, precision: Precision, pooling: Pooling) -> Encoder {
    Encoder::from_dir(
        dir,
        Options {
            threads: 2,
            precision,
            pooling,
            ..Options::default()
        },
    )
    .unwrap()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A batch of every case (2 to 512 tokens, 18 of 20 holding tokens more than 8 apart) gives each
/// text the bits it gets alone, at f32 and int8, with `[CLS]` and mean pooling; and `[CLS]`
/// pooling, whose last layer computes the first rows alone, gives the full pass's first row.
#[test]
fn packed_batches_are_bitwise_batch_invariant() {
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    for precision in [Precision::F32, Precision::Int8] {
        for pooling in [Pooling::Cls, Pooling::Mean] {
            let encoder = encoder(&model_dir("modernbert-tiny"), precision, pooling);
            let batch = encoder.embed_inputs(&inputs).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                let alone = encoder.embed_inputs(&[*input]).unwrap();
                assert_eq!(
                    bits(batch.row(i)),
                    bits(alone.row(0)),
                    "{precision:?} {pooling:?} case {i}"
                );
            }
            if pooling == Pooling::Cls {
                for (i, input) in inputs.iter().enumerate() {
                    let (_, states) = encoder.hidden_states(*input).unwrap();
                    let last = states.last().unwrap();
                    let h = batch.row(i).len();
                    assert_eq!(
                        bits(batch.row(i)),
                        bits(&last[..h]),
                        "{precision:?} case {i}"
                    );
                }
            }
        }
    }
}

/// 1, 2 and 3 threads give the same bits (rotary, GeGLU, windows and pre-norm included).
#[test]
fn thread_count_does_not_change_a_bit() {
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let run = |threads: usize| {
        let options = Options {
            threads,
            pooling: Pooling::Mean,
            ..Options::default()
        };
        let encoder = Encoder::from_dir(model_dir("modernbert-tiny"), options).unwrap();
        bits(&encoder.embed_inputs(&inputs).unwrap().data)
    };
    let one = run(1);
    assert_eq!(run(2), one);
    assert_eq!(run(3), one);
}

/// int8 (quantized at load, and a `densa quantize` folder) against transformers' f32 vectors.
#[test]
fn int8_stays_within_cosine_0_999_of_transformers() {
    let golden = Golden::load("modernbert-tiny");
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let dir = tempfile::tempdir().unwrap();
    let quantized = dir.path().join("int8");
    densa::quantize::quantize_dir(&model_dir("modernbert-tiny"), &quantized, false).unwrap();
    for folder in [model_dir("modernbert-tiny"), quantized] {
        let got = encoder(&folder, Precision::Int8, Pooling::Cls)
            .embed_inputs(&inputs)
            .unwrap();
        let worst = (0..cases.len())
            .map(|i| cosine(got.row(i), &golden.f32(&format!("case{i}.pooled")).1))
            .fold(1.0f64, f64::min);
        println!(
            "ACCURACY modernbert-tiny int8 ({}): worst cosine {worst:.5}",
            folder.display()
        );
        assert!(worst >= 0.999, "int8 worst cosine {worst}");
    }
}

/// A copy of modernbert-tiny whose config.json `edit` changes.
fn with_config(
    root: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> std::path::PathBuf {
    let folder = root.join(name);
    std::fs::create_dir(&folder).unwrap();
    for entry in std::fs::read_dir(model_dir("modernbert-tiny")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    let config_path = folder.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(&config_path, config.to_string()).unwrap();
    folder
}

/// The published checkpoints' config spelling (ModernBERT-base, mmBERT:
/// `global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`, no `layer_types` /
/// `rope_parameters`) reads as transformers 5's spelling of the same values: the same vectors,
/// bit for bit; and every value read matters (bases other than the defaults, mmBERT's equal
/// bases, all layers global each change the vectors).
#[test]
fn the_published_config_spelling_reads_alike() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rope = |global: f64, local: f64| {
        serde_json::json!({
            "full_attention": {"rope_type": "default", "rope_theta": global},
            "sliding_attention": {"rope_type": "default", "rope_theta": local},
        })
    };
    let new_spelling = with_config(root, "new", |c| {
        c.insert("rope_parameters".into(), rope(20000.0, 500.0));
    });
    let old_spelling = with_config(root, "old", |c| {
        c.remove("layer_types");
        c.remove("rope_parameters");
        c.insert("global_attn_every_n_layers".into(), 3.into());
        c.insert("global_rope_theta".into(), 20000.0.into());
        c.insert("local_rope_theta".into(), 500.0.into());
    });
    // mmBERT publishes one base for both kinds of layer.
    let mmbert_bases = with_config(root, "mmbert", |c| {
        c.insert("rope_parameters".into(), rope(160000.0, 160000.0));
    });
    let all_global = with_config(root, "global", |c| {
        c.remove("layer_types");
        c.insert("global_attn_every_n_layers".into(), 1.into());
    });
    // As transformers 5 reads it: a flat rope_parameters sets no base (the defaults stay), and
    // position_embedding_type means nothing to ModernBERT.
    let flat = with_config(root, "flat", |c| {
        c.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_theta": 777.0}),
        );
        c.insert("position_embedding_type".into(), "relative_key".into());
    });
    let cases = cases();
    let inputs: Vec<Input> = cases.iter().map(|c| c.input()).collect();
    let embed = |dir: &Path| {
        let out = encoder(dir, Precision::F32, Pooling::Mean)
            .embed_inputs(&inputs)
            .unwrap();
        bits(&out.data)
    };
    let fixture = embed(&model_dir("modernbert-tiny"));
    assert_eq!(embed(&new_spelling), embed(&old_spelling));
    assert_ne!(embed(&new_spelling), fixture);
    assert_ne!(embed(&mmbert_bases), fixture);
    assert_ne!(embed(&all_global), fixture);
    assert_eq!(embed(&flat), fixture);
}

/// What the config says and densa cannot run is an error naming it.
#[test]
fn unsupported_modernbert_configs_are_clear_errors() {
    let base = r#""model_type": "modernbert", "vocab_size": 100, "hidden_size": 32,
        "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 48,
        "max_position_embeddings": 64"#;
    for (extra, message) in [
        (
            r#", "layer_types": ["full_attention"]"#,
            "layer_types names 1 layers",
        ),
        (
            r#", "layer_types": ["full_attention", "chunked_attention", "full_attention"]"#,
            "\"chunked_attention\" is not a layer type",
        ),
        (
            r#", "rope_parameters": {"full_attention": {"rope_type": "yarn", "rope_theta": 10000.0}}"#,
            "rope_type \"yarn\" is not supported",
        ),
        (
            r#", "rope_scaling": {"type": "linear", "factor": 2.0}"#,
            "rope_scaling is not supported",
        ),
        (
            r#", "hidden_activation": "silu""#,
            "\"silu\" is not supported",
        ),
        (
            r#", "global_attn_every_n_layers": 0"#,
            "global_attn_every_n_layers must be at least 1",
        ),
        (
            r#", "global_rope_theta": -1.0"#,
            "rope_theta = -1 must be a number above 1",
        ),
    ] {
        let text = format!("{{{base}{extra}}}");
        let error = BertConfig::from_json(&text).unwrap_err();
        assert!(error.contains(message), "{extra}: {error}");
    }
    // An odd head width cannot be rotated in pairs.
    let odd = base
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 32")
        .replace("\"hidden_size\": 32", "\"hidden_size\": 96");
    let error = BertConfig::from_json(&format!("{{{odd}}}")).unwrap_err();
    assert!(error.contains("even head width"), "{error}");
}

/// ModernBERT-base's shape as densa reads it: every third layer global, the others within 64
/// positions each side, the published bases.
#[test]
fn modernbert_base_layer_plan() {
    let config = BertConfig::modernbert_base(50368);
    let windows: Vec<Option<usize>> = (0..22).map(|i| config.attention_window(i)).collect();
    for (i, window) in windows.iter().enumerate() {
        assert_eq!(*window, (i % 3 != 0).then_some(64), "layer {i}");
    }
    assert_eq!(config.rotary_theta(0), Some(160000.0));
    assert_eq!(config.rotary_theta(1), Some(10000.0));
    assert_eq!(config.intermediate_width(), 2 * 1152);
}
