//! Cross-encoders: densa's logits for (query, text) pairs against transformers'
//! `*ForSequenceClassification` (tests/fixtures/golden/*-rerank-tiny.safetensors, written by
//! tools/make_fixtures.py), and the CLI's `densa rerank` on top.

mod common;

use common::cli::{densa, fails, json_lines, ok, s};
use common::{model_dir, Golden};
use densa::{Options, Precision, Reranker};

/// As for embeddings on the tiny models: absolute.
const TOLERANCE: f32 = 1e-5;

fn pairs(golden: &Golden) -> Vec<(String, String)> {
    let raw: Vec<[String; 2]> = serde_json::from_str(&golden.metadata("pairs").unwrap()).unwrap();
    raw.into_iter().map(|[q, t]| (q, t)).collect()
}

fn open(name: &str, precision: Precision) -> Reranker {
    let options = Options {
        threads: 2,
        precision,
        ..Options::default()
    };
    Reranker::from_dir(model_dir(name), options).unwrap()
}

#[test]
fn every_head_matches_transformers() {
    // (fixture, labels, int8's tolerance on the logits, absolute).
    for (name, labels, int8_tolerance) in [
        ("bert-rerank-tiny", vec!["LABEL_0"], 0.05),
        (
            "xlmr-rerank-tiny",
            vec!["contradicción", "neutral", "implicación"],
            0.05,
        ),
        ("distilbert-rerank-tiny", vec!["LABEL_0", "LABEL_1"], 0.05),
        // ModernBERT: mean pooling with every bias; cls pooling with none. Six layers of random
        // weights under a head that LayerNorms the pooled vector, which divides its int8 error
        // by the vector's spread: the logits (up to 2.2) move more than the trunk's cosine
        // (≥ 0.9995, tests/modernbert.rs) would say.
        ("modernbert-rerank-tiny", vec!["LABEL_0"], 0.05),
        ("modernbert-cls-tiny", vec!["negativo", "positivo"], 0.1),
    ] {
        let golden = Golden::load(name);
        let pairs = pairs(&golden);
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(q, t)| (q.as_str(), t.as_str()))
            .collect();
        let reranker = open(name, Precision::F32);
        assert_eq!(reranker.labels(), labels.as_slice(), "{name}: id2label");
        let got = reranker.score(&refs).unwrap();
        let mut worst = 0.0f32;
        for (i, scores) in got.iter().enumerate() {
            let want = golden.f32(&format!("pair{i}.logits")).1;
            let diff = common::max_abs_diff(&scores.logits, &want);
            assert!(diff <= TOLERANCE, "{name} pair {i}: {diff:e}");
            worst = worst.max(diff);
            // sigmoid of one logit, softmax of several, computed here from transformers' logits.
            let expected: Vec<f64> = if want.len() == 1 {
                vec![1.0 / (1.0 + (-(want[0] as f64)).exp())]
            } else {
                let sum: f64 = want.iter().map(|&l| (l as f64).exp()).sum();
                want.iter().map(|&l| (l as f64).exp() / sum).collect()
            };
            for (g, e) in scores.scores.iter().zip(&expected) {
                assert!(
                    (*g as f64 - e).abs() <= 1e-5,
                    "{name} pair {i}: score {g} vs {e}"
                );
            }
            // Token ids as the `tokenizers` library gives them.
            let ids = reranker
                .encoder()
                .tokenize(&[densa::Input::Pair(refs[i].0, refs[i].1)])
                .unwrap();
            assert_eq!(
                ids[0].ids,
                golden.ids(&format!("pair{i}.input_ids")),
                "{name} pair {i}"
            );
        }
        // Texts alone, as a sequence classifier reads them (/predict, densa classify).
        let texts: Vec<String> = serde_json::from_str(&golden.metadata("texts").unwrap()).unwrap();
        let inputs: Vec<densa::Input> = texts.iter().map(|t| densa::Input::Text(t)).collect();
        let classified = reranker.classify(&inputs).unwrap();
        for (i, scores) in classified.iter().enumerate() {
            let want = golden.f32(&format!("text{i}.logits")).1;
            let diff = common::max_abs_diff(&scores.logits, &want);
            assert!(diff <= TOLERANCE, "{name} text {i}: {diff:e}");
            worst = worst.max(diff);
            let ids = reranker.encoder().tokenize(&inputs[i..i + 1]).unwrap();
            assert_eq!(ids[0].ids, golden.ids(&format!("text{i}.input_ids")));
        }
        println!(
            "FIDELITY {name}: {} pairs and {} texts, worst |diff| logits {worst:.3e}",
            got.len(),
            texts.len()
        );
        // int8 under the head: the same ranking signal.
        let int8 = open(name, Precision::Int8).score(&refs).unwrap();
        for (i, (a, b)) in int8.iter().zip(&got).enumerate() {
            let diff = common::max_abs_diff(&a.logits, &b.logits);
            assert!(
                diff <= int8_tolerance,
                "{name} pair {i}: int8 logits differ by {diff}"
            );
        }
    }
}

#[test]
fn a_model_without_a_classification_head_is_a_clear_error() {
    let e = Reranker::from_dir(model_dir("xlmr-tiny"), Options::default()).err();
    let message = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("names no sequence-classification head"),
        "{message}"
    );
}

/// `densa rerank`: one JSON line per input in input order, titles joined by the template.
#[test]
fn rerank_cli_prints_logits_and_scores_in_input_order() {
    let golden = Golden::load("xlmr-rerank-tiny");
    let pairs = pairs(&golden);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let lines: Vec<String> = pairs
        .iter()
        .map(|(q, t)| serde_json::json!({ "query": q, "text": t }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let model = model_dir("xlmr-rerank-tiny");
    let stdout = ok(&densa(
        &["rerank", "--model", s(&model), "--input", s(&input)],
        None,
    ));
    let rows: Vec<serde_json::Value> = json_lines(&stdout);
    assert_eq!(rows.len(), pairs.len());
    for (i, row) in rows.iter().enumerate() {
        let want = golden.f32(&format!("pair{i}.logits")).1;
        let logits: Vec<f32> = serde_json::from_value(row["logits"].clone()).unwrap();
        assert!(
            common::max_abs_diff(&logits, &want) <= TOLERANCE,
            "pair {i}"
        );
        let best = (0..3).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
        let names = ["contradicción", "neutral", "implicación"];
        assert_eq!(row["label"], names[best], "pair {i}");
        assert_eq!(row["scores"].as_array().unwrap().len(), 3);
    }
    // One label: "logit" and its sigmoid "score".
    let bert = Golden::load("bert-rerank-tiny");
    let stdout = ok(&densa(
        &[
            "rerank",
            "--model",
            s(&model_dir("bert-rerank-tiny")),
            "--input",
            s(&input),
        ],
        None,
    ));
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let want = bert.f32("pair0.logits").1[0];
    assert!((first["logit"].as_f64().unwrap() as f32 - want).abs() <= TOLERANCE);
    let sigmoid = 1.0 / (1.0 + (-(want as f64)).exp());
    assert!((first["score"].as_f64().unwrap() - sigmoid).abs() <= 1e-5);
    // A title is joined to the text by --passage-template (default "{title}. {text}").
    let titled = dir.path().join("titled.jsonl");
    std::fs::write(
        &titled,
        format!(
            "{}\n",
            serde_json::json!({"query": pairs[0].0, "title": "Cervantes", "text": pairs[0].1})
        ),
    )
    .unwrap();
    let joined = dir.path().join("joined.jsonl");
    let text = format!("Cervantes. {}", pairs[0].1);
    std::fs::write(
        &joined,
        format!(
            "{}\n",
            serde_json::json!({"query": pairs[0].0, "text": text})
        ),
    )
    .unwrap();
    let run = |path: &std::path::Path| {
        ok(&densa(
            &["rerank", "--model", s(&model), "--input", s(path)],
            None,
        ))
    };
    assert_eq!(run(&titled), run(&joined));
    // A line without "text" is an error naming the line (one without "query" is a text
    // classified alone).
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"query\": \"a\", \"text\": \"b\"}\n{\"query\": \"sin texto\"}\n",
    )
    .unwrap();
    let stderr = fails(&densa(
        &["rerank", "--model", s(&model), "--input", s(&bad)],
        None,
    ));
    assert!(stderr.contains("line 2: no \"text\" string"), "{stderr}");
}

/// `densa eval --rerank` reports, beside the retriever's figures, those after the cross-encoder
/// rescores the retriever's best passages: each gold passage's rank recomputed here from the
/// retrieved hits and the reranker's scores (both checked against transformers above and in
/// tests/retrieval.rs).
#[test]
fn eval_reports_reranked_recall_next_to_the_retrievers() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    let demo = common::fixtures().join("../../examples/demo");
    let (passages, qa) = (demo.join("pasajes.jsonl"), demo.join("qa.jsonl"));
    let encoder_dir = model_dir("dpr-ctx-tiny");
    let args = [
        "index",
        "--model",
        s(&encoder_dir),
        "--passages",
        s(&passages),
        "--output",
        s(&index_dir),
    ];
    ok(&densa(&args, None));
    let rerank_dir = model_dir("bert-rerank-tiny");
    let mut args = vec![
        "eval",
        "--model-q",
        s(&encoder_dir),
        "--index",
        s(&index_dir),
        "--qa",
        s(&qa),
    ];
    args.extend_from_slice(&[
        "--rerank",
        s(&rerank_dir),
        "--rerank-top",
        "5",
        "--top-k",
        "1,3",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&densa(&args, None))).unwrap();

    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let encoder = densa::Encoder::from_dir(&encoder_dir, options.clone()).unwrap();
    let index = densa::Index::open(&index_dir).unwrap();
    let reranker = Reranker::from_dir(&rerank_dir, options).unwrap();
    let (questions, gold) = densa::retrieval::read_qa_pairs(&qa, &index).unwrap();
    let mut ranks = Vec::new();
    for (question, &g) in questions.iter().zip(&gold) {
        let all = index
            .search_questions(&encoder, &[question], index.len())
            .unwrap()
            .remove(0);
        let retriever_rank = 1 + all.iter().position(|h| h.index == g).unwrap();
        if retriever_rank > 5 {
            ranks.push(retriever_rank as f64);
            continue;
        }
        let texts: Vec<String> = all[..5]
            .iter()
            .map(|h| h.passage.templated("{title}. {text}"))
            .collect();
        let pairs: Vec<(&str, &str)> = texts
            .iter()
            .map(|t| (question.as_str(), t.as_str()))
            .collect();
        let scores: Vec<f32> = reranker
            .score(&pairs)
            .unwrap()
            .iter()
            .map(|p| p.scores[0])
            .collect();
        let at = retriever_rank - 1;
        let better = (0..5)
            .filter(|&i| i != at && scores[i] >= scores[at])
            .count();
        ranks.push(1.0 + better as f64);
    }
    let reranked = &report["reranked"];
    assert_eq!(reranked["rerank_top"], 5);
    common::assert_eval_metrics(reranked, &ranks);
    // The retriever's own figures are still there.
    assert!(report["recall@1"].is_number() && report["mrr"].is_number());
}
