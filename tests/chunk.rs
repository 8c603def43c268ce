//! Documents to passages (`densa chunk`, `densa index --documents`), checked against the
//! definitions: each passage's text is its document's characters `start..end` (Unicode scalar
//! values, as Python slices strings), every non-whitespace character of a document is in a
//! passage, and every passage cut by tokens fits the model: counted by the `tokenizers`
//! library on the fixture's own `tokenizer.json`, as the index will encode it.

mod common;

use common::cli::{densa, json_lines, ok, s};
use common::model_dir;
use densa::retrieval::{chunk_documents, Chunking, Id, Passage, PassageEncoding};
use densa::{Encoder, Options};
use serde_json::{json, Value};
use std::path::Path;

fn document(id: Value, title: Option<&str>, text: &str) -> Passage {
    Passage {
        id: Id::from_json(&id).unwrap(),
        title: title.map(str::to_owned),
        text: text.to_owned(),
        origin: None,
    }
}

/// The hostile documents of the issue: empty, whitespace only, one word of `word_bytes` (5 MB
/// where the tokenizer makes it one token: WordPiece's 100-character words), text without
/// spaces, mixed scripts, characters the tokenizers drop, long ordinary text.
fn hostile_documents(word_bytes: usize) -> Vec<Passage> {
    let ordinary =
        "El ingenioso hidalgo don Quijote de la Mancha, escrita por Miguel de Cervantes. ";
    vec![
        document(json!(0), None, ""),
        document(json!("espacios"), Some("Sólo espacios"), " \t\n  \u{3000} "),
        document(json!("palabra"), None, &"a".repeat(word_bytes)),
        document(
            json!("sin espacios"),
            Some("東京"),
            &"東京は日本の首都です。".repeat(300),
        ),
        document(
            json!(7),
            Some("Mezcla"),
            &"Привет мир, ¿qué tal? Γειά σου κόσμε 😀 مرحبا ".repeat(80),
        ),
        document(
            json!("control"),
            None,
            "hola\u{0}\u{1} \u{200b} mundo\u{7f}  fin\u{0}",
        ),
        document(json!("largo"), Some("Quijote"), &ordinary.repeat(120)),
    ]
}

/// Characters `start..end` of `text` (Unicode scalar values).
fn chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// The definitions every passage of `documents` must meet, and the passages of each.
fn check_definitions(documents: &[Passage], passages: &[Passage]) {
    for document in documents {
        let mine: Vec<&Passage> = passages
            .iter()
            .filter(|p| p.origin.as_ref().is_some_and(|o| o.doc_id == document.id))
            .collect();
        assert!(!mine.is_empty(), "document {} has no passage", document.id);
        let mut covered = vec![false; document.text.chars().count()];
        for (n, p) in mine.iter().enumerate() {
            let origin = p.origin.as_ref().unwrap();
            assert_eq!(p.id, Id::Text(format!("{}#{n}", document.id)));
            assert_eq!(p.title, document.title, "{}", p.id);
            assert_eq!(
                p.text,
                chars(&document.text, origin.start, origin.end),
                "{}",
                p.id
            );
            covered[origin.start..origin.end]
                .iter_mut()
                .for_each(|c| *c = true);
        }
        let lost: Vec<(usize, char)> = document
            .text
            .chars()
            .enumerate()
            .filter(|&(i, c)| !c.is_whitespace() && !covered[i])
            .collect();
        assert!(
            lost.is_empty(),
            "document {}: characters in no passage: {lost:?}",
            document.id
        );
    }
}

/// Tokens of a passage as the index encodes it (the pair (title, text), or the text alone), by
/// the `tokenizers` library on the folder's tokenizer.json, without truncation.
fn encoded_tokens(tokenizer: &tokenizers::Tokenizer, passage: &Passage) -> usize {
    let encoding = match &passage.title {
        Some(title) => tokenizer.encode((title.as_str(), passage.text.as_str()), true),
        None => tokenizer.encode(passage.text.as_str(), true),
    };
    encoding.unwrap().len()
}

fn reference_tokenizer(model: &str) -> tokenizers::Tokenizer {
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(model_dir(model).join("tokenizer.json")).unwrap();
    tokenizer.with_truncation(None).unwrap();
    tokenizer
}

fn encoder(model: &str) -> Encoder {
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    Encoder::from_dir(model_dir(model), options).unwrap()
}

#[test]
fn hostile_documents_are_cut_by_tokens_losing_nothing_and_fitting_the_model() {
    // WordPiece (BERT, 64 positions: the 5 MB word is one [UNK]) and Unigram (XLM-R: a
    // 200 KB word is some 100,000 tokens, cut inside), with and without overlap.
    let (max_40, overlap_12) = (
        Chunking::Tokens {
            max_tokens: Some(40),
            overlap: 0,
        },
        Chunking::Tokens {
            max_tokens: Some(48),
            overlap: 12,
        },
    );
    for (model, chunking, word_bytes) in [
        ("bert-tiny", Chunking::MODEL_LENGTH, 5 << 20),
        ("xlmr-tiny", max_40, 200 << 10),
        ("bert-tiny", overlap_12, 5 << 20),
    ] {
        let encoder = encoder(model);
        let encoding = PassageEncoding {
            encoder: &encoder,
            template: None,
        };
        let documents = hostile_documents(word_bytes);
        let passages = chunk_documents(&documents, chunking, &encoding).unwrap();
        check_definitions(&documents, &passages);
        let limit = match chunking {
            Chunking::Tokens {
                max_tokens: Some(n),
                ..
            } => n,
            _ => encoder.tokenizer().max_length(),
        };
        let reference = reference_tokenizer(model);
        for p in &passages {
            let tokens = encoded_tokens(&reference, p);
            assert!(
                tokens <= limit,
                "{model} {chunking:?}: {} has {tokens} tokens > {limit}",
                p.id
            );
        }
        // Overlap: consecutive passages of a document share characters, never more than the
        // overlap's tokens; without it they are disjoint.
        for pair in passages.windows(2) {
            let (a, b) = (
                pair[0].origin.as_ref().unwrap(),
                pair[1].origin.as_ref().unwrap(),
            );
            if a.doc_id != b.doc_id {
                continue;
            }
            match chunking {
                Chunking::Tokens { overlap: 0, .. } => {
                    assert!(b.start >= a.end, "{} / {}", pair[0].id, pair[1].id)
                }
                _ => assert!(
                    b.start > a.start,
                    "{} / {}: no progress",
                    pair[0].id,
                    pair[1].id
                ),
            }
        }
        // The long word is cut inside where the tokenizer gives it many tokens (Unigram),
        // kept whole where it is one [UNK] (WordPiece's 100-character words).
        let word = passages
            .iter()
            .filter(|p| p.origin.as_ref().unwrap().doc_id == Id::from("palabra"))
            .count();
        println!(
            "{model} {chunking:?}: {} passages, the long word in {word}",
            passages.len()
        );
    }
}

#[test]
fn dpr_words_are_disjoint_runs_of_n_words() {
    let encoder = encoder("bert-tiny");
    let encoding = PassageEncoding {
        encoder: &encoder,
        template: None,
    };
    let documents = hostile_documents(5 << 20);
    let passages = chunk_documents(&documents, Chunking::Words(100), &encoding).unwrap();
    check_definitions(&documents, &passages);
    for document in &documents {
        let words: Vec<&str> = document.text.split_whitespace().collect();
        let mine: Vec<&Passage> = passages
            .iter()
            .filter(|p| p.origin.as_ref().unwrap().doc_id == document.id)
            .collect();
        // Passage k holds words 100k .. 100k + 100, as Python's text.split() numbers them.
        let want: Vec<String> = match words.is_empty() {
            true => vec![String::new()],
            false => words.chunks(100).map(|run| run.join(" ")).collect(),
        };
        let got: Vec<String> = mine
            .iter()
            .map(|p| p.text.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(got, want, "document {}", document.id);
    }
}

#[test]
fn a_title_that_leaves_no_room_is_an_error_naming_the_document() {
    let encoder = encoder("bert-tiny");
    let encoding = PassageEncoding {
        encoder: &encoder,
        template: None,
    };
    let long_title = "palabra ".repeat(200);
    let documents = vec![
        document(json!(1), Some("corto"), "un texto"),
        document(json!("título largo"), Some(&long_title), "un texto"),
    ];
    let e = chunk_documents(&documents, Chunking::MODEL_LENGTH, &encoding).unwrap_err();
    let message = e.to_string();
    assert!(message.contains("document \"título largo\""), "{message}");
    assert!(message.contains("no room for its text"), "{message}");
    // More tokens than the model takes is refused up front.
    let too_many = Chunking::Tokens {
        max_tokens: Some(65),
        overlap: 0,
    };
    let e = chunk_documents(&documents[..1], too_many, &encoding).unwrap_err();
    assert!(
        e.to_string()
            .contains("max_tokens 65 is more than the model's max length (64"),
        "{e}"
    );
}

/// `densa index --model MODEL --passages|--documents INPUT --output OUTPUT [extra]`.
fn run_index(
    model: &Path,
    kind: &str,
    input: &Path,
    output: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "index",
        "--model",
        s(model),
        kind,
        s(input),
        "--output",
        s(output),
    ];
    args.extend_from_slice(extra);
    densa(&args, None)
}

/// The hits of `densa search --json` with `model` on `index` (one question among `args`).
fn hits(model: &Path, index: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search", "--model", s(model), "--index", s(index), "--json"];
    all.extend_from_slice(args);
    let result: Value = serde_json::from_str(ok(&densa(&all, None)).trim()).unwrap();
    result["hits"].as_array().unwrap().clone()
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// `densa index --documents`: one step from documents to a searchable index whose hits carry
/// `doc_id`, `start`, `end`; `densa chunk` writes the same passages; ids keep their JSON type.
#[test]
fn documents_to_index_to_hits_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("dpr-ctx-tiny");
    let docs = dir.path().join("docs.jsonl");
    let text = "Madrid es la capital de España. ".repeat(40) + "Lima es la capital del Perú. ";
    write_jsonl(
        &docs,
        &[
            json!({"id": 42, "title": "Capitales", "text": text}),
            json!({"id": "b", "text": "El Ebro nace en Cantabria."}),
        ],
    );
    let passages = dir.path().join("passages.jsonl");
    ok(&densa(
        &[
            "chunk",
            "--model",
            s(&model),
            "--input",
            s(&docs),
            "--output",
            s(&passages),
        ],
        None,
    ));
    let chunked: Vec<Value> = json_lines(&std::fs::read_to_string(&passages).unwrap());
    assert!(chunked.len() >= 2, "{chunked:?}");
    assert_eq!(chunked[0]["id"], json!("42#0"));
    assert_eq!(
        chunked[0]["doc_id"],
        json!(42),
        "a numeric document id stays a number"
    );
    let index = dir.path().join("index");
    ok(&run_index(&model, "--documents", &docs, &index, &[]));
    let from_file = dir.path().join("index-from-chunks");
    ok(&run_index(&model, "--passages", &passages, &from_file, &[]));
    assert_eq!(
        std::fs::read(index.join("passages.jsonl")).unwrap(),
        std::fs::read(from_file.join("passages.jsonl")).unwrap(),
        "densa chunk and index --documents cut alike"
    );
    let hits = hits(&model, &index, &["--top-k", "50", "capital del Perú"]);
    assert_eq!(hits.len(), chunked.len());
    for hit in hits {
        let want = chunked.iter().find(|p| p["id"] == hit["id"]).unwrap();
        for key in ["doc_id", "start", "end", "text", "title"] {
            assert_eq!(hit[key], want[key], "{key} of {}", hit["id"]);
        }
    }
}

/// Passages longer than the model's max length are reported (count and first ids), not
/// truncated in silence; `--truncate` encodes them cut, and says how many.
#[test]
fn long_passages_are_refused_unless_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("bert-tiny");
    let passages = dir.path().join("passages.jsonl");
    write_jsonl(
        &passages,
        &[
            json!({"id": 0, "text": "corto"}),
            json!({"id": 1, "text": "largo ".repeat(100)}),
            json!({"id": "x", "text": "también largo ".repeat(60)}),
        ],
    );
    let index = dir.path().join("index");
    let out = run_index(&model, "--passages", &passages, &index, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 of 3 passages are longer than the model's max length (64 tokens)"),
        "{stderr}"
    );
    assert!(stderr.contains("first: \"1\", \"x\""), "{stderr}");
    assert!(
        !index.join("manifest.json").exists(),
        "nothing is written before the check"
    );
    let out = run_index(&model, "--passages", &passages, &index, &["--truncate"]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 passages were longer than the model's max length"),
        "{stderr}"
    );
}

/// Ids are given back as the input wrote them: a number stays a number, in an index densa
/// built and in one a user wrote by hand in the documented layout.
#[test]
fn numeric_ids_come_back_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("dpr-ctx-tiny");
    let passages = dir.path().join("passages.jsonl");
    write_jsonl(
        &passages,
        &[
            json!({"id": 0, "text": "Madrid es la capital de España."}),
            json!({"id": 12345678901u64, "title": "Perú", "text": "Lima es la capital."}),
        ],
    );
    let index = dir.path().join("index");
    ok(&run_index(&model, "--passages", &passages, &index, &[]));
    let mut ids: Vec<Value> = hits(&model, &index, &["capital"])
        .iter()
        .map(|h| h["id"].clone())
        .collect();
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, vec![json!(0), json!(12345678901u64)]);
    // The same folder with passages.jsonl rewritten by hand (numbers as the user's database
    // has them): the offsets file follows the new lines.
    let lines = [
        "{\"id\": 0, \"text\": \"Madrid es la capital de España.\"}",
        "{\"id\": 7, \"title\": \"Perú\", \"text\": \"Lima es la capital.\"}",
    ];
    let mut offsets = vec![0u64];
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        offsets.push(bytes.len() as u64);
    }
    std::fs::write(index.join("passages.jsonl"), &bytes).unwrap();
    let offsets: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    std::fs::write(index.join("passages.offsets"), offsets).unwrap();
    let mut ids: Vec<Value> = hits(&model, &index, &["capital"])
        .iter()
        .map(|h| h["id"].clone())
        .collect();
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, vec![json!(0), json!(7)]);
}
