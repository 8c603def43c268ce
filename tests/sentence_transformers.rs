//! A sentence-transformers folder read in full (tests/fixtures/models/st-tiny: XLM-R, mean
//! pooling without the prompt's tokens, Dense with tanh, Normalize, prompts) against
//! `SentenceTransformer.encode` (tests/fixtures/golden/st-tiny.safetensors, written by
//! tools/make_fixtures.py with sentence-transformers 6).

mod common;

use common::cli::{densa, json_lines, ok, s};
use common::{copy_folder, max_abs_diff, model_dir, Golden};
use densa::{Encoder, Options, Pooling, Prompt};

/// Vectors are L2-normalised (or tanh-bounded): an absolute tolerance.
const TOLERANCE: f32 = 1e-5;

fn texts(golden: &Golden) -> Vec<String> {
    serde_json::from_str(&golden.metadata("texts").unwrap()).unwrap()
}

/// Embeds the golden texts with `options` on `dir` and compares with golden tensor `label`.
fn check(dir: &std::path::Path, options: Options, label: &str) {
    let golden = Golden::load("st-tiny");
    let texts = texts(&golden);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encoder = Encoder::from_dir(
        dir,
        Options {
            threads: 2,
            ..options
        },
    )
    .unwrap();
    let got = encoder.embed(&refs).unwrap();
    let (shape, want) = golden.f32(label);
    assert_eq!((got.len(), got.dim), (shape[0], shape[1]), "{label}: shape");
    let mut worst = 0.0f32;
    for i in 0..got.len() {
        let diff = max_abs_diff(got.row(i), &want[i * got.dim..(i + 1) * got.dim]);
        assert!(
            diff <= TOLERANCE,
            "{label} text {i} {:?}: {diff:e}",
            texts[i]
        );
        worst = worst.max(diff);
    }
    println!(
        "FIDELITY st-tiny {label}: {} texts, worst |diff| {worst:.3e}",
        got.len()
    );
}

#[test]
fn every_prompt_setting_matches_sentence_transformers() {
    let dir = model_dir("st-tiny");
    let with = |prompt: Prompt| Options {
        prompt,
        ..Options::default()
    };
    // default_prompt_name is "query".
    check(&dir, Options::default(), "default");
    check(&dir, with(Prompt::Named("passage".into())), "passage");
    check(&dir, with(Prompt::None), "none");
    // An empty prompt is no prompt.
    check(&dir, with(Prompt::Text(String::new())), "none");
    check(&dir, with(Prompt::Text("pregunta: ".into())), "literal");
}

#[test]
fn truncate_dim_keeps_the_first_values_before_an_explicit_normalize() {
    let dir = model_dir("st-tiny");
    let truncated = Options {
        truncate_dim: Some(8),
        ..Options::default()
    };
    check(&dir, truncated.clone(), "truncated");
    let normalized = Options {
        normalize: true,
        ..truncated
    };
    check(&dir, normalized, "truncated_normalized");
}

#[test]
fn the_folder_settings_are_read() {
    let encoder = Encoder::from_dir(model_dir("st-tiny"), Options::default()).unwrap();
    assert_eq!(
        encoder.pooling(),
        Pooling::Mean,
        "1_Pooling: pooling_mode mean"
    );
    assert_eq!(encoder.dim(), 16, "2_Dense: 32 -> 16");
    assert!(encoder.normalizes(), "3_Normalize");
    assert_eq!(encoder.prompt(), Some("query: "), "default_prompt_name");
    // "query: " is <s> ▁query : (3 tokens without the trailing </s>) in this tokenizer:
    // counted from the tokenizer itself, independently of the encoder.
    let alone = encoder
        .tokenizer()
        .encode(densa::Input::Text("query: "))
        .unwrap();
    assert_eq!(encoder.prompt_tokens(), alone.ids.len() - 1);
    assert_eq!(
        encoder.tokenizer().max_length(),
        128,
        "sentence-transformers 6 keeps max_seq_length as model_max_length"
    );
}

/// Folders written by sentence-transformers 2 to 5: one boolean per pooling mode and the
/// `sentence_transformers.models.*` module names give the same vectors.
#[test]
fn older_sentence_transformers_layouts_give_the_same_vectors() {
    let dir = tempfile::tempdir().unwrap();
    copy_folder(&model_dir("st-tiny"), dir.path());
    let pooling = serde_json::json!({
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": false,
        "pooling_mode_mean_tokens": true,
        "pooling_mode_max_tokens": false,
        "pooling_mode_mean_sqrt_len_tokens": false,
        "pooling_mode_weightedmean_tokens": false,
        "pooling_mode_lasttoken": false,
        "include_prompt": false
    });
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        pooling.to_string(),
    )
    .unwrap();
    let modules = std::fs::read_to_string(dir.path().join("modules.json")).unwrap();
    let old = modules
        .replace(
            "sentence_transformers.base.modules.transformer",
            "sentence_transformers.models",
        )
        .replace(
            "sentence_transformers.sentence_transformer.modules.pooling",
            "sentence_transformers.models",
        )
        .replace(
            "sentence_transformers.base.modules.dense",
            "sentence_transformers.models",
        )
        .replace(
            "sentence_transformers.base.modules.normalize",
            "sentence_transformers.models",
        );
    assert!(old.contains("sentence_transformers.models.Pooling"));
    std::fs::write(dir.path().join("modules.json"), old).unwrap();
    // Older versions wrote max_seq_length into sentence_bert_config.json.
    std::fs::write(
        dir.path().join("sentence_bert_config.json"),
        r#"{"max_seq_length": 128, "do_lower_case": false}"#,
    )
    .unwrap();
    check(dir.path(), Options::default(), "default");
}

#[test]
fn unknown_prompt_names_and_bad_truncation_are_clear_errors() {
    let open = |options: Options| {
        Encoder::from_dir(model_dir("st-tiny"), options)
            .err()
            .unwrap()
    };
    let e = open(Options {
        prompt: Prompt::Named("pregunta".into()),
        ..Options::default()
    });
    assert!(
        e.to_string().contains(
            "prompt name \"pregunta\" is not among this model's prompts (document, passage, query)"
        ),
        "{e}"
    );
    let e = open(Options {
        truncate_dim: Some(17),
        ..Options::default()
    });
    assert!(
        e.to_string()
            .contains("truncate_dim 17 must be between 1 and the embedding's 16 values"),
        "{e}"
    );
}

/// The CLI's prompt flags reach the same vectors.
#[test]
fn embed_prompt_flags_match_sentence_transformers() {
    let golden = Golden::load("st-tiny");
    let texts = texts(&golden);
    let input = texts.join("\n") + "\n";
    let model = model_dir("st-tiny");
    for (flags, label) in [
        (vec!["--prompt-name", "passage"], "passage"),
        (vec!["--prompt", "pregunta: "], "literal"),
        (
            vec!["--truncate-dim", "8", "--normalize"],
            "truncated_normalized",
        ),
    ] {
        let mut args = vec!["embed", "--model", s(&model)];
        args.extend_from_slice(&flags);
        let stdout = ok(&densa(&args, Some(input.as_bytes())));
        let (shape, want) = golden.f32(label);
        let rows: Vec<Vec<f32>> = json_lines(&stdout);
        assert_eq!(rows.len(), shape[0], "{label}");
        for (i, row) in rows.iter().enumerate() {
            let diff = max_abs_diff(row, &want[i * shape[1]..(i + 1) * shape[1]]);
            assert!(diff <= TOLERANCE, "{label} text {i}: {diff:e}");
        }
    }
}
