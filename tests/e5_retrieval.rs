//! Retrieval with real multilingual weights through the CLI, set up as e5 is meant to be used
//! (`--pooling mean --normalize`, `--prompt "passage: "` with `--passage-template "{title}.
//! {text}"` for the index, `--prompt "query: "` for the questions), against the ranking
//! transformers computes (tests/fixtures/golden/e5-retrieval.json, written by
//! tools/make_e5_retrieval_golden.py) on the Spanish QA set of tests/fixtures/accuracy/.

mod common;

use common::cli::{densa, ok, s};
use common::fixtures;

#[test]
fn e5_index_search_and_eval_rank_as_transformers() {
    let Some(model) = common::e5_dir_or_skip() else {
        return;
    };
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("golden/e5-retrieval.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let (passages, qa) = (
        fixtures().join("accuracy/passages.jsonl"),
        fixtures().join("accuracy/questions.jsonl"),
    );
    let e5 = ["--pooling", "mean", "--normalize", "--threads", "2"];
    let mut args = vec!["index", "--model", s(&model), "--passages", s(&passages)];
    args.extend_from_slice(&["--output", s(&index), "--prompt", "passage: "]);
    args.extend_from_slice(&["--passage-template", "{title}. {text}"]);
    args.extend_from_slice(&e5);
    let out = densa(&args, None);
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("densa: passages: pooling mean, prompt \"passage: \", normalized"),
        "{log}"
    );

    let mut args = vec![
        "eval",
        "--model-q",
        s(&model),
        "--index",
        s(&index),
        "--qa",
        s(&qa),
    ];
    args.extend_from_slice(&["--prompt", "query: ", "--top-k", "1,5,20"]);
    args.extend_from_slice(&e5);
    let report: serde_json::Value = serde_json::from_str(&ok(&densa(&args, None))).unwrap();
    let want = &golden["metrics"];
    for key in ["recall@1", "recall@5", "recall@20", "mrr"] {
        let (got, expected) = (report[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        println!(
            "RETRIEVAL multilingual-e5-small {key}: densa {got:.4}, transformers {expected:.4}"
        );
        assert!(
            (got - expected).abs() < 1e-9,
            "{key}: densa {got}, transformers {expected}"
        );
    }

    // eval encoding the passages itself: they take the questions' pooling and normalisation,
    // with their own prompt and template.
    let mut args = vec!["eval", "--model-q", s(&model), "--model-ctx", s(&model)];
    args.extend_from_slice(&[
        "--passages",
        s(&passages),
        "--qa",
        s(&qa),
        "--top-k",
        "1,5,20",
    ]);
    args.extend_from_slice(&["--prompt", "query: ", "--passage-prompt", "passage: "]);
    args.extend_from_slice(&["--passage-template", "{title}. {text}"]);
    args.extend_from_slice(&e5);
    let again: serde_json::Value = serde_json::from_str(&ok(&densa(&args, None))).unwrap();
    for key in ["recall@1", "recall@5", "recall@20", "mrr"] {
        assert_eq!(again[key], report[key], "eval --passages {key}");
    }

    // The first hit of each question, where transformers' first two are not a near tie.
    let questions: Vec<serde_json::Value> = std::fs::read_to_string(&qa)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let input = dir.path().join("questions.txt");
    let text: Vec<&str> = questions
        .iter()
        .map(|q| q["question"].as_str().unwrap())
        .collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();
    let mut args = vec!["search", "--model", s(&model), "--index", s(&index)];
    args.extend_from_slice(&[
        "--input",
        s(&input),
        "--json",
        "--top-k",
        "2",
        "--prompt",
        "query: ",
    ]);
    args.extend_from_slice(&e5);
    let stdout = ok(&densa(&args, None));
    let mut compared = 0;
    for (line, want) in stdout.lines().zip(golden["top10"].as_array().unwrap()) {
        let got: serde_json::Value = serde_json::from_str(line).unwrap();
        let gap = want[0]["score"].as_f64().unwrap() - want[1]["score"].as_f64().unwrap();
        if gap > 1e-4 {
            assert_eq!(got["hits"][0]["id"], want[0]["id"], "{}", got["question"]);
            let score = got["hits"][0]["score"].as_f64().unwrap();
            assert!((score - want[0]["score"].as_f64().unwrap()).abs() < 1e-4);
            compared += 1;
        }
    }
    assert!(
        compared > 150,
        "only {compared} questions without a near tie"
    );
}
