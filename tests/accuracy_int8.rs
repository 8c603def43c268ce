//! int8 against f32 on a real trained model (all-MiniLM-L6-v2) and Spanish text sets made by us
//! (tests/fixtures/accuracy, tools/make_accuracy_sets.py): embedding cosines and retrieval
//! agreement. Figures are recorded in docs/ACCURACY.md (`--nocapture` prints them).

mod common;

use densa::{Embeddings, Encoder, Options, Pooling, Precision};

fn jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(common::fixtures().join("accuracy").join(name)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Indices of the `k` passages with the largest inner product with `q`, best first.
fn top_k(q: &[f32], passages: &Embeddings, k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = passages
        .rows()
        .enumerate()
        .map(|(i, p)| (p.iter().zip(q).map(|(a, b)| a * b).sum(), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// How a model is fed the three sets: plain texts and (title, text) pairs (MiniLM), or e5's
/// "query: " / "passage: " prompts with each passage as one text.
#[derive(Clone, Copy)]
enum Feed {
    Pairs,
    E5Prompts,
}

/// int8 against f32 on the three Spanish sets: cosine per set (mean ≥ 0.995, min ≥ 0.98) and
/// top-10 retrieval overlap (≥ 90 %).
fn int8_matches_f32(name: &str, f32_encoder: &Encoder, int8_encoder: &Encoder, feed: Feed) {
    let texts_file =
        std::fs::read_to_string(common::fixtures().join("accuracy/texts.txt")).unwrap();
    let passages = jsonl("passages.jsonl");
    let questions = jsonl("questions.jsonl");
    let prompt = |prefix: &str, text: &str| match feed {
        Feed::Pairs => text.to_string(),
        Feed::E5Prompts => format!("{prefix}{text}"),
    };
    let texts: Vec<String> = texts_file.lines().map(|t| prompt("query: ", t)).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pairs: Vec<(&str, &str)> = passages
        .iter()
        .map(|p| (p["title"].as_str().unwrap(), p["text"].as_str().unwrap()))
        .collect();
    let passage_texts: Vec<String> = pairs
        .iter()
        .map(|(title, text)| format!("passage: {title}. {text}"))
        .collect();
    let passage_texts: Vec<&str> = passage_texts.iter().map(String::as_str).collect();
    let question_texts: Vec<String> = questions
        .iter()
        .map(|q| prompt("query: ", q["question"].as_str().unwrap()))
        .collect();
    let question_texts: Vec<&str> = question_texts.iter().map(String::as_str).collect();
    assert!(texts.len() >= 200 && pairs.len() >= 500 && question_texts.len() >= 100);

    let stats = |a: &Embeddings, b: &Embeddings| {
        let cos: Vec<f64> = (0..a.len())
            .map(|i| common::cosine(a.row(i), b.row(i)))
            .collect();
        (
            cos.iter().sum::<f64>() / cos.len() as f64,
            cos.iter().copied().fold(1.0, f64::min),
        )
    };
    let embed_passages = |encoder: &Encoder| match feed {
        Feed::Pairs => encoder.embed_pairs(&pairs).unwrap(),
        Feed::E5Prompts => encoder.embed(&passage_texts).unwrap(),
    };
    let (t32, t8) = (
        f32_encoder.embed(&texts).unwrap(),
        int8_encoder.embed(&texts).unwrap(),
    );
    let (p32, p8) = (embed_passages(f32_encoder), embed_passages(int8_encoder));
    let (q32, q8) = (
        f32_encoder.embed(&question_texts).unwrap(),
        int8_encoder.embed(&question_texts).unwrap(),
    );
    let (text_mean, text_min) = stats(&t32, &t8);
    let (passage_mean, passage_min) = stats(&p32, &p8);
    let (question_mean, question_min) = stats(&q32, &q8);

    let mut overlap = 0.0;
    let (mut hit32, mut hit8) = (0, 0);
    for (i, q) in questions.iter().enumerate() {
        let (a, b) = (top_k(q32.row(i), &p32, 10), top_k(q8.row(i), &p8, 10));
        overlap += a.iter().filter(|x| b.contains(x)).count() as f64 / 10.0;
        let gold = passages
            .iter()
            .position(|p| p["id"] == q["passage_id"])
            .unwrap();
        hit32 += a.contains(&gold) as usize;
        hit8 += b.contains(&gold) as usize;
    }
    let overlap = overlap / questions.len() as f64;
    println!(
        "ACCURACY int8 vs f32, {name}: {} texts cosine mean {text_mean:.5} min {text_min:.5}; {} passages mean {passage_mean:.5} min {passage_min:.5}; {} questions mean {question_mean:.5} min {question_min:.5}; top-10 overlap {:.1} %; gold passage in top 10: f32 {hit32}, int8 {hit8} of {}",
        texts.len(), pairs.len(), question_texts.len(), overlap * 100.0, questions.len()
    );
    for (what, mean, min) in [
        ("texts", text_mean, text_min),
        ("passages", passage_mean, passage_min),
        ("questions", question_mean, question_min),
    ] {
        assert!(
            mean >= 0.995 && min >= 0.98,
            "{name} {what}: int8 cosine mean {mean}, min {min}"
        );
    }
    assert!(overlap >= 0.90, "{name}: top-10 overlap {overlap}");
}

#[test]
fn int8_matches_f32_on_spanish_texts_and_retrieval() {
    let Some(dir) = common::minilm_dir_or_skip() else {
        return;
    };
    let load = |precision| {
        let options = Options {
            threads: 2,
            precision,
            ..Options::default()
        };
        Encoder::from_dir(&dir, options).unwrap()
    };
    let (f32_encoder, int8_encoder) = (load(Precision::F32), load(Precision::Int8));
    int8_matches_f32("all-MiniLM-L6-v2", &f32_encoder, &int8_encoder, Feed::Pairs);
}

/// Real multilingual weights (multilingual-e5-small after 4-bit rounding, built by
/// `bash ../shared/models/multilingual-e5-small/build.sh DIR`; `.ci/run` builds it and sets
/// `DENSA_E5_DIR`), used as e5 is meant: mean pooling, L2 normalisation, prompts.
#[test]
fn int8_matches_f32_on_multilingual_e5_small() {
    let Some(dir) = common::e5_dir_or_skip() else {
        return;
    };
    let load = |precision| {
        let options = Options {
            threads: 2,
            precision,
            pooling: Pooling::Mean,
            normalize: true,
            ..Options::default()
        };
        Encoder::from_dir(&dir, options).unwrap()
    };
    let (f32_encoder, int8_encoder) = (load(Precision::F32), load(Precision::Int8));
    int8_matches_f32(
        "multilingual-e5-small",
        &f32_encoder,
        &int8_encoder,
        Feed::E5Prompts,
    );
}
