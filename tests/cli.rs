//! The `densa` binary end to end: its output checked against transformers' goldens.

mod common;

use common::cli::{densa, json_lines, ok};
use common::{cases, max_abs_diff, model_dir, read_npy, Case, Golden};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn embed_text_lines_to_npy_matches_golden() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let texts = common::single_texts(&cases);
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let output = dir.path().join("vectors.npy");
    let model = model_dir("dpr-ctx-tiny");
    let flags = ["--output", output.to_str().unwrap(), "--batch-size", "4"];
    let out = embed_input(&model, &input, &flags);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("1 of 15 inputs were truncated to 512 tokens"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (n, dim, data) = read_npy(&output);
    assert_eq!(
        (n, dim),
        (texts.len(), 32),
        "one row per line, empty lines included"
    );
    let golden = Golden::load("dpr-ctx-tiny");
    for i in 0..n {
        let diff = max_abs_diff(
            &data[i * dim..(i + 1) * dim],
            &golden.f32(&format!("case{i}.pooled")).1,
        );
        assert!(diff <= 1e-5, "row {i}: {diff:e}");
    }
}

#[test]
fn embed_jsonl_pairs_to_stdout_matches_golden() {
    let cases = cases();
    let mut jsonl = String::new();
    let mut golden_index = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let line = match case {
            Case::Text(t) => serde_json::json!({ "text": t }),
            Case::Pair(title, text) => serde_json::json!({ "title": title, "text": text, "id": i }),
        };
        jsonl += &format!("{line}\n");
        golden_index.push(i);
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("passages.jsonl");
    std::fs::write(&input, jsonl).unwrap();
    let model = model_dir("dpr-question-tiny");
    let stdout = ok(&embed_input(&model, &input, &["--threads", "1"]));
    let golden = Golden::load("dpr-question-tiny");
    let rows: Vec<Vec<f32>> = json_lines(&stdout);
    assert_eq!(rows.len(), cases.len());
    for (row, i) in rows.iter().zip(golden_index) {
        assert!(
            max_abs_diff(row, &golden.f32(&format!("case{i}.pooled")).1) <= 1e-5,
            "case {i}"
        );
    }
}

#[test]
fn tokenize_prints_transformers_ids() {
    let cases = cases();
    let texts = common::single_texts(&cases);
    let model = model_dir("bert-tiny");
    let stdout = ok(&densa(
        &["tokenize", "--model", model.to_str().unwrap()],
        Some((texts.join("\n") + "\n").as_bytes()),
    ));
    let golden = Golden::load("bert-tiny");
    let lines: Vec<serde_json::Value> = json_lines(&stdout);
    assert_eq!(lines.len(), texts.len());
    for (i, line) in lines.iter().enumerate() {
        let ids: Vec<u32> = serde_json::from_value(line["ids"].clone()).unwrap();
        assert_eq!(ids, golden.ids(&format!("case{i}.input_ids")), "text {i}");
        assert_eq!(line["tokens"].as_array().unwrap().len(), ids.len());
        assert_eq!(line["tokens"][0], "[CLS]");
    }
}

/// inspect names each family's position scheme, pooling, modules and prompts, and where each
/// setting came from (the fixtures' files, written by transformers and sentence-transformers).
#[test]
fn inspect_says_where_each_setting_came_from() {
    for (name, needles) in [
        (
            "st-tiny",
            &[
                "RoBERTa / XLM-RoBERTa (config.json model_type)",
                "from pad_token_id + 1 = 2 in every sequence (512 usable of 514)",
                "token types 1 (always 0)",
                "pooling:      mean (from 1_Pooling/config.json), prompt tokens left out (include_prompt: false)",
                "modules:      Dense 32 -> 16 (Tanh), Normalize (modules.json)",
                "passage = \"passage: \", query = \"query: \" (config_sentence_transformers.json; default: query)",
                "max length:   128 tokens (sentence-transformers' max_seq_length)",
            ][..],
        ),
        (
            "distilbert-tiny",
            &[
                "DistilBERT",
                "positions:    sinusoidal (computed: not in the checkpoint), from 0",
                "token types none",
                "pooling:      cls (default: [CLS])",
            ][..],
        ),
    ] {
        let report = ok(&densa(&["inspect", "--model", model_dir(name).to_str().unwrap()], None));
        for needle in needles {
            assert!(report.contains(needle), "{name}: inspect lacks {needle:?}:\n{report}");
        }
    }
}

#[test]
fn inspect_and_bench() {
    let model = model_dir("dpr-question-tiny");
    let report = ok(&densa(
        &["inspect", "--model", model.to_str().unwrap()],
        None,
    ));
    for needle in [
        "DPR (BERT) (config.json model_type)",
        "positions:    learned, from 0 (512)",
        "pooling:      dpr (DPR: [CLS], then encode_proj if present)",
        "2 layers",
        "hidden 32",
        "projection 32 -> 16",
        "output dim:   16",
        "mapped bytes",
        "question_encoder.encode_proj.weight",
        "F32",
    ] {
        assert!(
            report.contains(needle),
            "inspect lacks {needle:?}:\n{report}"
        );
    }
    // 31002·32 + 512·32 + 2·32 + 2·32 + 2·(4·(32² + 32) + (32·64 + 64) + (64·32 + 32) + 4·32) + 32·16 + 16
    assert!(report.contains("parameters:   1026192 "), "{report}");
    let f16 = ok(&densa(
        &[
            "inspect",
            "--model",
            model_dir("bert-tiny-f16").to_str().unwrap(),
        ],
        None,
    ));
    assert!(
        f16.contains("F16") && f16.contains("pooling:      pooler"),
        "{f16}"
    );

    let line = ok(&densa(
        &[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--batch",
            "2",
            "--seq",
            "16",
            "--iters",
            "3",
            "--threads",
            "1",
        ],
        None,
    ));
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    for key in ["median_ms", "min_ms", "max_ms", "tokens_per_s", "gflops"] {
        assert!(
            v[key].as_f64().is_some_and(|x| x > 0.0),
            "bench lacks {key}: {line}"
        );
    }
    assert!(
        v["min_ms"].as_f64() <= v["median_ms"].as_f64()
            && v["median_ms"].as_f64() <= v["max_ms"].as_f64()
    );
    // The weights a pass streams, from the folder's config: (4·H² + 2·H·F) f32 per layer.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let (h, f, layers) = (
        config["hidden_size"].as_f64().unwrap(),
        config["intermediate_size"].as_f64().unwrap(),
        config["num_hidden_layers"].as_f64().unwrap(),
    );
    assert_eq!(
        v["weight_bytes"].as_f64(),
        Some((4.0 * h * h + 2.0 * h * f) * 4.0 * layers),
        "{line}"
    );
    let (weight_gbs, bandwidth) = (
        v["weight_gbs"].as_f64().unwrap(),
        v["read_bandwidth_gbs"].as_f64().unwrap(),
    );
    assert!(bandwidth > 0.0, "{line}");
    assert!(
        (v["fraction_of_bandwidth"].as_f64().unwrap() - weight_gbs / bandwidth).abs()
            <= 1e-12 * (weight_gbs / bandwidth),
        "{line}"
    );
    // The limit: the longer of the arithmetic at the peak (GFLOP / GFLOP/s, from the line's
    // own rate and median) and the weights at the bandwidth.
    let field = |key: &str| v[key].as_f64().unwrap();
    let compute_ms = field("gflops") * field("median_ms") / field("peak_gflops");
    let memory_ms = field("weight_bytes") / bandwidth / 1e6;
    let limit = compute_ms.max(memory_ms);
    assert!((field("limit_ms") - limit).abs() <= 1e-9 * limit, "{line}");
    let kind = if compute_ms >= memory_ms {
        "compute"
    } else {
        "memory"
    };
    assert_eq!(v["limit_kind"].as_str(), Some(kind), "{line}");
    assert!(
        (field("fraction_of_limit") - limit / field("median_ms")).abs() <= 1e-12,
        "{line}"
    );

    // The heads: a cross-encoder's pairs and a reader's windows, each on its own folder; a
    // folder without the head asked for is a clear error.
    let bench_head = |folder: &str, head: &str| {
        let folder = model_dir(folder);
        let args = ["bench", "--model", folder.to_str().unwrap(), "--batch", "3"];
        let rest = [
            "--seq",
            "24",
            "--iters",
            "2",
            "--threads",
            "1",
            "--head",
            head,
        ];
        densa(&[&args[..], &rest[..]].concat(), None)
    };
    for (folder, head) in [("bert-rerank-tiny", "rerank"), ("xlmr-qa-tiny", "read")] {
        let line = ok(&bench_head(folder, head));
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            (v["head"].as_str(), v["batch"].as_u64()),
            (Some(head), Some(3))
        );
        assert!(v["median_ms"].as_f64().is_some_and(|x| x > 0.0), "{line}");
    }
    let wrong = bench_head("bert-rerank-tiny", "read");
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("names no question-answering head"),
        "{stderr}"
    );
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("bert-tiny");
    let input = dir.path().join("bad.txt");
    std::fs::write(&input, b"hola\nmal \xff\xfe texto\n").unwrap();
    let output = dir.path().join("out.npy");
    let out = embed_file(&model, &input, &output);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("invalid UTF-8"),
        "{stderr}"
    );
    assert!(!output.exists(), "no output on failure");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );

    let jsonl = dir.path().join("bad.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"hola\"}\n{\"title\": \"sin texto\"}\n").unwrap();
    let out = embed_input(&model, &jsonl, &[]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("line 2: no \"text\"")
    );

    let out = densa(&["embed", "--model", "/nonexistent/model"], Some(b"hola\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// One line is one text is one row, in order: empty and whitespace-only lines are empty texts
/// (`[CLS] [SEP]`), never skipped; a Windows line ending is not part of the text.
#[test]
fn every_line_is_one_row_in_order() {
    let model = model_dir("dpr-ctx-tiny");
    let input = "hola\n\n   \r\nadiós\r\n\t\nfin";
    let out = ok(&densa(
        &["tokenize", "--model", model.to_str().unwrap()],
        Some(input.as_bytes()),
    ));
    let rows: Vec<serde_json::Value> = json_lines(&out);
    assert_eq!(rows.len(), 6);
    // BETO's [CLS] = 4, [SEP] = 5 (tests/fixtures/vocab/README.md).
    for i in [1, 2, 4] {
        assert_eq!(rows[i]["ids"], serde_json::json!([4, 5]), "line {}", i + 1);
    }
    let embedded = ok(&densa(
        &["embed", "--model", model.to_str().unwrap()],
        Some(input.as_bytes()),
    ));
    let vectors: Vec<Vec<f32>> = json_lines(&embedded);
    assert_eq!(vectors.len(), 6);
    // The empty lines are the same text, so the same vector; "hola" differs from them.
    assert_eq!(vectors[1], vectors[2]);
    assert_eq!(vectors[1], vectors[4]);
    assert_ne!(vectors[0], vectors[1]);
    // A JSON lines file whose line is not JSON fails naming the line, and writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("in.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"hola\"}\n{\"text\": \"roto\"\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let out = embed_file(&model, &jsonl, &output);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("line 2: not a JSON object"),
        "{stderr}"
    );
    assert!(!output.exists());
}

/// Ctrl-C (SIGINT) stops the CLI with status 130 and no output file.
#[cfg(unix)]
#[test]
fn interrupt_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.npy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(["embed", "--model"])
        .arg(model_dir("dpr-ctx-tiny"))
        .arg("--output")
        .arg(&output)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // densa waits for the rest of its input: interrupt it then.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"una frase\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(stdin);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

/// `densa embed --model MODEL --input INPUT` and `flags`, no standard input.
fn embed_input(model: &Path, input: &Path, flags: &[&str]) -> std::process::Output {
    let arg = |p: &Path| p.to_str().unwrap().to_owned();
    let (model, input) = (arg(model), arg(input));
    let mut args = vec!["embed", "--model", &model, "--input", &input];
    args.extend_from_slice(flags);
    densa(&args, None)
}

/// `densa embed --model MODEL --input INPUT --output OUTPUT`, no standard input.
fn embed_file(model: &Path, input: &Path, output: &Path) -> std::process::Output {
    embed_input(model, input, &["--output", output.to_str().unwrap()])
}
