//! Compiles `tests/c/densa_test.c` against `include/densa.h` and `libdensa_c.so` with the
//! machine's C compiler (`cc`, or `$CC`), runs it on the DPR context fixture, and checks its
//! vectors bit for bit against the Rust API's, plus its error and threading reports.

use densa::{Encoder, Options};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The folder holding the `libdensa_c.so` cargo built for this test run.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        if dir.join("libdensa_c.so").is_file() {
            return dir.to_owned();
        }
    }
    panic!("libdensa_c.so not found next to {}", exe.display());
}

fn parse_rows(output: &str, kind: &str) -> Vec<Vec<f32>> {
    output
        .lines()
        .filter(|l| l.starts_with(&format!("{kind} ")))
        .map(|l| {
            l.split_once(':')
                .unwrap()
                .1
                .split_whitespace()
                .map(|v| v.parse::<f32>().unwrap())
                .collect()
        })
        .collect()
}

/// A golden file of tests/fixtures/golden: a metadata entry parsed as JSON, and the first
/// `len` values (all when None) of a tensor.
struct GoldenFile(Vec<u8>);

impl GoldenFile {
    fn load(name: &str) -> Self {
        let path = repo().join(format!("tests/fixtures/golden/{name}.safetensors"));
        GoldenFile(std::fs::read(path).unwrap())
    }

    fn metadata(&self, key: &str) -> serde_json::Value {
        let (_, meta) = safetensors::SafeTensors::read_metadata(&self.0).unwrap();
        serde_json::from_str(&meta.metadata().as_ref().unwrap()[key]).unwrap()
    }

    fn values(&self, name: &str, len: Option<usize>) -> Vec<f32> {
        let st = safetensors::SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap();
        let bytes = len.map_or(t.data().len(), |n| n * 4);
        t.data()[..bytes]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

/// st-tiny's first golden text, and sentence-transformers' vectors of it with the prompt
/// "pregunta: " and with `truncate_dim` 8 (tests/fixtures/golden/st-tiny.safetensors).
fn st_golden() -> (String, Vec<f32>, Vec<f32>) {
    let golden = GoldenFile::load("st-tiny");
    let text = golden.metadata("texts")[0].as_str().unwrap().to_owned();
    let (literal, truncated) = (
        golden.values("literal", Some(16)),
        golden.values("truncated", Some(8)),
    );
    (text, literal, truncated)
}

#[cfg(target_os = "linux")]
#[test]
fn c_program_gets_the_rust_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("densa_test");
    let lib = library_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = Command::new(&cc)
        .arg(repo().join("capi/tests/c/densa_test.c"))
        .arg("-std=c11")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(repo().join("include"))
        .arg("-L")
        .arg(&lib)
        .args(["-ldensa_c", "-lpthread", "-o"])
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let model = repo().join("tests/fixtures/models/dpr-ctx-tiny");
    // A sentence-transformers folder and its golden (sentence-transformers' own vectors).
    let st_golden = st_golden();
    // A cross-encoder's first golden pair and a reader's first golden case (transformers').
    let rerank = GoldenFile::load("bert-rerank-tiny");
    let pair = rerank.metadata("pairs")[0].clone();
    let qa = GoldenFile::load("bert-qa-tiny");
    let case = qa.metadata("cases")[0].clone();
    let answer = qa.metadata("answers")[0][0].clone();
    let fixture = |name: &str| repo().join("tests/fixtures/models").join(name);
    let run = Command::new(&exe)
        .arg(&model)
        .arg(fixture("st-tiny"))
        .arg(&st_golden.0)
        .arg(fixture("bert-rerank-tiny"))
        .args([pair[0].as_str().unwrap(), pair[1].as_str().unwrap()])
        .arg(fixture("bert-qa-tiny"))
        .args([case[0].as_str().unwrap(), case[1].as_str().unwrap()])
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The same inputs through the Rust API.
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let encoder = Encoder::from_dir(&model, options).unwrap();
    let texts = [
        "¿Quién escribió el Quijote?",
        "",
        "cafe\u{301} y café 😀",
        "La Biblioteca Nacional de España se fundó en 1711.",
    ];
    let want_texts = encoder.embed(&texts).unwrap();
    let want_pairs = encoder
        .embed_pairs(&[
            (
                "Miguel de Cervantes",
                "Miguel de Cervantes fue un novelista español.",
            ),
            ("", "Un pasaje sin título."),
        ])
        .unwrap();
    assert!(
        stdout.contains(&format!("dim {}", encoder.dim())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))));
    let got_texts = parse_rows(&stdout, "text");
    let got_pairs = parse_rows(&stdout, "pair");
    assert_eq!(got_texts.len(), texts.len());
    assert_eq!(got_pairs.len(), 2);
    // %.9g round-trips an f32 exactly: bitwise equality.
    for (i, row) in got_texts.iter().enumerate() {
        assert_eq!(row.as_slice(), want_texts.row(i), "text {i}");
    }
    for (i, row) in got_pairs.iter().enumerate() {
        assert_eq!(row.as_slice(), want_pairs.row(i), "pair {i}");
    }
    // The prompt and truncate_dim options against SentenceTransformer.encode.
    for (kind, want) in [("prompted", &st_golden.1), ("truncated", &st_golden.2)] {
        let got = parse_rows(&stdout, kind);
        assert_eq!(got.len(), 1, "{kind}");
        assert_eq!(got[0].len(), want.len(), "{kind}");
        let diff = got[0]
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "{kind}: {diff:e}");
    }
    // The heads against transformers' logits and the reference decoding's answer.
    let logits = parse_rows(&stdout, "rerank");
    let want = rerank.values("pair0.logits", None);
    assert_eq!(logits.len(), 1);
    assert!(
        (logits[0][0] - want[0]).abs() <= 1e-5,
        "{:?} vs {want:?}",
        logits[0]
    );
    let read = stdout
        .lines()
        .find_map(|l| l.strip_prefix("read: "))
        .unwrap();
    let fields: Vec<&str> = read.split(' ').collect();
    let context = case[1].as_str().unwrap();
    let byte = |chars: u64| {
        context
            .char_indices()
            .nth(chars as usize)
            .map_or(context.len(), |(b, _)| b)
    };
    assert_eq!(
        fields[0].parse::<usize>().unwrap(),
        byte(answer["start"].as_u64().unwrap())
    );
    assert_eq!(
        fields[1].parse::<usize>().unwrap(),
        byte(answer["end"].as_u64().unwrap())
    );
    let score: f64 = fields[2].parse().unwrap();
    assert!(
        (score - answer["score"].as_f64().unwrap()).abs() <= 1e-6,
        "{score} vs {answer}"
    );
    for needle in [
        "small rerank buffer: -1 | out holds 0 floats, 1 pairs of 1 logits need 1",
        "read null: -1 | start, end and score must not be NULL",
        "missing: NULL | /nonexistent/densa-model",
        "small buffer: -1 | out holds",
        "null texts: -1 | texts is NULL",
        "bad utf8: -1 | texts[1] is not valid UTF-8",
        "bad precision: NULL | densa_options.precision 7",
        "older options: ok",
        "guard page: -1 | out holds",
        "guard page pairs: -1 | out holds",
        "overflow: -1 | count * dim overflows",
        "null encoder: -1 | encoder is NULL",
        "max_length 2 pairs: -1 | max_length 2 is shorter than the 3 special tokens a pair of texts gets",
        "forked child: -1 | this encoder was opened by process",
        "forked child exit: 0",
        "threads mismatches 0",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
}
