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
        // BETO's special ids: [CLS] = 4, [SEP] = 5 (tests/fixtures/vocab/README.md).
        assert_eq!(t.ids, vec![4, 5]);
    }
    assert_eq!(encoder.embed(&texts).unwrap().len(), texts.len());
}

/// Long texts are tokenized by a bounded prefix: the ids must be those of the `tokenizers`
/// library given the whole text with the same truncation, for single texts and for pairs,
/// including pairs whose prefixes rank the two sides the other way round from the whole
/// texts (longest-first truncation gives the odd token to the longer side).
#[test]
fn bounded_prefixes_tokenize_as_the_whole_text() {
    let dir = model_dir("bert-tiny");
    let words = "biblioteca pingüino canción ";
    let letters = "x y z ñ á ";
    // Just over the 4 KiB (64 bytes per token of max_length 64) where prefixes start: the
    // reference tokenizes whole pairs, and its overflowing windows multiply per side.
    let long_words = words.repeat(300); // 8.4 KB, few tokens per byte
    let long_letters = letters.repeat(800); // 8 KB, many tokens per byte
                                            // Prefix of `a` is word-dense (few tokens), its rest letter-dense (many tokens), so its
                                            // first 4 KiB hold fewer tokens than `b`'s though the whole of `a` holds more.
    let a = format!("{}{}", words.repeat(160), letters.repeat(600));
    let b = letters.repeat(500);
    let no_space = "ñ".repeat(40_000);
    let cases: Vec<(String, Option<String>)> = vec![
        (words.repeat(2_000), None),
        (letters.repeat(3_000), None),
        (format!("{long_words}。{long_letters}"), None),
        (no_space.clone(), None),
        (long_words.clone(), Some(long_letters.clone())),
        (long_letters.clone(), Some(long_words.clone())),
        (a.clone(), Some(b.clone())),
        (b.clone(), Some(a.clone())),
        ("una pregunta corta".into(), Some(long_words.clone())),
        (long_letters.clone(), Some("un texto corto".into())),
        (no_space.clone(), Some(long_words.clone())),
    ];
    // 64: a pair keeps 61 tokens (odd: which side is longer matters); 63: 60 (even).
    for max_length in [64usize, 63] {
        let encoder = Encoder::from_dir(
            &dir,
            Options {
                threads: 1,
                max_length: Some(max_length),
                ..Options::default()
            },
        )
        .unwrap();
        let mut reference = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        reference.with_padding(None);
        reference
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length,
                ..Default::default()
            }))
            .unwrap();
        for (i, (first, second)) in cases.iter().enumerate() {
            let (input, whole) = match second {
                None => (Input::Text(first), reference.encode(first.as_str(), true)),
                Some(second) => (
                    Input::Pair(first, second),
                    reference.encode((first.as_str(), second.as_str()), true),
                ),
            };
            let whole = whole.unwrap();
            let got = &encoder.tokenize(&[input]).unwrap()[0];
            assert_eq!(
                got.ids,
                whole.get_ids(),
                "max_length {max_length}, case {i}"
            );
            assert_eq!(got.type_ids, whole.get_type_ids(), "case {i}");
            assert_eq!(
                got.truncated,
                !whole.get_overflowing().is_empty(),
                "case {i}"
            );
        }
    }
}
