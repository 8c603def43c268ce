//! Running the `densa` binary from a test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `densa ARGS`, with `stdin` (nothing if `None`) on standard input.
pub fn densa(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A command that does not read its input may close the pipe first.
    let _ = pipe.write_all(stdin.unwrap_or_default());
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// The standard output of a run that must succeed.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "densa failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The standard error of a run that must fail (and not by a signal or a panic).
pub fn fails(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean failure (status 1), got {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    stderr
}

/// A path as a `&str` argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A folder's entries, sorted: each path (from the folder) with its bytes (None for a folder).
pub type Tree = Vec<(PathBuf, Option<Vec<u8>>)>;

/// Every entry under `dir` (hidden ones and folders included), by relative path, with each
/// file's bytes: what "the folder holds exactly these files" compares.
pub fn tree(dir: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().to_owned();
            if path.is_dir() {
                out.push((name, None));
                walk(root, &path, out);
            } else {
                out.push((name, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The names in a [`tree`], for messages.
pub fn names(tree: &[(PathBuf, Option<Vec<u8>>)]) -> Vec<String> {
    tree.iter().map(|(p, _)| p.display().to_string()).collect()
}

/// Standard output of JSON lines, one value per line.
pub fn json_lines<T: serde::de::DeserializeOwned>(stdout: &str) -> Vec<T> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `densa index` of the demo collection (examples/demo) with the tiny DPR context encoder, in
/// `dir/index`: its path.
pub fn demo_index(dir: &Path) -> PathBuf {
    let index = dir.join("index");
    let passages = super::fixtures().join("../../examples/demo/pasajes.jsonl");
    let ctx = super::model_dir("dpr-ctx-tiny");
    let args = [
        "index",
        "--model",
        s(&ctx),
        "--passages",
        s(&passages),
        "--output",
        s(&index),
    ];
    ok(&densa(&args, None));
    index
}

/// `densa answer --json` on one question, reranking the top 5 and reading the top 2, two
/// answers: its lines.
pub fn answer_json(
    question_model: &Path,
    index: &Path,
    reader: &Path,
    reranker: &Path,
    question: &str,
) -> Vec<serde_json::Value> {
    let mut args = vec!["answer", "--model", s(question_model), "--index", s(index)];
    args.extend_from_slice(&["--reader", s(reader), "--rerank", s(reranker)]);
    args.extend_from_slice(&["--rerank-top", "5", "--read-top", "2", "--top-k", "2"]);
    args.extend_from_slice(&["--json", question]);
    json_lines(&ok(&densa(&args, None)))
}
