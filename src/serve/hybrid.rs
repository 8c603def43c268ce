//! `POST /search` by bge-m3's outputs: an index built with a bge-m3 folder, served with one as
//! `--model`, searched in `"mode"` dense, sparse or hybrid (`Index::search_hybrid`).

use super::embed::{internal, tokenize_checked};
use super::errors::ApiError;
use super::{json_response, RequestFacts, Server};
use crate::heads::M3Heads;
use crate::retrieval::hybrid::HybridWeights;
use crate::retrieval::Index;
use crate::tokenizer::Input;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// The most candidates a request may ask each of the dense and sparse searches for.
const MAX_CANDIDATES: usize = 10_000;

/// What a `/search` request asks of bge-m3's outputs.
pub(crate) struct M3Search {
    pub mode: String,
    pub weights: Option<[f64; 3]>,
    pub candidates: Option<usize>,
}

/// The heads to search `index` with, when it holds bge-m3's outputs and the served model has
/// the heads; a mode other than dense without them is a 422 saying why.
pub(crate) fn heads_for(
    server: &Server,
    index: &Index,
    mode: &str,
) -> Result<Option<Arc<M3Heads>>, ApiError> {
    if !["dense", "sparse", "hybrid"].contains(&mode) {
        return Err(ApiError::validation(format!(
            "mode is {mode:?}; it is \"dense\", \"sparse\" or \"hybrid\""
        )));
    }
    match (&server.models.m3, index.has_m3()) {
        (Some(heads), true) => Ok(Some(heads.clone())),
        _ if mode == "dense" => Ok(None),
        (None, _) => Err(ApiError::validation(format!(
            "mode {mode:?} searches bge-m3's lexical weights: the served --model is not a bge-m3 folder"
        ))),
        (Some(_), false) => Err(ApiError::validation(format!(
            "mode {mode:?} searches bge-m3's lexical weights: the index was not built with a bge-m3 folder"
        ))),
    }
}

/// Each query's `k` best passages by `search`'s mode, with each hit's three scores.
pub(crate) async fn search_m3(
    server: &Server,
    index: Arc<Index>,
    queries: Vec<String>,
    (k, truncate): (usize, bool),
    search: M3Search,
) -> Result<Response, ApiError> {
    let weights = match (search.mode.as_str(), search.weights) {
        ("dense", None) => HybridWeights {
            dense: 1.0,
            sparse: 0.0,
            colbert: 0.0,
        },
        ("sparse", None) => HybridWeights {
            dense: 0.0,
            sparse: 1.0,
            colbert: 0.0,
        },
        (_, None) => HybridWeights::default(),
        ("hybrid", Some([dense, sparse, colbert])) => HybridWeights {
            dense,
            sparse,
            colbert,
        },
        (mode, Some(_)) => {
            return Err(ApiError::validation(format!(
                "weights apply to mode \"hybrid\", not {mode:?}"
            )))
        }
    };
    weights.check()?;
    let candidates = search.candidates.unwrap_or(100);
    if candidates == 0 || candidates > MAX_CANDIDATES {
        return Err(ApiError::validation(format!(
            "candidates is {candidates}; it must be between 1 and {MAX_CANDIDATES}"
        )));
    }
    let queue = server
        .m3_queue
        .as_ref()
        .expect("heads_for checked the heads");
    let encoder = server.models.encoder.clone();
    let encoding = server.models.query_encoding.clone();
    let (tokenized, queries) = Server::blocking(move || {
        let inputs: Vec<Input> = queries.iter().map(|q| Input::Text(q)).collect();
        Ok((
            tokenize_checked(&encoder, &inputs, &encoding, truncate)?,
            queries,
        ))
    })
    .await?;
    let facts = RequestFacts::of(&tokenized);
    // The questions' outputs from the bge-m3 queue (shared passes), then the searches.
    let done = server.wait(queue.submit((), tokenized)?).await?;
    let facts = facts.timed(&done);
    let options = server.options.answer.search;
    let outputs = done.outputs;
    let body = Server::blocking(move || {
        let results = queries
            .iter()
            .zip(&outputs)
            .map(|(query, q)| {
                let hits = index.search_hybrid(q, k, candidates, &weights, &options)?;
                let hits: Vec<Value> = hits
                    .iter()
                    .enumerate()
                    .map(|(rank, (hit, scores))| {
                        let mut value = hit.to_json(rank + 1);
                        value["scores"] = json!({
                            "dense": scores.dense, "sparse": scores.sparse, "colbert": scores.colbert,
                        });
                        value
                    })
                    .collect();
                Ok(json!({ "query": query, "hits": hits }))
            })
            .collect::<Result<Vec<Value>, ApiError>>()?;
        serde_json::to_string(&results).map_err(internal)
    })
    .await?;
    Ok(json_response(body, facts))
}
