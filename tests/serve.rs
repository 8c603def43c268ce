//! `densa serve` against the CLI (whose outputs the other tests check against transformers):
//! every route's answer bit for bit, TEI's and OpenAI's shapes field by field, and every
//! error and limit with its status code.

mod common;

use base64::Engine;
use common::cli::{densa, fails, json_lines, ok, s};
use common::http::{request, Reply, Served};
use common::model_dir;
use serde_json::{json, Value};

/// The f32 values of a JSON list (the server writes f32; the CLI f32 or f64 of an f32).
fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// The bits of vectors, for exact comparison.
fn bits(rows: &[Vec<f32>]) -> Vec<Vec<u32>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// `densa embed --model MODEL EXTRA` on `texts`: its vectors.
fn cli_vectors(model: &str, texts: &[&str], extra: &[&str]) -> Vec<Vec<f32>> {
    let folder = model_dir(model);
    let mut args = vec!["embed", "--model", s(&folder), "--input", "-"];
    args.extend_from_slice(extra);
    let stdin = texts.join("\n") + "\n";
    let rows: Vec<Value> = json_lines(&ok(&densa(&args, Some(stdin.as_bytes()))));
    rows.iter().map(floats).collect()
}

fn rows(value: &Value) -> Vec<Vec<f32>> {
    value.as_array().unwrap().iter().map(floats).collect()
}

const TEXTS: [&str; 3] = [
    "¿Quién escribió el Quijote?",
    "El Museo del Prado está en Madrid.",
    "hola",
];

/// The error body of a TEI route: `{"error": message, "error_type": kind}`; its message.
fn tei_error(reply: &Reply, status: u16, kind: &str) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error_type"], kind, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    body["error"].as_str().unwrap().to_owned()
}

/// The error body of an OpenAI route: `{"error": {"message", "type", "param", "code"}}`.
fn openai_error(reply: &Reply, status: u16, kind: &str) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    let error = &body["error"];
    assert_eq!(error["code"], kind, "{body}");
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    assert!(error["param"].is_null(), "{body}");
    error["message"].as_str().unwrap().to_owned()
}

/// TEI's `POST /` embeds with the loaded embedding model (what `huggingface_hub`'s
/// `InferenceClient.feature_extraction` posts to a base URL); OpenAI's `GET /v1/models` lists
/// the model.
#[test]
fn root_and_models_routes_answer_as_tei_and_openai() {
    let served = Served::start(&["--model", s(&model_dir("st-tiny")), "--threads", "1"]);
    let root = served.post_ok("/", &json!({ "inputs": TEXTS }));
    assert_eq!(
        bits(&rows(&root)),
        bits(&cli_vectors("st-tiny", &TEXTS, &[]))
    );
    // /decode: the CLI tokenizer's ids back to the text it read, its prompt included (special
    // tokens skipped by default, kept when asked).
    let ids = &json_lines::<Value>(&ok(&densa(
        &[
            "tokenize",
            "--model",
            s(&model_dir("st-tiny")),
            "--input",
            "-",
        ],
        Some(b"hola mundo\n"),
    )))[0]["ids"];
    let decoded = served.post_ok("/decode", &json!({ "ids": ids }));
    assert_eq!(decoded, json!(["query: hola mundo"]));
    let kept = served.post_ok(
        "/decode",
        &json!({ "ids": [ids], "skip_special_tokens": false }),
    );
    let kept = kept[0].as_str().unwrap();
    assert!(kept.starts_with("<s>") && kept.ends_with("</s>"), "{kept}");
    let reply = served.call("POST", "/decode", &json!({ "ids": [5, 99999] }).to_string());
    assert!(tei_error(&reply, 422, "validation").contains("token id 99999"));
    let reply = served.call("GET", "/v1/models", "");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let models = reply.json();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], "st-tiny");
    assert_eq!(data[0]["object"], "model");
    assert!(data[0]["created"].as_u64().unwrap() > 1_700_000_000);
    // /similarity (and / with its body): the cosine of the source's vector with each
    // sentence's, from the CLI's vectors in f64.
    let cli = cli_vectors("st-tiny", &TEXTS, &[]);
    let body = json!({ "inputs": { "source_sentence": TEXTS[0], "sentences": &TEXTS[1..] } });
    let similar = served.post_ok("/similarity", &body);
    let scores = floats(&similar);
    assert_eq!(scores.len(), TEXTS.len() - 1);
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    for (j, &score) in scores.iter().enumerate() {
        let (a, b) = (&cli[0], &cli[j + 1]);
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let want = dot / (norm(a) * norm(b));
        // One rounding to f32 of a value in [-1, 1].
        assert!((score as f64 - want).abs() <= 1e-7, "{score} vs {want}");
    }
    let with_parameters = json!({ "inputs": body["inputs"], "parameters": { "truncate": true } });
    assert_eq!(served.post_ok("/", &with_parameters), similar);
    let empty = json!({ "inputs": { "source_sentence": "a", "sentences": [] } });
    let reply = served.call("POST", "/similarity", &empty.to_string());
    assert!(tei_error(&reply, 422, "validation").contains("empty"));

    // /info lists every route.
    let info = served.call("GET", "/info", "").json();
    let routes: Vec<&str> = info["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for route in [
        "POST /",
        "POST /embed",
        "POST /v1/rerank",
        "GET /v1/models",
        "GET /health",
    ] {
        assert!(routes.contains(&route), "{routes:?}");
    }
    assert_eq!(routes.len(), densa::serve::ROUTES.len());
    // A wrong body on / is TEI's error, as on /embed.
    let reply = served.call("POST", "/", "not json");
    assert!(tei_error(&reply, 400, "validation").contains("invalid JSON"));
}

#[test]
fn embed_routes_give_the_cli_vectors() {
    // st-tiny: mean pooling, a Normalize module, prompts with default_prompt_name "query".
    let served = Served::start(&["--model", s(&model_dir("st-tiny")), "--threads", "2"]);
    let texts = json!(TEXTS);
    let default = served.post_ok("/embed", &json!({ "inputs": texts }));
    assert_eq!(
        bits(&rows(&default)),
        bits(&cli_vectors("st-tiny", &TEXTS, &[]))
    );
    let passage = served.post_ok(
        "/embed",
        &json!({ "inputs": texts, "prompt_name": "passage" }),
    );
    let cli = cli_vectors("st-tiny", &TEXTS, &["--prompt-name", "passage"]);
    assert_eq!(bits(&rows(&passage)), bits(&cli));
    // Matryoshka: the first 8 values, normalised again (TEI's default normalize).
    let short = served.post_ok("/embed", &json!({ "inputs": texts, "dimensions": 8 }));
    let cli = cli_vectors("st-tiny", &TEXTS, &["--truncate-dim", "8", "--normalize"]);
    assert_eq!(bits(&rows(&short)), bits(&cli));
    // A single string is still a list of one vector (TEI's answer).
    let one = served.post_ok("/embed", &json!({ "inputs": TEXTS[0] }));
    assert_eq!(
        bits(&rows(&one)),
        bits(&cli_vectors("st-tiny", &TEXTS[..1], &[]))
    );

    // OpenAI: the server's default encoding; floats and base64 of little-endian f32.
    let cli = cli_vectors("st-tiny", &TEXTS, &[]);
    let reply = served.post_ok("/v1/embeddings", &json!({ "input": texts, "model": "m" }));
    assert_eq!(reply["object"], "list");
    assert_eq!(reply["model"], "m");
    let data = reply["data"].as_array().unwrap();
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert_eq!(item.as_object().unwrap().len(), 3, "{item}");
    }
    let got: Vec<Vec<f32>> = data.iter().map(|d| floats(&d["embedding"])).collect();
    assert_eq!(bits(&got), bits(&cli));
    // usage: the tokens the model ran (the CLI's tokenizer counts them).
    let folder = model_dir("st-tiny");
    let stdin = TEXTS.join("\n") + "\n";
    let tokenized: Vec<Value> = json_lines(&ok(&densa(
        &["tokenize", "--model", s(&folder), "--input", "-"],
        Some(stdin.as_bytes()),
    )));
    let tokens: usize = tokenized
        .iter()
        .map(|t| t["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        reply["usage"],
        json!({ "prompt_tokens": tokens, "total_tokens": tokens })
    );
    let b64 = served.post_ok(
        "/v1/embeddings",
        &json!({ "input": texts, "encoding_format": "base64" }),
    );
    assert_eq!(b64["model"], "st-tiny");
    let decoded: Vec<Vec<f32>> = b64["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d["embedding"].as_str().unwrap())
                .unwrap();
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
        .collect();
    assert_eq!(bits(&decoded), bits(&cli));
    let short = served.post_ok(
        "/v1/embeddings",
        &json!({ "input": TEXTS[2], "dimensions": 4 }),
    );
    // Unit vectors stay unit: normalised again after the cut.
    let cli = cli_vectors(
        "st-tiny",
        &TEXTS[2..],
        &["--truncate-dim", "4", "--normalize"],
    );
    assert_eq!(bits(&[floats(&short["data"][0]["embedding"])]), bits(&cli));

    // /tokenize: the CLI's ids and tokens, special tokens marked (or left out).
    let tokens = served.post_ok("/tokenize", &json!({ "inputs": texts }));
    for (got, want) in tokens.as_array().unwrap().iter().zip(&tokenized) {
        let ids: Vec<Value> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].clone())
            .collect();
        assert_eq!(Value::from(ids), want["ids"]);
        let list = got.as_array().unwrap();
        assert_eq!(list[0]["text"], "<s>");
        assert_eq!(
            (&list[0]["special"], &list[1]["special"]),
            (&json!(true), &json!(false))
        );
        assert_eq!(list.last().unwrap()["special"], true);
    }
    let bare = served.post_ok(
        "/tokenize",
        &json!({ "inputs": "hola", "add_special_tokens": false }),
    );
    let bare = bare[0].as_array().unwrap();
    assert!(bare.iter().all(|t| t["special"] == false) && !bare.is_empty());

    // /info: the model's facts.
    let info = served.call("GET", "/info", "").json();
    assert_eq!(info["dimension"], 16);
    assert_eq!(info["pooling"], "mean");
    assert_eq!(info["default_prompt_name"], "query");
    assert_eq!(info["prompts"]["passage"], "passage: ");
    assert_eq!(info["max_input_length"], 128);
    assert_eq!(info["model_dtype"], "f32");
    let health = served.call("GET", "/health", "");
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
}

#[test]
fn normalize_is_tei_s_on_a_model_without_a_normalize_module() {
    let served = Served::start(&["--model", s(&model_dir("bert-tiny"))]);
    let texts = json!(TEXTS);
    let on = served.post_ok("/embed", &json!({ "inputs": texts }));
    assert_eq!(
        bits(&rows(&on)),
        bits(&cli_vectors("bert-tiny", &TEXTS, &["--normalize"]))
    );
    let off = served.post_ok("/embed", &json!({ "inputs": texts, "normalize": false }));
    assert_eq!(
        bits(&rows(&off)),
        bits(&cli_vectors("bert-tiny", &TEXTS, &[]))
    );

    // /embed_all: every token's last hidden state, transformers' (tests/fixtures/golden, made
    // by tools/make_fixtures.py) within the fidelity tolerance of tests/reference.rs.
    let golden = common::Golden::load("bert-tiny");
    for (i, case) in common::cases().iter().enumerate() {
        let densa::Input::Text(text) = case.input() else {
            continue;
        };
        let reply = served.post_ok("/embed_all", &json!({ "inputs": [text], "truncate": true }));
        let tokens = reply[0].as_array().unwrap();
        let (shape, expected) = golden.f32(&format!("case{i}.hidden_states"));
        let (t, h) = (shape[1], shape[2]);
        assert_eq!(tokens.len(), t, "case {i}");
        let last = &expected[(shape[0] - 1) * t * h..];
        for (j, token) in tokens.iter().enumerate() {
            let diff = common::max_abs_diff(&floats(token), &last[j * h..(j + 1) * h]);
            assert!(diff <= 1e-5, "case {i} token {j}: {diff:e}");
        }
    }

    // Token ids (the CLI tokenizer's, special tokens included) give the texts' vectors, on
    // /embed and on OpenAI's route, as a list of lists or, for one input, one list.
    let stdin = TEXTS.join("\n") + "\n";
    let ids: Vec<Value> = json_lines(&ok(&densa(
        &[
            "tokenize",
            "--model",
            s(&model_dir("bert-tiny")),
            "--input",
            "-",
        ],
        Some(stdin.as_bytes()),
    )))
    .iter()
    .map(|t: &Value| t["ids"].clone())
    .collect();
    let by_ids = served.post_ok("/embed", &json!({ "inputs": ids, "normalize": false }));
    assert_eq!(bits(&rows(&by_ids)), bits(&rows(&off)));
    let one = served.post_ok("/v1/embeddings", &json!({ "input": ids[0] }));
    let got = floats(&one["data"][0]["embedding"]);
    assert_eq!(bits(&[got]), bits(&rows(&off)[..1]));
    assert_eq!(
        one["usage"]["total_tokens"],
        ids[0].as_array().unwrap().len()
    );
}

#[test]
fn rerank_search_and_answer_give_the_cli_answers() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::cli::demo_index(dir.path());
    let ctx = model_dir("dpr-ctx-tiny");
    let (rerank_dir, reader_dir) = (model_dir("bert-rerank-tiny"), model_dir("bert-qa-tiny"));
    let served = Served::start(&[
        "--model",
        s(&ctx),
        "--reranker",
        s(&rerank_dir),
        "--index",
        s(&index),
        "--reader",
        s(&reader_dir),
    ]);
    let question = "¿En qué ciudad está la Sagrada Familia?";
    let texts = [
        "La Sagrada Familia está en Barcelona.",
        "El Prado está en Madrid.",
        "Hola",
    ];

    // /rerank: the CLI's sigmoid scores (or logits), best first, with the texts when asked.
    let pairs: String = texts
        .iter()
        .map(|t| json!({ "query": question, "text": t }).to_string() + "\n")
        .collect();
    let cli: Vec<Value> = json_lines(&ok(&densa(
        &["rerank", "--model", s(&rerank_dir), "--input", "-"],
        Some(pairs.as_bytes()),
    )));
    for raw in [false, true] {
        let body =
            json!({ "query": question, "texts": texts, "raw_scores": raw, "return_text": true });
        let ranked = served.post_ok("/rerank", &body);
        let ranked = ranked.as_array().unwrap();
        assert_eq!(ranked.len(), texts.len());
        let field = if raw { "logit" } else { "score" };
        let mut want: Vec<(usize, f32)> = cli
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c[field].as_f64().unwrap() as f32))
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (got, (i, score)) in ranked.iter().zip(&want) {
            assert_eq!(got["index"], *i);
            assert_eq!(
                (got["score"].as_f64().unwrap() as f32).to_bits(),
                score.to_bits()
            );
            assert_eq!(got["text"], texts[*i]);
        }
    }
    let no_text = served.post_ok("/rerank", &json!({ "query": question, "texts": texts }));
    assert!(no_text[0].get("text").is_none() && no_text[0]["index"].is_u64());

    // /v1/rerank (Cohere's and Jina's body): the same sigmoid scores, best first, at most
    // top_n, documents as strings or {"text"} objects, echoed when asked.
    let mut want: Vec<(usize, f32)> = cli
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c["score"].as_f64().unwrap() as f32))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let objects: Vec<Value> = texts.iter().map(|t| json!({ "text": t })).collect();
    for documents in [json!(texts), json!(objects)] {
        let body = json!({ "model": "rr", "query": question, "documents": documents,
                           "top_n": 2, "return_documents": true });
        let reply = served.post_ok("/v1/rerank", &body);
        assert_eq!(reply["model"], "rr");
        let results = reply["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        for (got, (i, score)) in results.iter().zip(&want) {
            assert_eq!(got["index"], *i);
            let relevance = got["relevance_score"].as_f64().unwrap() as f32;
            assert_eq!(relevance.to_bits(), score.to_bits());
            assert_eq!(got["document"]["text"], texts[*i]);
        }
        assert!(reply["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }
    // Cohere's v2 client posts the same body to /v2/rerank.
    let body = json!({ "model": "rr", "query": question, "documents": texts, "top_n": 2 });
    assert_eq!(
        served.post_ok("/v2/rerank", &body),
        served.post_ok("/v1/rerank", &body)
    );
    let all = served.post_ok(
        "/v1/rerank",
        &json!({ "query": question, "documents": texts }),
    );
    let results = all["results"].as_array().unwrap();
    assert_eq!(results.len(), texts.len());
    assert!(results[0].get("document").is_none());
    for (body, says) in [
        (json!({ "query": question, "documents": [] }), "empty"),
        (
            json!({ "query": question, "documents": [{ "title": "x" }] }),
            "documents[0]",
        ),
        (
            json!({ "query": question, "documents": texts, "top_n": 0 }),
            "top_n",
        ),
        (
            json!({ "query": question, "documents": texts, "rank_fields": ["a"] }),
            "rank_fields",
        ),
    ] {
        let reply = served.call("POST", "/v1/rerank", &body.to_string());
        let message = openai_error(&reply, 422, "validation");
        assert!(message.contains(says), "{message}");
    }

    // /search: `densa search --json`'s hits.
    let cli: Vec<Value> = json_lines(&ok(&densa(
        &[
            "search",
            "--model",
            s(&ctx),
            "--index",
            s(&index),
            "--top-k",
            "4",
            "--json",
            question,
        ],
        None,
    )));
    let found = served.post_ok("/search", &json!({ "query": [question], "k": 4 }));
    assert_eq!(found[0]["query"], question);
    let (got, want) = (
        found[0]["hits"].as_array().unwrap(),
        cli[0]["hits"].as_array().unwrap(),
    );
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(want) {
        for key in ["rank", "id", "title", "text"] {
            assert_eq!(g[key], w[key], "{key}");
        }
        assert_eq!(
            g["score"].as_f64().unwrap() as f32,
            w["score"].as_f64().unwrap() as f32
        );
    }

    // /answer: `densa answer --json`'s answers.
    let cli = common::cli::answer_json(&ctx, &index, &reader_dir, &rerank_dir, question);
    let body = json!({ "question": question, "rerank_top": 5, "read_top": 2, "top_k": 2 });
    let answered = served.post_ok("/answer", &body);
    assert_eq!(answered["answers"], cli[0]["answers"]);
    // Bounds on what one request may ask of the index and the pipeline.
    let reply = served.call(
        "POST",
        "/search",
        &json!({ "query": question, "k": 5000 }).to_string(),
    );
    assert!(tei_error(&reply, 422, "validation").contains("between 1 and 1000"));
    let body = json!({ "question": question, "rerank_top": 100000 }).to_string();
    let reply = served.call("POST", "/answer", &body);
    assert!(tei_error(&reply, 413, "payload_too_large").contains("rerank_top"));
    for stage in ["retrieve", "rerank", "read"] {
        assert!(answered["ms"][stage].as_f64().unwrap() >= 0.0);
    }
}

/// TEI's `/predict` with a three-label classifier: transformers' logits (the golden pairs of
/// xlmr-rerank-tiny) and their softmax, labels named by `id2label`, best first; single texts
/// as `densa classify` scores them; the root route as `--root` says.
#[test]
fn predict_gives_transformers_labels_as_tei() {
    const LABELS: [&str; 3] = ["contradicción", "neutral", "implicación"];
    let classifier = model_dir("xlmr-rerank-tiny");
    let served = Served::start(&[
        "--model",
        s(&model_dir("st-tiny")),
        "--classifier",
        s(&classifier),
        "--root",
        "predict",
        "--threads",
        "1",
    ]);
    let golden = common::Golden::load("xlmr-rerank-tiny");
    let pairs: Vec<[String; 2]> = serde_json::from_str(&golden.metadata("pairs").unwrap()).unwrap();
    // Each prediction list as {label: score}, checked best first.
    let by_label = |predictions: &Value| -> Vec<f32> {
        let list = predictions.as_array().unwrap();
        assert_eq!(list.len(), LABELS.len(), "{predictions}");
        let scores: Vec<f32> = list
            .iter()
            .map(|p| p["score"].as_f64().unwrap() as f32)
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "not best first: {predictions}"
        );
        LABELS
            .iter()
            .map(|label| {
                let p = list.iter().find(|p| p["label"] == *label).unwrap();
                p["score"].as_f64().unwrap() as f32
            })
            .collect()
    };
    for raw in [true, false] {
        let body = json!({ "inputs": pairs, "raw_scores": raw, "truncate": true });
        let batch = served.post_ok("/predict", &body);
        let batch = batch.as_array().unwrap();
        assert_eq!(batch.len(), pairs.len());
        for (i, predictions) in batch.iter().enumerate() {
            let logits = golden.f32(&format!("pair{i}.logits")).1;
            let want: Vec<f32> = if raw {
                logits
            } else {
                let sum: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
                logits
                    .iter()
                    .map(|&l| ((l as f64).exp() / sum) as f32)
                    .collect()
            };
            let diff = common::max_abs_diff(&by_label(predictions), &want);
            // As tests/rerank.rs: 1e-5 on the logits (a softmax is no more sensitive).
            assert!(diff <= 1e-5, "pair {i} raw {raw}: {diff:e}");
        }
    }
    // One pair, as TEI reads ["a", "b"]: a flat list, the batch's first answer.
    let one = served.post_ok("/predict", &json!({ "inputs": pairs[0] }));
    let first = served.post_ok("/predict", &json!({ "inputs": [pairs[0].clone()] }));
    assert_eq!(one, first[0]);

    // Single texts: `densa classify`'s scores bit for bit, and through / and /invocations.
    let lines: String = TEXTS
        .iter()
        .map(|t| json!({ "text": t }).to_string() + "\n")
        .collect();
    let cli: Vec<Value> = json_lines(&ok(&densa(
        &["classify", "--model", s(&classifier), "--input", "-"],
        Some(lines.as_bytes()),
    )));
    for (text, row) in TEXTS.iter().zip(&cli) {
        let want = floats(&row["scores"]);
        for route in ["/predict", "/", "/invocations"] {
            let got = by_label(&served.post_ok(route, &json!({ "inputs": text })));
            assert_eq!(bits(&[got]), bits(std::slice::from_ref(&want)), "{route}");
        }
        // huggingface_hub's text_classification parameters: the logits, the best one only.
        let body = json!({ "inputs": text,
                           "parameters": { "function_to_apply": "none", "top_k": 1 } });
        let top = served.post_ok("/predict", &body);
        let best = row["label"].as_str().unwrap();
        let logit = floats(&row["logits"])[LABELS.iter().position(|l| *l == best).unwrap()];
        let top = top.as_array().unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0]["label"], best);
        assert_eq!(
            (top[0]["score"].as_f64().unwrap() as f32).to_bits(),
            logit.to_bits()
        );
    }

    // A rerank needs one label (TEI: 424); bad inputs are 422 naming what is wrong.
    let reply = served.call(
        "POST",
        "/rerank",
        &json!({ "query": "a", "texts": ["b"] }).to_string(),
    );
    assert!(tei_error(&reply, 424, "backend").contains("3 labels"));
    for (inputs, says) in [
        (json!(["a", "b", "c"]), "3 strings"),
        (json!([["a"], 5]), "inputs[1]"),
        (json!([]), "empty"),
    ] {
        let reply = served.call("POST", "/predict", &json!({ "inputs": inputs }).to_string());
        assert!(tei_error(&reply, 422, "validation").contains(says));
    }
    let body = json!({ "inputs": "a", "parameters": { "function_to_apply": "relu" } });
    let reply = served.call("POST", "/predict", &body.to_string());
    assert!(tei_error(&reply, 422, "validation").contains("relu"));

    // Without a classifier, /predict is a 404 and --root predict a refusal at start.
    let embedding_only = Served::start(&["--model", s(&model_dir("st-tiny")), "--threads", "1"]);
    let reply = embedding_only.call("POST", "/predict", &json!({ "inputs": "a" }).to_string());
    assert!(tei_error(&reply, 404, "not_found").contains("--classifier"));
    let refused = fails(&densa(
        &[
            "serve",
            "--model",
            s(&model_dir("st-tiny")),
            "--root",
            "predict",
            "--port",
            "0",
        ],
        None,
    ));
    assert!(refused.contains("--classifier"), "{refused}");
    // /answer reranks by relevance: a classifier of three labels beside a reader is refused.
    let dir = tempfile::tempdir().unwrap();
    let index = common::cli::demo_index(dir.path());
    let refused = fails(&densa(
        &[
            "serve",
            "--model",
            s(&model_dir("dpr-ctx-tiny")),
            "--classifier",
            s(&classifier),
            "--index",
            s(&index),
            "--reader",
            s(&model_dir("bert-qa-tiny")),
            "--port",
            "0",
        ],
        None,
    ));
    assert!(refused.contains("3 labels"), "{refused}");
}

/// TEI's `/embed_sparse` on a bge-m3 folder: `densa embed --output-kind sparse`'s weights bit
/// for bit; a model without bge-m3's heads answers 404 saying why.
#[test]
fn embed_sparse_gives_the_cli_lexical_weights() {
    let m3 = model_dir("m3-tiny");
    let served = Served::start(&["--model", s(&m3), "--threads", "1"]);
    let texts = [
        "¿Quién escribió Don Quijote?",
        "Cervantes, Cervantes y Cervantes.",
    ];
    let cli: Vec<Value> = json_lines(&ok(&densa(
        &[
            "embed",
            "--model",
            s(&m3),
            "--output-kind",
            "sparse",
            "--input",
            "-",
        ],
        Some((texts.join("\n") + "\n").as_bytes()),
    )));
    let got = served.post_ok("/embed_sparse", &json!({ "inputs": texts }));
    let pairs = |rows: &Value| -> Vec<Vec<(u64, u32)>> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let value = e["value"].as_f64().unwrap() as f32;
                        (e["index"].as_u64().unwrap(), value.to_bits())
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(pairs(&got), pairs(&Value::from(cli)));
    assert!(!pairs(&got)[0].is_empty());
    let one = served.post_ok("/embed_sparse", &json!({ "inputs": texts[0] }));
    assert_eq!(pairs(&one)[0], pairs(&got)[0]);

    let plain = Served::start(&["--model", s(&model_dir("st-tiny")), "--threads", "1"]);
    let reply = plain.call(
        "POST",
        "/embed_sparse",
        &json!({ "inputs": "a" }).to_string(),
    );
    assert!(tei_error(&reply, 404, "not_found").contains("bge-m3"));
}

#[test]
fn bad_requests_get_clear_errors_with_their_status() {
    let served = Served::start(&[
        "--model",
        s(&model_dir("st-tiny")),
        "--max-body-bytes",
        "4000",
        "--max-client-batch-size",
        "4",
        "--max-length",
        "16",
    ]);
    let post = |path: &str, body: &[u8]| request(&served.addr, "POST", path, &[], body);
    let cases: &[(&str, &[u8], u16, &str, &str)] = &[
        (
            "/embed",
            b"{\"inputs\": [\"a\"",
            400,
            "validation",
            "invalid JSON body",
        ),
        (
            "/embed",
            b"{\"inputs\": \"\xff\xfe\"}",
            400,
            "validation",
            "invalid JSON body",
        ),
        ("/embed", b"", 400, "validation", "invalid JSON body"),
        (
            "/embed",
            b"{\"inputs\": 5}",
            422,
            "validation",
            "inputs is a number",
        ),
        (
            "/embed",
            b"{\"inputs\": [\"a\", 1]}",
            422,
            "validation",
            "inputs[1] is a token id or a list of them among texts",
        ),
        (
            "/embed",
            b"{\"inputs\": []}",
            422,
            "validation",
            "inputs is an empty list",
        ),
        ("/embed", b"{}", 422, "validation", "missing field `inputs`"),
        (
            "/embed",
            b"{\"inputs\": \"a\", \"normalise\": true}",
            422,
            "validation",
            "unknown field `normalise`",
        ),
        (
            "/embed",
            b"{\"inputs\": \"a\", \"normalize\": \"yes\"}",
            422,
            "validation",
            "invalid type",
        ),
        (
            "/embed",
            b"{\"inputs\": \"a\", \"dimensions\": 0}",
            422,
            "validation",
            "truncate_dim 0",
        ),
        (
            "/embed",
            b"{\"inputs\": \"a\", \"dimensions\": 99}",
            422,
            "validation",
            "truncate_dim 99",
        ),
        (
            "/embed",
            b"{\"inputs\": \"a\", \"prompt_name\": \"nope\"}",
            422,
            "validation",
            "nope",
        ),
        (
            "/embed",
            b"{\"inputs\": \"a\", \"truncation_direction\": \"Left\"}",
            422,
            "validation",
            "on the right only",
        ),
        (
            "/embed",
            b"{\"inputs\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}",
            413,
            "payload_too_large",
            "--max-client-batch-size",
        ),
        (
            "/rerank",
            b"{\"query\": \"a\", \"texts\": [\"b\"]}",
            404,
            "not_found",
            "--reranker",
        ),
        (
            "/search",
            b"{\"query\": \"a\"}",
            404,
            "not_found",
            "--index",
        ),
        (
            "/answer",
            b"{\"question\": \"a\"}",
            404,
            "not_found",
            "--reader",
        ),
        ("/nowhere", b"{}", 404, "not_found", "no route /nowhere"),
    ];
    for &(path, body, status, kind, needle) in cases {
        let message = tei_error(&post(path, body), status, kind);
        assert!(
            message.contains(needle),
            "{path} {:?}: {message}",
            String::from_utf8_lossy(body)
        );
    }
    // Over the body limit, in each route's shape.
    let big = json!({ "inputs": "palabra ".repeat(600) }).to_string();
    let message = tei_error(&post("/embed", big.as_bytes()), 413, "payload_too_large");
    assert!(message.contains("4000 bytes"), "{message}");
    let big = json!({ "input": "palabra ".repeat(600) }).to_string();
    let message = openai_error(
        &post("/v1/embeddings", big.as_bytes()),
        413,
        "payload_too_large",
    );
    assert!(message.contains("4000 bytes"), "{message}");

    // Too long for the model: 413 unless truncation is asked for (then the CLI's cut).
    let long =
        "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince";
    let message = tei_error(
        &post("/embed", json!({ "inputs": long }).to_string().as_bytes()),
        413,
        "payload_too_large",
    );
    assert!(
        message.contains("16 tokens") && message.contains("truncate"),
        "{message}"
    );
    let cut = served.post_ok("/embed", &json!({ "inputs": long, "truncate": true }));
    assert_eq!(
        bits(&rows(&cut)),
        bits(&cli_vectors("st-tiny", &[long], &["--max-length", "16"]))
    );
    let reply = post(
        "/v1/embeddings",
        json!({ "input": long }).to_string().as_bytes(),
    );
    assert!(openai_error(&reply, 413, "payload_too_large").contains("16 tokens"));

    // OpenAI's own mistakes, in OpenAI's shape.
    let openai_cases: &[(&[u8], &str)] = &[
        (
            b"{\"input\": \"a\", \"encoding_format\": \"int8\"}",
            "encoding_format",
        ),
        (
            b"{\"input\": [1, 2, 99999999]}",
            "token id 99999999, outside",
        ),
        (
            b"{\"input\": [[1, -2]]}",
            "input[0][1] is -2, not a token id",
        ),
        (
            b"{\"input\": [\"a\", [1, 2]]}",
            "all texts or all token ids",
        ),
        (b"{\"input\": [[]]}", "empty list of token ids"),
        (b"{\"input\": []}", "empty list"),
        (b"{\"model\": \"m\"}", "missing field `input`"),
    ];
    for &(body, needle) in openai_cases {
        let message = openai_error(&post("/v1/embeddings", body), 422, "validation");
        assert!(message.contains(needle), "{message}");
    }
    let reply = post("/v1/embeddings", b"not json");
    assert_eq!(reply.status, 400, "{}", reply.text());
    // The wrong method: 405 with the allowed one, and the server still answers.
    let reply = served.call("GET", "/embed", "");
    assert!(tei_error(&reply, 405, "validation").contains("use POST"));
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(served.call("GET", "/health", "").status, 200);
}

#[test]
fn an_api_key_guards_every_route_but_health() {
    let key = "s3cr3t-key";
    let served = Served::start(&["--model", s(&model_dir("bert-tiny")), "--api-key", key]);
    let body = json!({ "inputs": "hola" }).to_string();
    let with = |auth: Option<&str>, path: &str, body: &str| {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let method = if body.is_empty() { "GET" } else { "POST" };
        request(&served.addr, method, path, &headers, body.as_bytes())
    };
    assert_eq!(with(None, "/health", "").status, 200);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cr3t-ke"),
        Some(key),
        Some("Basic s3cr3t-key"),
    ] {
        let reply = with(auth, "/embed", &body);
        assert!(tei_error(&reply, 401, "unauthorized").contains("Bearer"));
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(with(auth, "/metrics", "").status, 401);
        assert_eq!(with(auth, "/info", "").status, 401);
        let openai = with(auth, "/v1/embeddings", &json!({ "input": "a" }).to_string());
        openai_error(&openai, 401, "unauthorized");
    }
    let bearer = format!("Bearer {key}");
    let reply = with(Some(&bearer), "/embed", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The scheme's name is case-insensitive.
    assert_eq!(
        with(Some(&format!("bearer {key}")), "/embed", &body).status,
        200
    );
    assert_eq!(
        bits(&rows(&reply.json())),
        bits(&cli_vectors("bert-tiny", &["hola"], &["--normalize"]))
    );
    assert_eq!(with(Some(&bearer), "/metrics", "").status, 200);

    // The key from the environment, as DENSA_API_KEY.
    let served = Served::start_with_env(
        &["--model", s(&model_dir("bert-tiny"))],
        &[("DENSA_API_KEY", key)],
    );
    assert_eq!(served.call("POST", "/embed", &body).status, 401);
    let reply = request(
        &served.addr,
        "POST",
        "/embed",
        &[("Authorization", &bearer)],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200);
}

/// A server whose standard error was closed (its log's reader went away) keeps answering:
/// the log lines are lost, never the requests.
#[test]
fn a_closed_stderr_loses_log_lines_not_requests() {
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_densa"))
            .args([
                "serve",
                "--model",
                s(&model_dir("bert-tiny")),
                "--port",
                "0",
            ])
            .env_remove("DENSA_API_KEY")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok);
    let addr = lines
        .find_map(|l| {
            l.split("listening on http://")
                .nth(1)
                .map(|a| a.split(' ').next().unwrap().to_owned())
        })
        .unwrap();
    drop(lines);
    let body = json!({ "inputs": "hola" }).to_string();
    for _ in 0..3 {
        let reply = request(&addr, "POST", "/embed", &[], body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// The README's route table lists every route the server answers (`densa::serve::ROUTES`, the
/// one list the router, the metrics and the error messages are made from), and no other.
#[test]
fn the_readme_lists_every_route() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let readme = readme.unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `POST /") || l.starts_with("| `GET /"))
        .collect();
    for route in densa::serve::ROUTES.iter() {
        let row = format!("| `{} {}` |", route.method, route.path);
        assert!(
            rows.iter().any(|r| r.starts_with(&row)),
            "README lacks {row}"
        );
    }
    assert_eq!(rows.len(), densa::serve::ROUTES.len(), "{rows:#?}");
}
