//! `POST /rerank` (TEI), `POST /v1/rerank` (Cohere's and Jina's body), `POST /search` and
//! `POST /answer`: the steps after embedding.

use super::embed::{
    check_count, check_direction, embed_texts, internal, parse_body, texts, tokenize_checked,
};
use super::errors::ApiError;
use super::{json_response, RequestFacts, Server};
use crate::tokenizer::Input;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// TEI's `/rerank` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RerankRequest {
    query: String,
    texts: Value,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    truncation_direction: Option<String>,
}

#[derive(Serialize)]
struct Ranked {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

fn not_loaded(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("this server has no {what}"),
    )
}

/// `POST /rerank`: `{"query", "texts", "raw_scores", "return_text", "truncate"}` →
/// `[{"index", "score"(, "text")}]`, best first. The score is the cross-encoder's sigmoid
/// (its logit with `raw_scores`), as sentence-transformers' `CrossEncoder.predict`.
pub(crate) async fn rerank(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: RerankRequest = parse_body(&server, body)?;
        rerank_request(&server, request).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A `/rerank` request's ranking, as TEI answers it.
pub(crate) async fn rerank_request(
    server: &Server,
    request: RerankRequest,
) -> Result<Response, ApiError> {
    check_direction(request.truncation_direction.as_deref())?;
    let (passages, _) = texts(&request.texts, "texts")?;
    let (mut ranked, passages, facts) = rank(
        server,
        request.query,
        passages,
        request.truncate,
        request.raw_scores,
    )
    .await?;
    if request.return_text {
        for r in &mut ranked {
            r.text = Some(passages[r.index].clone());
        }
    }
    let body = serde_json::to_string(&ranked).map_err(internal)?;
    Ok(json_response(body, facts))
}

/// The cross-encoder's score of `(query, passage)` for every passage, best first (stable:
/// equal scores keep input order): the sigmoid, or the logit with `raw_scores`. Returns the
/// passages back and the request's facts.
async fn rank(
    server: &Server,
    query: String,
    passages: Vec<String>,
    truncate: bool,
    raw_scores: bool,
) -> Result<(Vec<Ranked>, Vec<String>, RequestFacts), ApiError> {
    let (Some(reranker), Some(queue)) = (&server.models.reranker, &server.rerank_queue) else {
        return Err(not_loaded("cross-encoder: start it with --reranker DIR"));
    };
    // As TEI: a classifier of several labels has no one relevance score to rank by.
    if reranker.labels().len() != 1 {
        return Err(ApiError::new(
            StatusCode::FAILED_DEPENDENCY,
            "backend",
            format!(
                "the loaded classifier has {} labels ({}); reranking needs a cross-encoder with one (a relevance logit): use /predict",
                reranker.labels().len(),
                reranker.labels().join(", ")
            ),
        ));
    }
    check_count(server, passages.len())?;
    let reranker = reranker.clone();
    let (tokenized, passages) = Server::blocking(move || {
        let encoder = reranker.encoder();
        let inputs: Vec<Input> = passages.iter().map(|t| Input::Pair(&query, t)).collect();
        let tokenized = tokenize_checked(encoder, &inputs, encoder.encoding(), truncate)?;
        Ok((tokenized, passages))
    })
    .await?;
    let facts = RequestFacts::of(&tokenized);
    let done = server.wait(queue.submit((), tokenized)?).await?;
    let mut ranked: Vec<Ranked> = done
        .outputs
        .iter()
        .enumerate()
        .map(|(index, scores)| Ranked {
            index,
            score: if raw_scores {
                scores.logits[0]
            } else {
                scores.scores[0]
            },
            text: None,
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok((ranked, passages, facts.timed(&done)))
}

/// Cohere's and Jina's `/v1/rerank` body (what llama.cpp's server, vLLM and infinity take).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V1RerankRequest {
    #[serde(default)]
    model: Option<String>,
    query: String,
    documents: Value,
    #[serde(default)]
    top_n: Option<usize>,
    #[serde(default)]
    return_documents: bool,
}

/// The documents of a `/v1/rerank` body: strings, or Cohere's `{"text": ...}` objects.
fn documents(value: &Value) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = value else {
        return texts(value, "documents").map(|(texts, _)| texts);
    };
    if items.is_empty() {
        return Err(ApiError::validation("documents is an empty list"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(text.clone()),
            Value::Object(fields) => match fields.get("text") {
                Some(Value::String(text)) => Ok(text.clone()),
                _ => Err(ApiError::validation(format!(
                    "documents[{i}] is an object without a \"text\" string"
                ))),
            },
            other => Err(ApiError::validation(format!(
                "documents[{i}] is {}, not a string or {{\"text\": ...}}",
                super::embed::json_type(other)
            ))),
        })
        .collect()
}

/// `POST /v1/rerank`: `{"model", "query", "documents", "top_n", "return_documents"}` →
/// `{"model", "results": [{"index", "relevance_score"(, "document": {"text"})}], "usage":
/// {"total_tokens"}}`, best first: the same scores as `/rerank` (the cross-encoder's sigmoid),
/// at most `top_n`. Errors in OpenAI's shape, as on every `/v1/` route.
pub(crate) async fn v1_rerank(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: V1RerankRequest = parse_body(&server, body)?;
        if request.top_n == Some(0) {
            return Err(ApiError::validation("top_n must be at least 1"));
        }
        let passages = documents(&request.documents)?;
        let (mut ranked, passages, facts) =
            rank(&server, request.query, passages, true, false).await?;
        ranked.truncate(request.top_n.unwrap_or(usize::MAX));
        let results: Vec<Value> = ranked
            .iter()
            .map(|r| {
                let mut result = json!({ "index": r.index, "relevance_score": r.score });
                if request.return_documents {
                    result["document"] = json!({ "text": passages[r.index] });
                }
                result
            })
            .collect();
        let model = request
            .model
            .unwrap_or_else(|| server.options.model_id.clone());
        let body = json!({
            "model": model,
            "results": results,
            "usage": { "total_tokens": facts.tokens },
        });
        Ok(json_response(body.to_string(), facts))
    };
    result
        .await
        .unwrap_or_else(|e| e.in_shape(super::errors::Shape::OpenAi).into_response())
}

/// `/search`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: Value,
    #[serde(default = "ten")]
    k: usize,
    #[serde(default)]
    truncate: bool,
    /// With an index and a model of bge-m3: "dense", "sparse" or "hybrid".
    #[serde(default)]
    mode: Option<String>,
    /// "hybrid"'s weights of the dense, sparse and ColBERT scores.
    #[serde(default)]
    weights: Option<[f64; 3]>,
    /// Candidates from each of the dense and sparse searches.
    #[serde(default)]
    candidates: Option<usize>,
}

fn ten() -> usize {
    10
}

/// The most hits a query may ask `/search` for (each carries its passage's text).
const MAX_SEARCH_K: usize = 1000;

/// `POST /search`: `{"query": str | [str], "k": 10, "truncate"}` → per query
/// `{"query", "hits": [{"rank", "id", "score", "title", "text"}]}`, as `densa search --json`;
/// with an index and a model of bge-m3, `"mode"` (`dense`, `sparse`, `hybrid`), `"weights"`
/// and `"candidates"` as `densa search --mode`, each hit with its `"scores"`.
pub(crate) async fn search(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: SearchRequest = parse_body(&server, body)?;
        let Some(index) = server.models.index.clone() else {
            return Err(not_loaded("index: start it with --index DIR"));
        };
        if request.k == 0 || request.k > MAX_SEARCH_K {
            return Err(ApiError::validation(format!(
                "k is {}; it must be between 1 and {MAX_SEARCH_K}",
                request.k
            )));
        }
        let (queries, _) = texts(&request.query, "query")?;
        check_count(&server, queries.len())?;
        let mode = request.mode.clone().unwrap_or_else(|| "dense".into());
        if super::hybrid::heads_for(&server, &index, &mode)?.is_some() {
            let search = super::hybrid::M3Search {
                mode,
                weights: request.weights,
                candidates: request.candidates,
            };
            let (k, truncate) = (request.k, request.truncate);
            return super::hybrid::search_m3(&server, index, queries, (k, truncate), search).await;
        }
        if request.weights.is_some() || request.candidates.is_some() {
            return Err(ApiError::validation(
                "weights and candidates apply to bge-m3's modes (an index and a --model of bge-m3)",
            ));
        }
        let encoding = server.models.query_encoding.clone();
        let (vectors, facts) =
            embed_texts(&server, queries.clone(), encoding, request.truncate).await?;
        let (k, search) = (request.k, server.options.answer.search);
        let vectors: Vec<f32> = vectors.concat();
        let results = Server::blocking(move || {
            let hits = index.search_with(&vectors, k, &search)?;
            let results: Vec<Value> = queries
                .iter()
                .zip(hits)
                .map(|(query, hits)| {
                    let hits: Vec<Value> = hits
                        .iter()
                        .enumerate()
                        .map(|(rank, h)| h.to_json(rank + 1))
                        .collect();
                    json!({ "query": query, "hits": hits })
                })
                .collect();
            Ok(results)
        })
        .await?;
        Ok(json_response(Value::from(results).to_string(), facts))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `/answer`'s body: the question, and optionally how many passages each stage keeps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerRequest {
    question: String,
    #[serde(default)]
    read_top: Option<usize>,
    #[serde(default)]
    rerank_top: Option<usize>,
    #[serde(default)]
    top_k: Option<usize>,
}

/// `POST /answer`: `{"question", "read_top", "rerank_top", "top_k"}` → `{"question",
/// "answers": [{"answer", "score", "start", "end", "passage_id", "title", "retrieval_score",
/// "rerank_score"}], "ms": {"retrieve", "rerank", "read"}}`, as `densa answer --json`.
pub(crate) async fn answer(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: AnswerRequest = parse_body(&server, body)?;
        if server.pipeline.is_none() {
            return Err(not_loaded("reader: start it with --index DIR --reader DIR"));
        }
        let mut options = server.options.answer.clone();
        options.read_top = request.read_top.unwrap_or(options.read_top);
        options.rerank_top = request.rerank_top.unwrap_or(options.rerank_top);
        options.top_k = request.top_k.unwrap_or(options.top_k);
        // Passages reranked or read are a request's inputs: the same bound.
        let limit = server.options.max_client_batch_size;
        for (name, value) in [
            ("read_top", options.read_top),
            ("rerank_top", options.rerank_top),
            ("top_k", options.top_k),
        ] {
            if value > limit {
                return Err(ApiError::too_large(format!(
                    "{name} is {value}; this server takes at most {limit} (--max-client-batch-size)"
                )));
            }
        }
        // An answer runs off the queue, and a timed-out one runs to its end: at most
        // ANSWER_SLOTS at once, the others refused rather than piled up.
        let Ok(slot) = server.answer_slots.clone().try_acquire_owned() else {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!(
                    "{} answers are being computed; retry later",
                    super::ANSWER_SLOTS
                ),
            ));
        };
        let question = request.question;
        let timeout = server.options.request_timeout;
        let worker = server.clone();
        let work = Server::blocking(move || {
            let _slot = slot;
            let pipeline = worker.pipeline.as_ref().expect("checked above");
            let started = std::time::Instant::now();
            let result = pipeline.answer(&question, &options)?;
            let body = result.to_json(&question);
            let facts = RequestFacts {
                inputs: 1,
                compute: started.elapsed(),
                ..Default::default()
            };
            Ok((body.to_string(), facts))
        });
        let (body, facts) = tokio::time::timeout(timeout, work).await.map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the answer took longer than the request timeout ({} ms)",
                    timeout.as_millis()
                ),
            )
        })??;
        Ok(json_response(body, facts))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
