//! Hostile texts: right-to-left scripts, emoji sequences, combining accents, control
//! characters, odd whitespace and a 1 MB line get the token ids transformers gives
//! (tests/fixtures/golden/hostile-texts.json, made by tools/make_hostile_golden.py), and every
//! one of them embeds to one finite row, in input order.

mod common;

use common::{fixtures, model_dir};
use densa::{Encoder, Input, Options};

/// The texts of the golden file, with the 1 MB recipe expanded.
fn hostile_texts(golden: &serde_json::Value) -> Vec<String> {
    golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| match t {
            serde_json::Value::String(s) => s.clone(),
            recipe => recipe["repeat"]
                .as_str()
                .unwrap()
                .repeat(recipe["times"].as_u64().unwrap() as usize),
        })
        .collect()
}

fn golden() -> serde_json::Value {
    let path = fixtures().join("golden").join("hostile-texts.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn hostile_texts_tokenize_as_transformers() {
    let golden = golden();
    let texts = hostile_texts(&golden);
    assert!(
        texts.iter().any(|t| t.len() >= 1 << 20),
        "the 1 MB line is in the set"
    );
    for (model, expected) in golden["models"].as_object().unwrap() {
        let max_length = expected["max_length"].as_u64().unwrap() as usize;
        let options = Options {
            threads: 2,
            max_length: Some(max_length),
            ..Options::default()
        };
        let encoder = Encoder::from_dir(model_dir(model), options).unwrap();
        let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
        let tokenized = encoder.tokenize(&inputs).unwrap();
        for (i, (got, want)) in tokenized
            .iter()
            .zip(expected["ids"].as_array().unwrap())
            .enumerate()
        {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                got.ids,
                want,
                "{model}, text {i} {:?}",
                texts[i].chars().take(40).collect::<String>()
            );
        }
        // Each text is one finite output row, in input order: the same row as alone.
        let all = encoder.embed_inputs(&inputs).unwrap();
        assert_eq!(all.len(), texts.len());
        assert!(all.data.iter().all(|v| v.is_finite()), "{model}");
        assert_eq!(all.truncated, 1, "{model}: only the 1 MB line is cut");
        for (i, text) in texts.iter().enumerate().step_by(5) {
            let alone = encoder.embed(&[text]).unwrap();
            assert_eq!(alone.row(0), all.row(i), "{model}: row {i} moved");
        }
    }
}

#[test]
fn empty_and_whitespace_texts_are_cls_sep() {
    let encoder = Encoder::from_dir(model_dir("dpr-ctx-tiny"), Options::default()).unwrap();
    let texts = ["", " ", "\t\n", "\u{3000}"];
    let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
    for t in encoder.tokenize(&inputs).unwrap() {
        // BETO's special ids: [CLS] = 4, [SEP] = 5 (../shared/vocab/README.md).
        assert_eq!(t.ids, vec![4, 5]);
    }
    assert_eq!(encoder.embed(&texts).unwrap().len(), texts.len());
}
