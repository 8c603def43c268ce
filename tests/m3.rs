//! bge-m3's three outputs (dense, sparse, ColBERT) against FlagEmbedding's definitions:
//! tests/fixtures/golden/m3-tiny.safetensors, written by `tools/make_fixtures.py m3-tiny` from a
//! line-for-line reimplementation of `BGEM3FlagModel.encode` on a bge-m3-shaped XLM-R with both
//! heads; the scores against twins written here from FlagEmbedding's `compute_score`.

mod common;

use common::cli::{densa, fails, json_lines, ok, s};
use common::{copy_folder, model_dir, Golden};
use densa::heads::m3::{colbert_score, sparse_score, M3Output, M3};
use densa::{Input, Options, Precision};
use serde_json::Value;

/// `densa search --model MODEL --index INDEX --json ARGS`: its JSON lines.
fn search_json(model: &std::path::Path, index: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search", "--model", s(model), "--index", s(index), "--json"];
    all.extend_from_slice(args);
    json_lines(&ok(&densa(&all, None)))
}

/// `densa search --model MODEL --index INDEX --mode MODE hola`, which must fail: its error.
fn search_fails(model: &std::path::Path, index: &std::path::Path, mode: &str) -> String {
    let args = [
        "search",
        "--model",
        s(model),
        "--index",
        s(index),
        "--mode",
        mode,
        "hola",
    ];
    fails(&densa(&args, None))
}

/// As for the other tiny fixtures: absolute, on values of order 1.
const TOLERANCE: f32 = 1e-5;

fn open(precision: Precision) -> M3 {
    let options = Options {
        threads: 2,
        precision,
        ..Options::default()
    };
    M3::from_dir(model_dir("m3-tiny"), options).unwrap()
}

fn texts(golden: &Golden) -> Vec<String> {
    serde_json::from_str(&golden.metadata("texts").unwrap()).unwrap()
}

#[test]
fn every_output_matches_flagembedding() {
    let golden = Golden::load("m3-tiny");
    let texts = texts(&golden);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let m3 = open(Precision::F32);
    let got = m3.encode(&refs).unwrap();
    let mut worst = 0.0f32;
    for (i, output) in got.iter().enumerate() {
        let ids = golden.ids(&format!("text{i}.input_ids"));
        let tokenized = m3.encoder().tokenize(&[Input::Text(refs[i])]).unwrap();
        assert_eq!(tokenized[0].ids, ids, "text {i}: token ids");

        let dense = golden.f32(&format!("text{i}.dense")).1;
        worst = worst.max(common::max_abs_diff(&output.dense, &dense));

        // Sparse: the same ids with the same weights; an id only one side keeps must weigh
        // next to nothing there (a ReLU at the edge of 0).
        let want_ids = golden.ids(&format!("text{i}.sparse_ids"));
        let want_values = golden.f32(&format!("text{i}.sparse_values")).1;
        let want: Vec<(u32, f32)> = want_ids.into_iter().zip(want_values).collect();
        assert!(
            !want.is_empty() || refs[i].is_empty(),
            "text {i}: no weights"
        );
        for (id, weight) in &want {
            match output.sparse.iter().find(|(g, _)| g == id) {
                Some((_, w)) => worst = worst.max((w - weight).abs()),
                None => assert!(*weight <= TOLERANCE, "text {i}: id {id} ({weight}) missing"),
            }
        }
        for (id, weight) in &output.sparse {
            if !want.iter().any(|(w, _)| w == id) {
                assert!(*weight <= TOLERANCE, "text {i}: extra id {id} ({weight})");
            }
            assert!(*weight > 0.0);
        }
        assert!(output.sparse.windows(2).all(|w| w[0].0 < w[1].0));

        // ColBERT: one row per token after [CLS], the closing </s> included.
        let (shape, colbert) = golden.f32(&format!("text{i}.colbert"));
        assert_eq!(shape, [ids.len() - 1, m3.colbert_dim()], "text {i}");
        worst = worst.max(common::max_abs_diff(&output.colbert, &colbert));
    }
    assert!(worst <= TOLERANCE, "worst |diff| {worst:e}");
    println!(
        "FIDELITY m3-tiny: {} texts, dense/sparse/ColBERT worst |diff| {worst:.3e}",
        got.len()
    );

    // One text at a time gives the same bits as all at once.
    for (i, text) in refs.iter().enumerate() {
        assert_eq!(m3.encode(&[text]).unwrap()[0], got[i], "text {i}");
    }
}

/// FlagEmbedding's `compute_score` by its definition, on the golden outputs: the lexical
/// match (Σ shared ids' weight products) and ColBERT's MaxSim averaged over the query rows.
#[test]
fn scores_follow_compute_score() {
    let golden = Golden::load("m3-tiny");
    let texts = texts(&golden);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = open(Precision::F32).encode(&refs).unwrap();
    let golden_output = |i: usize| -> (Vec<(u32, f32)>, Vec<Vec<f32>>) {
        let ids = golden.ids(&format!("text{i}.sparse_ids"));
        let values = golden.f32(&format!("text{i}.sparse_values")).1;
        let (shape, flat) = golden.f32(&format!("text{i}.colbert"));
        let rows = flat.chunks(shape[1]).map(<[f32]>::to_vec).collect();
        (ids.into_iter().zip(values).collect(), rows)
    };
    for (q, p) in [(0, 1), (0, 2), (2, 2), (1, 4)] {
        let (q_sparse, q_rows) = golden_output(q);
        let (p_sparse, p_rows) = golden_output(p);
        let lexical: f64 = q_sparse
            .iter()
            .filter_map(|(id, w)| {
                p_sparse
                    .iter()
                    .find(|(pid, _)| pid == id)
                    .map(|(_, pw)| *w as f64 * *pw as f64)
            })
            .sum();
        let maxsim: f64 = q_rows
            .iter()
            .map(|a| {
                p_rows
                    .iter()
                    .map(|b| {
                        a.iter()
                            .zip(b)
                            .map(|(x, y)| *x as f64 * *y as f64)
                            .sum::<f64>()
                    })
                    .fold(f64::MIN, f64::max)
            })
            .sum::<f64>()
            / q_rows.len() as f64;
        let sparse = sparse_score(&got[q].sparse, &got[p].sparse);
        let colbert = colbert_score(&got[q], &got[p]);
        assert!(
            (sparse - lexical).abs() <= 1e-4 * (1.0 + lexical.abs()),
            "{q},{p}: {sparse} vs {lexical}"
        );
        assert!(
            (colbert - maxsim).abs() <= 1e-5,
            "{q},{p}: {colbert} vs {maxsim}"
        );
    }
}

/// int8 under the heads: the same vectors within cosine 0.999 (the trunk's linear layers
/// quantized; the heads f32).
#[test]
fn int8_stays_close() {
    let golden = Golden::load("m3-tiny");
    let texts = texts(&golden);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let f32_out = open(Precision::F32).encode(&refs).unwrap();
    let int8_out = open(Precision::Int8).encode(&refs).unwrap();
    let mut worst = 1.0f64;
    for (a, b) in f32_out.iter().zip(&int8_out) {
        worst = worst.min(common::cosine(&a.dense, &b.dense));
        for (x, y) in a.colbert_rows().zip(b.colbert_rows()) {
            worst = worst.min(common::cosine(x, y));
        }
    }
    assert!(worst >= 0.999, "worst cosine {worst}");
}

#[test]
fn a_folder_without_its_heads_says_how_to_convert_them() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("m3");
    copy_folder(&model_dir("m3-tiny"), &folder);
    std::fs::remove_file(folder.join("colbert_linear.safetensors")).unwrap();
    std::fs::write(folder.join("colbert_linear.pt"), b"not read").unwrap();
    let e = M3::from_dir(&folder, Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("colbert_linear") && e.contains("convert_to_safetensors.py"),
        "{e}"
    );
    // Without the tokens the sparse output leaves out, no guess: an error.
    std::fs::copy(
        model_dir("m3-tiny").join("colbert_linear.safetensors"),
        folder.join("colbert_linear.safetensors"),
    )
    .unwrap();
    std::fs::write(folder.join("special_tokens_map.json"), "{}").unwrap();
    let e = M3::from_dir(&folder, Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cls_token"), "{e}");
}

/// `densa embed --output-kind`: each output as the library gives it, sparse in TEI's
/// `/embed_sparse` shape.
#[test]
fn embed_cli_writes_each_output_kind() {
    let golden = Golden::load("m3-tiny");
    let texts = texts(&golden);
    let refs: Vec<&str> = texts[..3].iter().map(String::as_str).collect();
    let want: Vec<M3Output> = open(Precision::F32).encode(&refs).unwrap();
    let stdin = refs.join("\n") + "\n";
    let model = model_dir("m3-tiny");
    let run = |kind: &str| -> Vec<Value> {
        json_lines(&ok(&densa(
            &[
                "embed",
                "--model",
                s(&model),
                "--output-kind",
                kind,
                "--input",
                "-",
            ],
            Some(stdin.as_bytes()),
        )))
    };
    let bits = |v: &Value| (v.as_f64().unwrap() as f32).to_bits();
    for (row, w) in run("dense").iter().zip(&want) {
        let got: Vec<u32> = row.as_array().unwrap().iter().map(bits).collect();
        assert_eq!(got, w.dense.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    for (row, w) in run("sparse").iter().zip(&want) {
        let got: Vec<(u64, u32)> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["index"].as_u64().unwrap(), bits(&e["value"])))
            .collect();
        let expected: Vec<(u64, u32)> = w
            .sparse
            .iter()
            .map(|(i, v)| (*i as u64, v.to_bits()))
            .collect();
        assert_eq!(got, expected);
    }
    for (row, w) in run("colbert").iter().zip(&want) {
        let got: Vec<u32> = row
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(bits).collect::<Vec<_>>())
            .collect();
        assert_eq!(
            got,
            w.colbert.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    // A model without bge-m3's heads is a clear error.
    let e = fails(&densa(
        &[
            "embed",
            "--model",
            s(&model_dir("xlmr-tiny")),
            "--output-kind",
            "sparse",
        ],
        Some(b"hola\n"),
    ));
    assert!(e.contains("sparse_linear"), "{e}");
}

/// Hybrid search over the demo passages: with every passage a candidate, the ranking and
/// scores are the brute-force `compute_score` fusion computed here from the outputs'
/// definitions; with fewer candidates, every hit is still scored exactly.
#[test]
fn hybrid_search_ranks_by_compute_score() {
    use densa::retrieval::hybrid::{HybridCollection, HybridWeights};
    let demo = common::fixtures().join("../../examples/demo");
    let passages: Vec<String> = std::fs::read_to_string(demo.join("pasajes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let questions: Vec<String> = std::fs::read_to_string(demo.join("preguntas.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let m3 = open(Precision::F32);
    let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let outputs = m3.encode(&refs).unwrap();
    let collection = HybridCollection::new(outputs.clone(), true).unwrap();
    let n = collection.len();
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
    };
    for weights in [
        HybridWeights::default(),
        HybridWeights {
            dense: 1.0,
            sparse: 0.0,
            colbert: 0.0,
        },
        HybridWeights {
            dense: 0.0,
            sparse: 1.0,
            colbert: 0.0,
        },
        HybridWeights {
            dense: 1.0,
            sparse: 1.0,
            colbert: 1.0,
        },
    ] {
        for question in questions.iter().take(5) {
            let q = &m3.encode(&[question]).unwrap()[0];
            // The twin: every passage scored by the definitions.
            let mut want: Vec<(usize, f64)> = outputs
                .iter()
                .enumerate()
                .map(|(row, p)| {
                    let dense = dot(&q.dense, &p.dense);
                    let lexical: f64 = q
                        .sparse
                        .iter()
                        .filter_map(|(id, w)| {
                            p.sparse
                                .iter()
                                .find(|(pid, _)| pid == id)
                                .map(|(_, pw)| *w as f64 * *pw as f64)
                        })
                        .sum();
                    let maxsim = q
                        .colbert_rows()
                        .map(|a| p.colbert_rows().map(|b| dot(a, b)).fold(f64::MIN, f64::max))
                        .sum::<f64>()
                        / q.colbert_rows().count() as f64;
                    let sum = weights.dense + weights.sparse + weights.colbert;
                    (
                        row,
                        (weights.dense * dense
                            + weights.sparse * lexical
                            + weights.colbert * maxsim)
                            / sum,
                    )
                })
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            // ColBERT's inner products are f32 (32 products of unit vectors' entries): each
            // within 32·ε of the twin's f64, and so is their weighted mean.
            let tolerance = 32.0 * f32::EPSILON as f64;
            let twin_of = |row: usize| want.iter().find(|w| w.0 == row).unwrap().1;
            let got = collection.search(q, 5, n, &weights).unwrap();
            assert_eq!(got.len(), 5);
            for (hit, (row, score)) in got.iter().zip(&want) {
                // The rank's score, and the row's own: rows closer than the tolerance may swap.
                assert!(
                    (hit.score - score).abs() <= tolerance,
                    "{question}: {} vs {score}",
                    hit.score
                );
                assert!(
                    (hit.score - twin_of(hit.row)).abs() <= tolerance,
                    "{question} {weights:?}"
                );
                if hit.row != *row {
                    assert!((twin_of(hit.row) - score).abs() <= 2.0 * tolerance);
                }
            }
            // Fewer candidates: each hit scored exactly all the same.
            for hit in collection.search(q, 5, 3, &weights).unwrap() {
                assert!((hit.score - twin_of(hit.row)).abs() <= tolerance);
            }
        }
    }
    // Bad weights are refused.
    let q = &m3.encode(&["hola"]).unwrap()[0];
    let bad = HybridWeights {
        dense: -1.0,
        sparse: 1.0,
        colbert: 0.0,
    };
    assert!(collection.search(q, 3, 3, &bad).is_err());
}

/// `densa index` with a bge-m3 folder stores the three outputs from one pass; `densa search
/// --mode` ranks as the library's in-memory twin over the same passages; the chunks assemble
/// into the same files whatever the chunk size; `densa eval` reports every mode.
#[test]
fn index_search_and_eval_every_mode() {
    use densa::retrieval::hybrid::{HybridCollection, HybridWeights};
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("m3-tiny");
    let demo = common::fixtures().join("../../examples/demo");
    let passages = demo.join("pasajes.jsonl");
    let template = "{title}. {text}";
    let build = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "index",
            "--model",
            s(&model),
            "--passages",
            s(&passages),
            "--output",
            s(&out),
            "--passage-template",
            template,
        ];
        args.extend_from_slice(extra);
        ok(&densa(&args, None));
        out
    };
    let whole = build("whole", &[]);
    let chunked = build("chunked", &["--chunk-size", "10"]);
    for file in ["vectors.npy", "m3.bin", "colbert.npy", "passages.jsonl"] {
        assert_eq!(
            std::fs::read(whole.join(file)).unwrap(),
            std::fs::read(chunked.join(file)).unwrap(),
            "{file}"
        );
    }
    assert!(!chunked.join("chunks").exists());

    // The twin: the passages' outputs from the library, in memory.
    let texts: Vec<String> = std::fs::read_to_string(&passages)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            format!(
                "{}. {}",
                v["title"].as_str().unwrap(),
                v["text"].as_str().unwrap()
            )
        })
        .collect();
    let m3 = open(Precision::F32);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let collection = HybridCollection::new(m3.encode(&refs).unwrap(), true).unwrap();
    let question = "¿Quién escribió Don Quijote de la Mancha?";
    let q = &m3.encode(&[question]).unwrap()[0];
    for (mode, weights) in [
        (
            "dense",
            HybridWeights {
                dense: 1.0,
                sparse: 0.0,
                colbert: 0.0,
            },
        ),
        (
            "sparse",
            HybridWeights {
                dense: 0.0,
                sparse: 1.0,
                colbert: 0.0,
            },
        ),
        ("hybrid", HybridWeights::default()),
    ] {
        let rows: Vec<Value> = search_json(
            &model,
            &whole,
            &[
                "--mode",
                mode,
                "--top-k",
                "5",
                "--candidates",
                "40",
                question,
            ],
        );
        let hits = rows[0]["hits"].as_array().unwrap();
        let want = collection.search(q, 5, 40, &weights).unwrap();
        assert_eq!(hits.len(), want.len(), "{mode}");
        for (hit, w) in hits.iter().zip(&want) {
            assert_eq!(
                hit["text"].as_str().unwrap(),
                texts[w.row].split_once(". ").unwrap().1,
                "{mode}"
            );
            let score = hit["score"].as_f64().unwrap();
            assert!(
                (score - w.score).abs() <= 1e-6 * (1.0 + w.score.abs()),
                "{mode}: {score} vs {}",
                w.score
            );
            assert!((hit["scores"]["sparse"].as_f64().unwrap() - w.sparse).abs() <= 1e-9);
        }
    }
    // Stored at f16, the ColBERT vectors cost half and the hybrid scores move by ~1e-3.
    let half = build("half", &["--vectors", "f16"]);
    let size = |d: &std::path::Path| std::fs::metadata(d.join("colbert.npy")).unwrap().len();
    assert!(size(&half) * 2 < size(&whole) + 256);
    let rows: Vec<Value> = search_json(
        &model,
        &half,
        &[
            "--mode",
            "hybrid",
            "--top-k",
            "3",
            "--candidates",
            "40",
            question,
        ],
    );
    for hit in rows[0]["hits"].as_array().unwrap() {
        let row = texts
            .iter()
            .position(|t| t.ends_with(hit["text"].as_str().unwrap()))
            .unwrap();
        let exact = collection
            .search(q, 36, 40, &HybridWeights::default())
            .unwrap();
        let w = exact.iter().find(|h| h.row == row).unwrap();
        assert!(
            (hit["score"].as_f64().unwrap() - w.score).abs() <= 5e-3,
            "{hit}"
        );
    }

    // eval: every mode, each from the same searches.
    let report: Value = serde_json::from_str(&ok(&densa(
        &[
            "eval",
            "--model-q",
            s(&model),
            "--index",
            s(&whole),
            "--qa",
            s(&demo.join("qa.jsonl")),
        ],
        None,
    )))
    .unwrap();
    for mode in ["dense", "sparse", "hybrid"] {
        let m = &report["modes"][mode];
        assert_eq!(m["questions"], 20, "{report}");
        assert!(m["recall@20"].as_f64().unwrap() >= m["recall@1"].as_f64().unwrap());
    }

    // eval's ranks are the searches' own: each mode's recall and MRR recomputed here from
    // `densa search --mode --json` over the same questions (a gold passage missing from the
    // hits ranks one past the depth searched, never inside it).
    let qa: Vec<Value> = std::fs::read_to_string(demo.join("qa.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for mode in ["sparse", "hybrid"] {
        let (mut recall1, mut recall5, mut mrr) = (0.0, 0.0, 0.0);
        for item in &qa {
            let rows: Vec<Value> = search_json(
                &model,
                &whole,
                &[
                    "--mode",
                    mode,
                    "--top-k",
                    "36",
                    item["question"].as_str().unwrap(),
                ],
            );
            let hits = rows[0]["hits"].as_array().unwrap();
            if let Some(at) = hits.iter().position(|h| h["id"] == item["passage_id"]) {
                recall1 += (at < 1) as u8 as f64;
                recall5 += (at < 5) as u8 as f64;
                mrr += 1.0 / (at + 1) as f64;
            } else {
                // Missing: one past the depth searched (every one of the 36 passages).
                mrr += 1.0 / 37.0;
            }
        }
        let n = qa.len() as f64;
        let m = &report["modes"][mode];
        assert!(
            (m["recall@1"].as_f64().unwrap() - recall1 / n).abs() < 1e-9,
            "{mode} {m}"
        );
        assert!(
            (m["recall@5"].as_f64().unwrap() - recall5 / n).abs() < 1e-9,
            "{mode} {m}"
        );
        assert!(
            (m["mrr"].as_f64().unwrap() - mrr / n).abs() < 1e-9,
            "{mode} {m}"
        );
    }
    // --top-k above --candidates: still k hits (each search takes at least k candidates).
    let rows: Vec<Value> = search_json(
        &model,
        &whole,
        &["--top-k", "30", "--candidates", "5", question],
    );
    assert_eq!(rows[0]["hits"].as_array().unwrap().len(), 30);
    // An m3 index stores bge-m3's own outputs: a truncated width is refused at once.
    let e = fails(&densa(
        &[
            "index",
            "--model",
            s(&model),
            "--passages",
            s(&passages),
            "--output",
            s(&dir.path().join("truncated")),
            "--truncate-dim",
            "16",
        ],
        None,
    ));
    assert!(e.contains("--truncate-dim"), "{e}");

    // A plain index has no lexical weights: --mode sparse says so; a damaged m3.bin is refused.
    let e = search_fails(&model_dir("xlmr-tiny"), &whole, "sparse");
    assert!(e.contains("bge-m3"), "{e}");
    let original = std::fs::read(whole.join("m3.bin")).unwrap();
    // A token id past the vocabulary (the first record's first id).
    let mut foreign = original.clone();
    foreign[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(whole.join("m3.bin"), &foreign).unwrap();
    let e = search_fails(&model, &whole, "sparse");
    assert!(e.contains("outside the vocabulary"), "{e}");
    let mut bytes = original;
    bytes.truncate(bytes.len() - 3);
    std::fs::write(whole.join("m3.bin"), bytes).unwrap();
    let e = search_fails(&model, &whole, "hybrid");
    assert!(
        e.contains("m3.bin") && e.contains("build the index again"),
        "{e}"
    );
}

/// `POST /search` with `"mode"` on a bge-m3 index served with a bge-m3 `--model`: the hits and
/// scores of `densa search --mode --json`; a mode the server cannot search is a 422 saying why.
#[test]
fn serve_search_modes_give_the_cli_hits() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("m3-tiny");
    let demo = common::fixtures().join("../../examples/demo");
    let index = dir.path().join("index");
    ok(&densa(
        &[
            "index",
            "--model",
            s(&model),
            "--passages",
            s(&demo.join("pasajes.jsonl")),
            "--output",
            s(&index),
        ],
        None,
    ));
    let served = common::http::Served::start(&[
        "--model",
        s(&model),
        "--index",
        s(&index),
        "--threads",
        "1",
    ]);
    let question = "¿Dónde nace el Ebro?";
    for (mode, extra) in [("sparse", vec![]), ("hybrid", vec!["--weights", "1,0.5,2"])] {
        let mut args = vec![
            "search",
            "--model",
            s(&model),
            "--index",
            s(&index),
            "--mode",
            mode,
            "--top-k",
            "4",
            "--json",
            question,
        ];
        args.extend_from_slice(&extra);
        let cli: Vec<Value> = json_lines(&ok(&densa(&args, None)));
        let mut body = serde_json::json!({ "query": [question], "k": 4, "mode": mode });
        if mode == "hybrid" {
            body["weights"] = serde_json::json!([1.0, 0.5, 2.0]);
        }
        let got = served.post_ok("/search", &body);
        assert_eq!(got[0]["hits"], cli[0]["hits"], "{mode}");
    }
    for (body, says) in [
        (
            serde_json::json!({ "query": "a", "mode": "splade" }),
            "splade",
        ),
        (
            serde_json::json!({ "query": "a", "mode": "sparse", "weights": [1, 1, 1] }),
            "hybrid",
        ),
        (
            serde_json::json!({ "query": "a", "mode": "hybrid", "candidates": 0 }),
            "candidates",
        ),
    ] {
        let reply = served.call("POST", "/search", &body.to_string());
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert!(reply.text().contains(says), "{}", reply.text());
    }
    // A model without bge-m3's heads serving the same index: dense only.
    let plain = common::http::Served::start(&[
        "--model",
        s(&model_dir("xlmr-tiny")),
        "--index",
        s(&index),
        "--threads",
        "1",
    ]);
    let reply = plain.call(
        "POST",
        "/search",
        &serde_json::json!({ "query": "a", "mode": "sparse" }).to_string(),
    );
    assert_eq!(reply.status, 422);
    assert!(
        reply.text().contains("not a bge-m3 folder"),
        "{}",
        reply.text()
    );
}
