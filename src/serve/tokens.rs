//! `POST /decode`, `POST /embed_all` and `POST /embed_sparse` (TEI): token ids back to text,
//! every token's last hidden state, and bge-m3's lexical weights.

use super::embed::{
    check_count, check_direction, check_ids, internal, parse_body, texts, tokenize_checked,
};
use super::errors::ApiError;
use super::{json_response, RequestFacts, Server};
use crate::tokenizer::Input;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// TEI's `/decode` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeRequest {
    ids: Value,
    #[serde(default = "yes")]
    skip_special_tokens: bool,
}

fn yes() -> bool {
    true
}

/// `POST /decode`: `{"ids": [id] | [[id]], "skip_special_tokens": true}` → `[str]`, one text
/// per list of ids, as the tokenizer decodes them. An id outside the vocabulary is a 422
/// naming it.
pub(crate) async fn decode(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: DecodeRequest = parse_body(&server, body)?;
        let lists = match super::embed::EmbedInputs::parse(&request.ids, "ids")? {
            super::embed::EmbedInputs::Ids(lists) => lists,
            super::embed::EmbedInputs::Texts(_) => return Err(ApiError::validation(
                "ids is text; /decode takes token ids: a list of integers or a list of such lists",
            )),
        };
        check_count(&server, lists.len())?;
        let encoder = &server.models.encoder;
        let mut decoded = Vec::with_capacity(lists.len());
        for (i, ids) in lists.iter().enumerate() {
            check_ids(encoder, &format!("ids {i}"), ids)?;
            decoded.push(
                encoder
                    .tokenizer()
                    .decode(ids, request.skip_special_tokens)?,
            );
        }
        let facts = RequestFacts {
            inputs: lists.len(),
            tokens: lists.iter().map(Vec::len).sum(),
            ..Default::default()
        };
        let body = serde_json::to_string(&decoded).map_err(internal)?;
        Ok(json_response(body, facts))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// TEI's `/embed_all` and `/embed_sparse` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedAllRequest {
    inputs: Value,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
}

/// `POST /embed_all`: `{"inputs", "truncate", "prompt_name"}` → `[[[f32]]]`: per input, the
/// last hidden state of each of its tokens (special and prompt tokens included), before any
/// pooling. Runs on the encoder's threads beside the batched embedding queue.
pub(crate) async fn embed_all(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let tokenized = tokenized_texts(&server, body).await?;
        let facts = RequestFacts::of(&tokenized);
        let encoder = server.models.encoder.clone();
        let body = Server::blocking(move || {
            let hidden = encoder.last_hidden_state(&tokenized)?;
            let h = encoder.model().config.hidden_size;
            let mut rows = hidden.chunks_exact(h.max(1));
            let states: Vec<Vec<&[f32]>> = tokenized
                .iter()
                .map(|t| rows.by_ref().take(t.ids.len()).collect())
                .collect();
            serde_json::to_string(&states).map_err(internal)
        })
        .await?;
        Ok::<_, ApiError>(json_response(body, facts))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /embed_sparse`: `{"inputs", "truncate", "prompt_name"}` → `[[{"index", "value"}]]`:
/// per input, bge-m3's lexical weights (token id and weight, ascending ids; the model folder
/// must hold bge-m3's heads beside the trunk). Concurrent requests share passes (the bge-m3
/// queue).
pub(crate) async fn embed_sparse(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let Some(queue) = &server.m3_queue else {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "the served model has no sparse head: /embed_sparse needs a bge-m3 folder (sparse_linear.safetensors and colbert_linear.safetensors beside the trunk; tools/convert_to_safetensors.py converts the published .pt files)",
            ));
        };
        let tokenized = tokenized_texts(&server, body).await?;
        let facts = RequestFacts::of(&tokenized);
        let done = server.wait(queue.submit((), tokenized)?).await?;
        let sparse: Vec<Vec<Value>> = done
            .outputs
            .iter()
            .map(|o| {
                o.sparse
                    .iter()
                    .map(|(index, value)| serde_json::json!({ "index": index, "value": value }))
                    .collect()
            })
            .collect();
        let body = serde_json::to_string(&sparse).map_err(internal)?;
        Ok(json_response(body, facts.timed(&done)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The texts of an `/embed_all` or `/embed_sparse` body, tokenized on the blocking pool (the
/// prompt named, truncation as asked).
async fn tokenized_texts(
    server: &Arc<Server>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<crate::tokenizer::Tokenized>, ApiError> {
    let request: EmbedAllRequest = parse_body(server, body)?;
    check_direction(request.truncation_direction.as_deref())?;
    let (texts, _) = texts(&request.inputs, "inputs")?;
    check_count(server, texts.len())?;
    let encoder = server.models.encoder.clone();
    let encoding = (encoder.encoding_builder())
        .prompt_named(request.prompt_name)
        .build()?;
    let truncate = request.truncate;
    Server::blocking(move || {
        let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
        tokenize_checked(&encoder, &inputs, &encoding, truncate)
    })
    .await
}
