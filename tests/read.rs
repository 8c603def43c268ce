//! Extractive readers: densa's start/end logits of every window against transformers'
//! `*ForQuestionAnswering`, and its answers against tools/qa_reference.py (transformers 4's
//! pipeline decoding, reimplemented), both in tests/fixtures/golden/*-qa-tiny.safetensors.

mod common;

use common::cli::{densa, fails, json_lines, ok, s};
use common::{model_dir, Golden};
use densa::{Options, ReadOptions, Reader};

const TOLERANCE: f32 = 1e-5;

/// (question, context, max_seq_len, doc_stride) of each golden case.
fn cases(golden: &Golden) -> Vec<(String, String, usize, usize)> {
    serde_json::from_str(&golden.metadata("cases").unwrap()).unwrap()
}

fn open(name: &str) -> Reader {
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    Reader::from_dir(model_dir(name), options).unwrap()
}

#[test]
fn every_reader_matches_transformers_and_the_pipelines_decoding() {
    for name in ["bert-qa-tiny", "xlmr-qa-tiny", "distilbert-qa-tiny"] {
        let golden = Golden::load(name);
        let answers: Vec<Vec<serde_json::Value>> =
            serde_json::from_str(&golden.metadata("answers").unwrap()).unwrap();
        let reader = open(name);
        let mut worst = 0.0f32;
        let mut past_first_window = false;
        for (i, (question, context, max_seq_len, doc_stride)) in
            cases(&golden).into_iter().enumerate()
        {
            let options = ReadOptions {
                max_seq_len,
                doc_stride,
                top_k: 3,
                ..ReadOptions::default()
            };
            let (windows, logits) = reader.logits(&question, &context, &options).unwrap();
            for (w, (window, logits)) in windows.iter().zip(&logits).enumerate() {
                let ids = golden.ids(&format!("case{i}.window{w}.input_ids"));
                assert_eq!(window.tokens.ids, ids, "{name} case {i} window {w}: ids");
                let (start, end): (Vec<f32>, Vec<f32>) = logits.iter().copied().unzip();
                for (kind, got) in [("start", start), ("end", end)] {
                    let want = golden.f32(&format!("case{i}.window{w}.{kind}_logits")).1;
                    let diff = common::max_abs_diff(&got, &want);
                    assert!(
                        diff <= TOLERANCE,
                        "{name} case {i} window {w} {kind}: {diff:e}"
                    );
                    worst = worst.max(diff);
                }
            }
            let got = reader.read(&question, &context, &options).unwrap();
            assert_eq!(got.len(), answers[i].len(), "{name} case {i}: answers");
            for (a, want) in got.iter().zip(&answers[i]) {
                assert_eq!(
                    a.answer,
                    want["answer"].as_str().unwrap(),
                    "{name} case {i}"
                );
                assert_eq!(
                    a.start,
                    want["start"].as_u64().unwrap() as usize,
                    "{name} case {i}"
                );
                assert_eq!(
                    a.end,
                    want["end"].as_u64().unwrap() as usize,
                    "{name} case {i}"
                );
                let score = want["score"].as_f64().unwrap();
                assert!(
                    (a.score - score).abs() <= 1e-5 * score.max(1e-3),
                    "{name} case {i}: {} vs {score}",
                    a.score
                );
            }
            past_first_window |= answers[i][0]["window"].as_u64().unwrap() > 0;
        }
        assert!(
            past_first_window,
            "{name}: no case's best answer lies past the first window"
        );
        println!("FIDELITY {name}: worst |diff| start/end logits {worst:.3e}; answers equal the reference decoding");
    }
}

#[test]
fn hostile_reading_inputs_give_a_defined_result_or_a_clear_error() {
    let reader = open("bert-qa-tiny");
    let defaults = ReadOptions::default();
    // An empty context: only "no answer" remains, an empty answer of score 0.
    let empty = reader.read("¿Quién?", "", &defaults).unwrap();
    assert_eq!(
        (empty[0].answer.as_str(), empty[0].start, empty[0].end),
        ("", 0, 0)
    );
    // A context shorter than the question reads normally.
    let short = reader
        .read(
            "¿Quién escribió Don Quijote de la Mancha?",
            "Cervantes.",
            &defaults,
        )
        .unwrap();
    assert!(short[0].end <= "Cervantes.".chars().count());
    // A question longer than the window is an error that says so.
    let tight = ReadOptions {
        max_seq_len: 8,
        doc_stride: 2,
        ..defaults
    };
    let e = reader
        .read(&"palabra ".repeat(20), "Un contexto.", &tight)
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("does not leave room for the context"),
        "{e}"
    );
    // Options out of range.
    for (options, message) in [
        (
            ReadOptions {
                doc_stride: 384,
                ..defaults
            },
            "doc_stride (384) must be below max_seq_len (384)",
        ),
        (
            ReadOptions {
                max_seq_len: 600,
                ..defaults
            },
            "max_seq_len 600 must be between 1 and the model's 512 positions",
        ),
    ] {
        let e = reader.read("a", "b", &options).err().unwrap().to_string();
        assert!(e.contains(message), "{e}");
    }
}

/// `densa read`: one JSON line per input with answer, score, start and end.
#[test]
fn read_cli_prints_the_answers() {
    let golden = Golden::load("xlmr-qa-tiny");
    let answers: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(&golden.metadata("answers").unwrap()).unwrap();
    let (question, context, _, _) = cases(&golden).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("qa.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n",
            serde_json::json!({"question": question, "context": context})
        ),
    )
    .unwrap();
    let model = model_dir("xlmr-qa-tiny");
    let rows: Vec<serde_json::Value> = json_lines(&ok(&densa(
        &["read", "--model", s(&model), "--input", s(&input)],
        None,
    )));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["answer"], answers[0][0]["answer"]);
    assert_eq!(rows[0]["start"], answers[0][0]["start"]);
    assert_eq!(rows[0]["end"], answers[0][0]["end"]);
    let rows: Vec<serde_json::Value> = json_lines(&ok(&densa(
        &[
            "read",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--top-k",
            "3",
        ],
        None,
    )));
    let listed = rows[0]["answers"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (got, want) in listed.iter().zip(&answers[0]) {
        assert_eq!(got["answer"], want["answer"]);
    }
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"question\": \"a\"}\n").unwrap();
    let stderr = fails(&densa(
        &["read", "--model", s(&model), "--input", s(&bad)],
        None,
    ));
    assert!(stderr.contains("line 1: no \"context\" string"), "{stderr}");
}

/// `densa answer` chains the parts checked above against transformers: the answers it prints
/// are spans of the passages it names (by the definition of `start`/`end`), the passages read
/// are the reranker's best among the retrieved, and each answer is the reader's for its
/// passage.
#[test]
fn answer_chains_retrieval_reranking_and_reading() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::cli::demo_index(dir.path());
    let question = "¿En qué ciudad está la Sagrada Familia?";
    // One tiny DPR encoder for both sides (its 32-dimensional [CLS]).
    let (q, reader_dir, rerank_dir) = (
        model_dir("dpr-ctx-tiny"),
        model_dir("bert-qa-tiny"),
        model_dir("bert-rerank-tiny"),
    );
    let rows = common::cli::answer_json(&q, &index, &reader_dir, &rerank_dir, question);
    assert_eq!(rows.len(), 1);
    let answers = rows[0]["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2);

    // The reranker's two best among the five retrieved (library calls checked against
    // transformers in tests/rerank.rs and tests/retrieval.rs).
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let encoder = densa::Encoder::from_dir(&q, options.clone()).unwrap();
    let index = densa::Index::open(&index).unwrap();
    let hits = index
        .search_questions(&encoder, &[question], 5)
        .unwrap()
        .remove(0);
    let reranker = densa::Reranker::from_dir(&rerank_dir, options.clone()).unwrap();
    let texts: Vec<String> = hits
        .iter()
        .map(|h| h.passage.templated("{title}. {text}"))
        .collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (question, t.as_str())).collect();
    let scores = reranker.score(&pairs).unwrap();
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_by(|&a, &b| scores[b].scores[0].total_cmp(&scores[a].scores[0]));
    let read: Vec<String> = order[..2]
        .iter()
        .map(|&i| hits[i].passage.id.to_string())
        .collect();
    let reader = Reader::from_dir(&reader_dir, options).unwrap();
    let mut expected: Vec<(f64, String, String)> = Vec::new();
    for &i in &order[..2] {
        let two = ReadOptions {
            top_k: 2,
            ..ReadOptions::default()
        };
        for a in reader.read(question, &hits[i].passage.text, &two).unwrap() {
            expected.push((a.score, a.answer, hits[i].passage.id.to_string()));
        }
    }
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (got, want) in answers.iter().zip(&expected) {
        let id = got["passage_id"].as_str().unwrap();
        assert!(
            read.iter().any(|r| r == id),
            "{id} was not among the reranker's best two"
        );
        assert_eq!(
            (got["answer"].as_str().unwrap(), id),
            (want.1.as_str(), want.2.as_str())
        );
        // start/end are character offsets into the passage's text.
        let text = &hits
            .iter()
            .find(|h| h.passage.id.to_string() == id)
            .unwrap()
            .passage
            .text;
        let (start, end) = (
            got["start"].as_u64().unwrap() as usize,
            got["end"].as_u64().unwrap() as usize,
        );
        let span: String = text.chars().skip(start).take(end - start).collect();
        assert_eq!(span, got["answer"].as_str().unwrap());
        assert!(got["rerank_score"].is_number());
    }
    for stage in ["retrieve", "rerank", "read"] {
        assert!(rows[0]["ms"][stage].is_number(), "{stage}");
    }
}

/// A pipeline a service keeps loaded is shared between threads.
#[test]
fn the_pipeline_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<densa::QaPipeline>();
    shareable::<Reader>();
    shareable::<densa::Reranker>();
}

/// `densa eval --reader`: exact match and F1 of the pipeline's best answer against the QA
/// file's "answers". One question's gold list holds the answer `densa answer` gives (EM 1,
/// F1 1), another's an unrelated word (0, 0), a third has no "answers" (not scored).
#[test]
fn eval_scores_answers_against_the_gold_strings() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let demo = common::fixtures().join("../../examples/demo");
    let encoder = model_dir("dpr-ctx-tiny");
    let passages = demo.join("pasajes.jsonl");
    ok(&densa(
        &[
            "index",
            "--model",
            s(&encoder),
            "--passages",
            s(&passages),
            "--output",
            s(&index),
        ],
        None,
    ));
    let reader = model_dir("bert-qa-tiny");
    let asked = "¿Quién pintó Las meninas?";
    let args = [
        "answer",
        "--model",
        s(&encoder),
        "--index",
        s(&index),
        "--reader",
        s(&reader),
        "--json",
        asked,
    ];
    let predicted: Vec<serde_json::Value> = json_lines(&ok(&densa(&args, None)));
    let predicted = predicted[0]["answers"][0]["answer"]
        .as_str()
        .unwrap()
        .to_owned();
    let qa = dir.path().join("qa.jsonl");
    let lines = [
        serde_json::json!({"question": asked, "passage_id": "meninas", "answers": [predicted, "Velázquez"]}),
        serde_json::json!({"question": "¿Dónde nace el Ebro?", "passage_id": "ebro", "answers": ["zzzz"]}),
        serde_json::json!({"question": "¿Qué es la eñe?", "passage_id": "enie"}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&qa, text.join("\n") + "\n").unwrap();
    let args = [
        "eval",
        "--model-q",
        s(&encoder),
        "--index",
        s(&index),
        "--qa",
        s(&qa),
        "--reader",
        s(&reader),
    ];
    let report: serde_json::Value = serde_json::from_str(&ok(&densa(&args, None))).unwrap();
    let answers = &report["answers"];
    assert_eq!(answers["questions"], 2, "{report}");
    assert_eq!(answers["exact_match"], 0.5, "{report}");
    assert_eq!(answers["f1"], 0.5, "{report}");
    assert_eq!(report["questions"], 3);
}
