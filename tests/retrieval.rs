//! `densa index`, `search` and `eval` end to end on the DPR context fixture: the index holds
//! transformers' vectors (the golden pooled outputs), search returns the brute-force f64
//! ranking of those vectors, eval's metrics are the ones computed here from them, and an
//! interrupted or sharded build ends byte-identical to an uninterrupted one.

mod common;

use common::cli::{densa, json_lines, ok, s};
use common::{cases, model_dir, read_npy, Case, Golden};
use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "dpr-ctx-tiny";

/// The golden cases as a passage collection (texts without a title, pairs with one), ids
/// `c0`, `c1`, …; and transformers' pooled vector of each.
fn golden_collection(dir: &Path) -> (PathBuf, Vec<Vec<f32>>) {
    let path = dir.join("passages.jsonl");
    let mut lines = String::new();
    for (i, case) in cases().iter().enumerate() {
        let value = match case {
            Case::Text(t) => serde_json::json!({ "id": format!("c{i}"), "text": t }),
            Case::Pair(title, t) => {
                serde_json::json!({ "id": format!("c{i}"), "title": title, "text": t })
            }
        };
        lines += &format!("{value}\n");
    }
    std::fs::write(&path, lines).unwrap();
    let golden = Golden::load(MODEL);
    let vectors = (0..cases().len())
        .map(|i| golden.f32(&format!("case{i}.pooled")).1)
        .collect();
    (path, vectors)
}

/// Runs `densa index` on `passages` into `output` with the test model: its output.
fn run_index(passages: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let model = model_dir(MODEL);
    // The golden cases hold texts longer than the model takes: encoded truncated, as
    // transformers' goldens were (tests/chunk.rs covers refusing them without --truncate).
    let mut args = vec![
        "index",
        "--model",
        s(&model),
        "--passages",
        s(passages),
        "--output",
        s(output),
        "--truncate",
    ];
    args.extend_from_slice(extra);
    densa(&args, None)
}

/// `densa index` on two threads that must succeed: its standard error.
fn build(passages: &Path, output: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--threads", "2"];
    args.extend_from_slice(extra);
    let out = run_index(passages, output, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `densa index` that must fail: its standard error.
fn build_fails(passages: &Path, output: &Path, extra: &[&str]) -> String {
    let out = run_index(passages, output, extra);
    assert!(!out.status.success(), "densa index succeeded on bad input");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

#[test]
fn index_holds_transformers_vectors_and_search_ranks_by_inner_product() {
    let dir = tempfile::tempdir().unwrap();
    let (passages, golden) = golden_collection(dir.path());
    let index = dir.path().join("index");
    build(
        &passages,
        &index,
        &["--chunk-size", "3", "--batch-size", "4"],
    );
    assert!(
        !index.join("chunks").exists(),
        "chunks removed once assembled"
    );

    // vectors.npy: one row per passage, in order, equal to transformers' pooled output.
    let (n, dim, vectors) = read_npy(&index.join("vectors.npy"));
    assert_eq!(n, golden.len());
    for (i, want) in golden.iter().enumerate() {
        let diff = common::max_abs_diff(&vectors[i * dim..(i + 1) * dim], want);
        assert!(diff <= 1e-5, "passage {i}: |diff| {diff:e}");
    }
    let ids: Vec<String> = std::fs::read_to_string(index.join("passages.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>());

    // Search with three of the texts as questions (the same encoder: same vectors).
    let questions = dir.path().join("questions.txt");
    let picks = [0usize, 5, 10];
    let texts = common::single_texts(&cases())
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    std::fs::write(
        &questions,
        picks
            .iter()
            .map(|&i| format!("{}\n", texts[i]))
            .collect::<String>(),
    )
    .unwrap();
    let model = model_dir(MODEL);
    let out = ok(&densa(
        &[
            "search",
            "--model",
            s(&model),
            "--index",
            s(&index),
            "--top-k",
            "5",
            "--json",
            "--input",
            s(&questions),
        ],
        None,
    ));
    let results: Vec<serde_json::Value> = json_lines(&out);
    assert_eq!(results.len(), picks.len());
    for (result, &q) in results.iter().zip(&picks) {
        // Brute force in f64 over transformers' vectors.
        let mut exact: Vec<(f64, usize)> = golden
            .iter()
            .enumerate()
            .map(|(i, v)| (dot(&golden[q], v), i))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let hits = result["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 5);
        // The question itself is its own best match.
        assert_eq!(hits[0]["id"], format!("c{q}"));
        for (rank, hit) in hits.iter().enumerate() {
            let id: usize = hit["id"].as_str().unwrap()[1..].parse().unwrap();
            let score = hit["score"].as_f64().unwrap();
            assert!(
                (score - exact[rank].0).abs() < 1e-4,
                "q{q} rank {rank}: {score} vs {:?}",
                exact[rank]
            );
            assert!(
                (score - dot(&golden[q], &golden[id])).abs() < 1e-4,
                "q{q} rank {rank}: score of c{id}"
            );
            assert_eq!(hit["rank"], rank + 1);
        }
    }

    // Eval: the gold passage of each question is the case it was taken from, or another.
    let qa = dir.path().join("qa.jsonl");
    let pairs = [(0usize, 0usize), (5, 5), (10, 3), (1, 17), (13, 2)];
    std::fs::write(
        &qa,
        pairs
            .iter()
            .map(|&(q, g)| {
                format!(
                    "{}\n",
                    serde_json::json!({"question": texts[q], "passage_id": format!("c{g}")})
                )
            })
            .collect::<String>(),
    )
    .unwrap();
    // `densa eval` with the test model for questions, top-k 1 and 3, over `passages`.
    let eval = |passages: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval", "--model-q", s(&model), "--qa", s(&qa)];
        args.extend_from_slice(&["--top-k", "1,3"]);
        args.extend_from_slice(passages);
        serde_json::from_str(&ok(&densa(&args, None))).unwrap()
    };
    let report = eval(&["--index", s(&index)]);
    let ranks: Vec<f64> = pairs
        .iter()
        .map(|&(q, g)| {
            let gold = dot(&golden[q], &golden[g]);
            1.0 + golden
                .iter()
                .filter(|v| dot(&golden[q], v) > gold + 1e-6)
                .count() as f64
        })
        .collect();
    common::assert_eval_metrics(&report, &ranks);
    assert_eq!(report["questions"], 5);
    // The same figures from --passages (encoded on the fly).
    let again = eval(&[
        "--model-ctx",
        s(&model),
        "--passages",
        s(&passages),
        "--truncate",
    ]);
    for key in ["recall@1", "recall@3", "mrr", "average_rank"] {
        assert_eq!(again[key], report[key], "{key}");
    }
}

/// Every file of an index folder, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A collection big enough that a build takes a while (for the kill test).
fn long_collection(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("long.jsonl");
    let words = [
        "biblioteca",
        "año",
        "río",
        "paella",
        "Cervantes",
        "pingüino",
        "montaña",
        "canción",
    ];
    let mut lines = String::new();
    for i in 0..n {
        let text: Vec<&str> = (0..40 + i % 60)
            .map(|w| words[(i * 7 + w * 3) % words.len()])
            .collect();
        lines += &format!(
            "{}\n",
            serde_json::json!({"id": i, "title": format!("Pasaje {i}"), "text": text.join(" ")})
        );
    }
    std::fs::write(&path, lines).unwrap();
    path
}

/// Each shard folder `shard{i}` (of 3) of `whole` is its shard's own index: its rows are the
/// whole index's rows at their collection rows (chunks `k % 3 == i` of 64), and its hits,
/// merged by score with ties to the lower collection row, are the whole index's.
fn shards_search_as_the_whole_index(dir: &Path, whole: &Path) {
    let whole = densa::Index::open(whole).unwrap();
    let all = whole.vectors_f32();
    let dim = whole.dim();
    let shards: Vec<densa::Index> = (0..3)
        .map(|i| densa::Index::open(dir.join(format!("shard{i}"))).unwrap())
        .collect();
    let mut rows_seen = 0;
    for (i, shard) in shards.iter().enumerate() {
        let info = shard.shard().expect("a shard's folder says so");
        assert_eq!((info.index, info.count, info.chunk_size), (i, 3, 64));
        let own = shard.vectors_f32();
        for row in 0..shard.len() {
            // By the definition: chunk c of shard i is the collection's chunk i + 3c.
            let (c, within) = (row / 64, row % 64);
            let collection_row = (i + 3 * c) * 64 + within;
            assert_eq!(shard.collection_row(row), collection_row);
            assert_eq!(
                own[row * dim..(row + 1) * dim],
                all[collection_row * dim..(collection_row + 1) * dim]
            );
        }
        rows_seen += shard.len();
    }
    assert_eq!(rows_seen, whole.len());
    // Queries: a few of the collection's own vectors, and their sums (near-ties).
    let mut queries = all[..4 * dim].to_vec();
    queries.extend((0..dim).map(|j| all[j] + all[dim * 300 + j]));
    let k = 7;
    let want = whole.search(&queries, k).unwrap();
    let per_shard: Vec<_> = shards
        .iter()
        .map(|s| s.search(&queries, k).unwrap())
        .collect();
    for (j, want) in want.iter().enumerate() {
        let mut merged: Vec<(f32, usize)> = shards
            .iter()
            .zip(&per_shard)
            .flat_map(|(s, hits)| hits[j].iter().map(|h| (h.score, s.collection_row(h.index))))
            .collect();
        merged.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        merged.truncate(k);
        let want: Vec<(f32, usize)> = want.iter().map(|h| (h.score, h.index)).collect();
        assert_eq!(merged, want, "query {j}");
    }
}

#[test]
fn interrupted_and_sharded_builds_end_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let passages = long_collection(dir.path(), 600);
    let whole = dir.path().join("whole");
    build(&passages, &whole, &["--chunk-size", "64"]);
    let reference = files(&whole);
    assert_eq!(
        reference
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "manifest.json",
            "passages.jsonl",
            "passages.offsets",
            "vectors.npy"
        ]
    );

    // Three shards in three folders (as on three machines), merged by copying chunks.
    let merged = dir.path().join("merged");
    for i in 0..3 {
        let shard_dir = dir.path().join(format!("shard{i}"));
        let log = build(
            &passages,
            &shard_dir,
            &["--chunk-size", "64", "--shard", &format!("{i}/3")],
        );
        assert!(log.contains(&format!("shard {i} of 3 complete")), "{log}");
        std::fs::create_dir_all(merged.join("chunks")).unwrap();
        for entry in std::fs::read_dir(shard_dir.join("chunks")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), merged.join("chunks").join(entry.file_name())).unwrap();
        }
        std::fs::copy(
            shard_dir.join("manifest.json"),
            merged.join("manifest.json"),
        )
        .unwrap();
    }
    let log = build(&passages, &merged, &["--chunk-size", "64"]);
    assert!(
        log.contains("encoded 0 of 600"),
        "the merge encodes nothing: {log}"
    );
    assert_eq!(
        files(&merged),
        reference,
        "merged shards differ from one build"
    );
    shards_search_as_the_whole_index(dir.path(), &whole);

    // Killed mid-build (SIGKILL: no clean-up at all), then resumed.
    let killed = dir.path().join("killed");
    let model = model_dir(MODEL);
    let mut child = Command::new(env!("CARGO_BIN_EXE_densa"))
        .args([
            "index",
            "--model",
            s(&model),
            "--passages",
            s(&passages),
            "--output",
            s(&killed),
        ])
        .args(["--chunk-size", "16", "--threads", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let chunks = killed.join("chunks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let done = std::fs::read_dir(&chunks).map_or(0, |d| d.count());
        if done >= 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let was_interrupted = !killed.join("vectors.npy").exists();
    println!("RELIABILITY kill test: build interrupted: {was_interrupted}");
    // An interrupted folder is not an index.
    if was_interrupted {
        let e = densa::Index::open(&killed).err().unwrap();
        assert!(e.to_string().contains("incomplete"), "{e}");
    }
    let log = build(&passages, &killed, &["--chunk-size", "16"]);
    if was_interrupted {
        assert!(
            !log.contains("encoded 600 of 600"),
            "resumed, not restarted: {log}"
        );
    }
    let resumed = files(&killed);
    // Chunk size is part of the manifest; the data files must equal the reference.
    assert_eq!(resumed[1..], reference[1..], "resumed build differs");
}

#[test]
fn mismatched_builds_and_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (passages, _) = golden_collection(dir.path());
    let index = dir.path().join("index");
    build(&passages, &index, &["--chunk-size", "4"]);
    build(&passages, &dir.path().join("fresh"), &[]);
    let model = model_dir(MODEL);
    // Resuming with other settings into the same folder.
    let stderr = build_fails(&passages, &index, &["--chunk-size", "5"]);
    assert!(stderr.contains("chunk_size"), "{stderr}");
    // A question encoder whose vectors do not fit the index (16 vs 32 values).
    let question = model_dir("dpr-question-tiny");
    let out = densa(
        &[
            "search",
            "--model",
            s(&question),
            "--index",
            s(&index),
            "hola",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("wrong model pair"),
        "{stderr}"
    );
    // A damaged index: vectors.npy cut short.
    let vectors = index.join("vectors.npy");
    let bytes = std::fs::read(&vectors).unwrap();
    std::fs::write(&vectors, &bytes[..bytes.len() - 4]).unwrap();
    let e = densa::Index::open(&index).err().unwrap();
    assert!(e.to_string().contains("vectors.npy"), "{e}");
    // A huge --top-k returns every passage, without reserving room for the request.
    let out = ok(&densa(
        &[
            "search",
            "--model",
            s(&model),
            "--index",
            s(&dir.path().join("fresh")),
            "--json",
            "--top-k",
            "1000000000000",
            "hola",
        ],
        None,
    ));
    let hits = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["hits"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(hits, cases().len());
    // Not an index at all; duplicate ids; a collection line without text.
    assert!(densa::Index::open(dir.path()).is_err());
    std::fs::write(
        &passages,
        "{\"id\": 7, \"text\": \"a\"}\n\n{\"id\": \"7\", \"text\": \"b\"}\n",
    )
    .unwrap();
    let stderr = build_fails(&passages, &dir.path().join("other"), &[]);
    assert!(
        stderr.contains("line 3: id \"7\" was already used on line 1"),
        "{stderr}"
    );
    std::fs::write(&passages, "{\"id\": 1, \"title\": \"x\"}\n").unwrap();
    let stderr = build_fails(&passages, &dir.path().join("other"), &[]);
    assert!(stderr.contains("line 1: no \"text\""), "{stderr}");
}

/// The folder's prompts reach the index ("passage: ") and the questions ("query: ") without a
/// flag, the index's vectors are sentence-transformers' (st-tiny's golden), the manifest
/// records how passages were encoded, and search warns when the questions are not encoded
/// the same way.
#[test]
fn index_and_search_follow_the_folders_prompts_and_warn_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let golden = Golden::load("st-tiny");
    let texts: Vec<String> = serde_json::from_str(&golden.metadata("texts").unwrap()).unwrap();
    let passages = dir.path().join("passages.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&passages, lines.join("\n") + "\n").unwrap();
    let (model, index) = (model_dir("st-tiny"), dir.path().join("index"));
    let template = ["--passage-template", "{title}. {text}"];
    let mut args = vec!["index", "--model", s(&model), "--passages", s(&passages)];
    args.extend_from_slice(&["--output", s(&index)]);
    args.extend_from_slice(&template);
    let out = densa(&args, None);
    let log = ok_stderr(&out);
    assert!(
        log.contains(
            "densa: passages: pooling mean, prompt \"passage: \", normalized, dimension 16"
        ),
        "{log}"
    );
    // Untitled passages are their text alone: sentence-transformers' vectors with the
    // "passage" prompt.
    let (n, dim, vectors) = read_npy(&index.join("vectors.npy"));
    let (shape, want) = golden.f32("passage");
    assert_eq!((n, dim), (shape[0], shape[1]));
    let diff = common::max_abs_diff(&vectors, &want);
    assert!(
        diff <= 1e-5,
        "index vectors vs sentence-transformers: {diff:e}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["prompt"], "passage: ");
    assert_eq!(manifest["passage_template"], "{title}. {text}");
    assert_eq!(manifest["pooling"], "mean");

    let search = |extra: &[&str]| {
        let mut args = vec!["search", "--model", s(&model), "--index", s(&index)];
        args.extend_from_slice(extra);
        args.push(texts[0].as_str());
        ok_stderr(&densa(&args, None))
    };
    let log = search(&[]);
    assert!(
        log.contains("densa: questions: pooling mean, prompt \"query: \""),
        "{log}"
    );
    assert!(!log.contains("warning"), "{log}");
    let log = search(&["--prompt", "", "--pooling", "cls"]);
    for warning in [
        "densa: warning: the passages were pooled by mean, the questions by cls",
        "densa: warning: the passages were encoded with prompt \"passage: \", the questions with no prompt",
    ] {
        assert!(log.contains(warning), "{log}");
    }
}

/// A command that must succeed: its standard error.
fn ok_stderr(out: &std::process::Output) -> String {
    ok(out);
    String::from_utf8_lossy(&out.stderr).into_owned()
}
