//! `POST /embed` (TEI), `POST /v1/embeddings` (OpenAI) and `POST /tokenize` (TEI).

use super::errors::{parse_json, ApiError, Shape};
use super::{json_response, RequestFacts, Server};
use crate::encoder::{Encoder, Encoding};
use crate::tokenizer::{Input, Tokenized};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The request body parsed into `T`, or the error that stopped it: over the size limit 413
/// (naming it), broken JSON 400, the wrong shape 422.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    server: &Server,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| match rejection.status().as_u16() {
        413 => ApiError::too_large(format!(
            "the request body is larger than the server's limit of {} bytes (--max-body-bytes)",
            server.options.max_body_bytes
        )),
        _ => ApiError::new(rejection.status(), "validation", rejection.body_text()),
    })?;
    parse_json(&body)
}

/// `field`'s texts: a string (`single`) or a non-empty list of strings.
pub(crate) fn texts(value: &Value, field: &str) -> Result<(Vec<String>, bool), ApiError> {
    match value {
        Value::String(text) => Ok((vec![text.clone()], true)),
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::validation(format!("{field} is an empty list")))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Number(_) | Value::Array(_) if field == "input" || field == "inputs" => {
                    Err(ApiError::validation(format!(
                        "{field}[{i}] is a token id or a list of them among texts: a request's inputs are all texts or all token ids"
                    )))
                }
                other => Err(ApiError::validation(format!(
                    "{field}[{i}] is {}, not a string",
                    json_type(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| (texts, false)),
        Value::Null => Err(ApiError::validation(format!("{field} is missing"))),
        other => Err(ApiError::validation(format!(
            "{field} is {}, not a string or a list of strings",
            json_type(other)
        ))),
    }
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Refuses too many inputs (413, naming the limit).
pub(crate) fn check_count(server: &Server, n: usize) -> Result<(), ApiError> {
    let limit = server.options.max_client_batch_size;
    if n > limit {
        return Err(ApiError::too_large(format!(
            "{n} inputs in one request; this server takes at most {limit} (--max-client-batch-size)"
        )));
    }
    Ok(())
}

/// Refuses an input the tokenizer had to cut, unless truncation was asked for (413).
fn check_lengths(
    tokenized: &[Tokenized],
    truncate: bool,
    max_length: usize,
) -> Result<(), ApiError> {
    match tokenized.iter().position(|t| t.truncated) {
        Some(i) if !truncate => Err(ApiError::too_large(format!(
            "input {i} is longer than the model's {max_length} tokens (max_input_length); send \"truncate\": true to cut it"
        ))),
        _ => Ok(()),
    }
}

/// `inputs` tokenized with `encoding`, an input the tokenizer had to cut refused unless
/// `truncate` (413).
pub(crate) fn tokenize_checked(
    encoder: &Encoder,
    inputs: &[Input<'_>],
    encoding: &Encoding,
    truncate: bool,
) -> Result<Vec<Tokenized>, ApiError> {
    let tokenized = encoder.tokenize_on_caller_thread(inputs, encoding)?;
    check_lengths(&tokenized, truncate, encoder.tokenizer().max_length())?;
    Ok(tokenized)
}

/// What an embedding request embeds: texts, or token ids (the pre-tokenized form OpenAI's,
/// TEI's, vLLM's and llama.cpp's servers take: one list of ids, or a list of such lists),
/// used as given: special tokens included, no prompt added.
pub(crate) enum EmbedInputs {
    Texts(Vec<String>),
    Ids(Vec<Vec<u32>>),
}

impl EmbedInputs {
    /// `field`'s inputs: a string, a list of strings, a list of token ids, or a list of lists.
    pub(crate) fn parse(value: &Value, field: &str) -> Result<Self, ApiError> {
        let ids_of = |items: &[Value], what: &str| -> Result<Vec<u32>, ApiError> {
            if items.is_empty() {
                return Err(ApiError::validation(format!(
                    "{what} is an empty list of token ids"
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(j, item)| {
                    item.as_u64()
                        .and_then(|id| u32::try_from(id).ok())
                        .ok_or_else(|| {
                            ApiError::validation(format!(
                                "{what}[{j}] is {item}, not a token id (an integer from 0)"
                            ))
                        })
                })
                .collect()
        };
        match value {
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
                Ok(EmbedInputs::Ids(vec![ids_of(items, field)?]))
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_array) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    ids_of(
                        item.as_array().map_or(&[], Vec::as_slice),
                        &format!("{field}[{i}]"),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map(EmbedInputs::Ids),
            _ => texts(value, field).map(|(texts, _)| EmbedInputs::Texts(texts)),
        }
    }
}

/// Refuses (422) an id outside the model's embedding table, naming `what` holds it.
pub(crate) fn check_ids(encoder: &Encoder, what: &str, ids: &[u32]) -> Result<(), ApiError> {
    let vocab = encoder.model().config.vocab_size;
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(&id) => Err(ApiError::validation(format!(
            "{what} has token id {id}, outside the model's vocabulary of {vocab} ids (0 to {})",
            vocab.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// Token ids as the model's inputs: every id inside the embedding table (422 naming the
/// first that is not), longer than the model's length refused unless `truncate` (413).
fn tokenized_ids(
    encoder: &Encoder,
    inputs: Vec<Vec<u32>>,
    truncate: bool,
) -> Result<Vec<Tokenized>, ApiError> {
    let max_length = encoder.tokenizer().max_length();
    let mut tokenized = Vec::with_capacity(inputs.len());
    for (i, mut ids) in inputs.into_iter().enumerate() {
        check_ids(encoder, &format!("input {i}"), &ids)?;
        let truncated = ids.len() > max_length;
        ids.truncate(max_length);
        let tokens = ids
            .iter()
            .map(|&id| encoder.tokenizer().id_to_token(id).unwrap_or_default())
            .collect();
        tokenized.push(Tokenized {
            type_ids: vec![0; ids.len()],
            ids,
            tokens,
            truncated,
        });
    }
    check_lengths(&tokenized, truncate, max_length)?;
    Ok(tokenized)
}

/// The vectors of an embedding request's inputs: texts tokenized with `encoding`'s prompt,
/// token ids as given.
pub(crate) async fn embed_inputs(
    server: &Arc<Server>,
    inputs: EmbedInputs,
    encoding: Encoding,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, RequestFacts), ApiError> {
    let ids = match inputs {
        EmbedInputs::Texts(texts) => return embed_texts(server, texts, encoding, truncate).await,
        EmbedInputs::Ids(ids) => ids,
    };
    check_count(server, ids.len())?;
    let tokenized = tokenized_ids(&server.models.encoder, ids, truncate)?;
    let facts = RequestFacts::of(&tokenized);
    let done = server
        .wait(server.embed_queue.submit(encoding, tokenized)?)
        .await?;
    let facts = facts.timed(&done);
    Ok((done.outputs, facts))
}

/// Tokenizes (off the async threads), queues and waits: the vectors of `texts`.
pub(crate) async fn embed_texts(
    server: &Arc<Server>,
    texts: Vec<String>,
    encoding: Encoding,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, RequestFacts), ApiError> {
    check_count(server, texts.len())?;
    let encoder = server.models.encoder.clone();
    let for_tokens = encoding.clone();
    let tokenized = Server::blocking(move || {
        let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
        tokenize_checked(&encoder, &inputs, &for_tokens, truncate)
    })
    .await?;
    let facts = RequestFacts::of(&tokenized);
    let pending = server.embed_queue.submit(encoding, tokenized)?;
    let done = server.wait(pending).await?;
    let facts = facts.timed(&done);
    Ok((done.outputs, facts))
}

/// TEI's `/embed` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbedRequest {
    inputs: Value,
    #[serde(default = "yes")]
    normalize: bool,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

fn yes() -> bool {
    true
}

/// Truncation cuts the end of a text; TEI's `"Left"` is refused rather than ignored.
pub(crate) fn check_direction(direction: Option<&str>) -> Result<(), ApiError> {
    match direction {
        None | Some("Right") | Some("right") => Ok(()),
        Some(other) => Err(ApiError::validation(format!(
            "truncation_direction {other:?}: this server cuts texts on the right only"
        ))),
    }
}

/// `POST /embed`: `{"inputs": str | [str], "normalize", "truncate", "prompt_name",
/// "dimensions"}` → `[[f32]]`, one vector per input. Without `prompt_name`, the folder's
/// `default_prompt_name` applies (as in TEI).
pub(crate) async fn tei_embed(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: EmbedRequest = parse_body(&server, body)?;
        embed_request(&server, request).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// TEI's `/similarity` body (what `huggingface_hub`'s `sentence_similarity` posts).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarityRequest {
    inputs: SimilarityInputs,
    #[serde(default)]
    parameters: Option<SimilarityParameters>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimilarityInputs {
    source_sentence: String,
    sentences: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SimilarityParameters {
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
}

/// `POST /similarity`: `{"inputs": {"source_sentence", "sentences"}, "parameters":
/// {"truncate", "prompt_name"}}` → `[f32]`, the cosine similarity of the source sentence's
/// vector with each sentence's (the server's encoding, `prompt_name` applied to all).
pub(crate) async fn tei_similarity(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: SimilarityRequest = parse_body(&server, body)?;
        similarity(&server, request).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn similarity(
    server: &Arc<Server>,
    request: SimilarityRequest,
) -> Result<Response, ApiError> {
    let parameters = request.parameters.unwrap_or_default();
    check_direction(parameters.truncation_direction.as_deref())?;
    if request.inputs.sentences.is_empty() {
        return Err(ApiError::validation("inputs.sentences is an empty list"));
    }
    let encoding = (server.models.encoder.encoding_builder())
        .prompt_named(parameters.prompt_name)
        .build()?;
    let mut texts = vec![request.inputs.source_sentence];
    texts.extend(request.inputs.sentences);
    let (vectors, facts) = embed_texts(server, texts, encoding, parameters.truncate).await?;
    let scores: Vec<f32> = vectors[1..]
        .iter()
        .map(|v| cosine(&vectors[0], v))
        .collect();
    let body = serde_json::to_string(&scores).map_err(internal)?;
    Ok(json_response(body, facts))
}

/// `a·b / (|a| |b|)` in f64 (0 where a vector is all zeros).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator > 0.0 {
        (dot / denominator) as f32
    } else {
        0.0
    }
}

/// An `/embed` request's vectors, as TEI answers it.
pub(crate) async fn embed_request(
    server: &Arc<Server>,
    request: EmbedRequest,
) -> Result<Response, ApiError> {
    check_direction(request.truncation_direction.as_deref())?;
    let inputs = EmbedInputs::parse(&request.inputs, "inputs")?;
    if matches!(inputs, EmbedInputs::Ids(_)) && request.prompt_name.is_some() {
        return Err(ApiError::validation(
            "prompt_name applies to texts; token ids are embedded as given",
        ));
    }
    // TEI's `normalize`: unit vectors out, normalised once (not again when the folder's
    // Normalize module already did).
    let mut encoding = (server.models.encoder.encoding_builder())
        .unit_vectors(request.normalize)
        .prompt_named(request.prompt_name);
    if let Some(dim) = request.dimensions {
        encoding = encoding.truncate_dim(Some(dim));
    }
    let encoding = encoding.build()?;
    let (vectors, facts) = embed_inputs(server, inputs, encoding, request.truncate).await?;
    let body = serde_json::to_string(&vectors).map_err(internal)?;
    Ok(json_response(body, facts))
}

pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "backend",
        format!("internal error: {error}"),
    )
}

/// OpenAI's `/v1/embeddings` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAiRequest {
    input: Value,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)] // accepted as OpenAI's clients send it; not used
    user: Option<String>,
}

#[derive(Serialize)]
struct OpenAiResponse<'a> {
    object: &'static str,
    data: Vec<OpenAiEmbedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct OpenAiEmbedding {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValues,
}

/// A vector as numbers, or as base64 of its little-endian f32 bytes.
#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValues {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// `POST /v1/embeddings`: OpenAI's request and response. The vectors are the server's
/// default encoding (its prompt and normalisation), `dimensions` truncating them.
pub(crate) async fn openai_embeddings(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: OpenAiRequest = parse_body(&server, body)?;
        let base64 = match request.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "encoding_format {other:?}: use \"float\" or \"base64\""
                )))
            }
        };
        let inputs = EmbedInputs::parse(&request.input, "input")?;
        let encoder = &server.models.encoder;
        let default = encoder.encoding();
        // With `dimensions`, unit vectors stay unit (normalised again after the cut), as
        // OpenAI's are.
        let encoding = match request.dimensions {
            None => default.clone(),
            dim => encoder
                .encoding_builder()
                .truncate_dim(dim)
                .unit_vectors(default.gives_unit_vectors())
                .build()?,
        };
        let (vectors, facts) = embed_inputs(&server, inputs, encoding, false).await?;
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| OpenAiEmbedding {
                object: "embedding",
                index,
                embedding: if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                    EmbeddingValues::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    EmbeddingValues::Float(vector)
                },
            })
            .collect();
        let response = OpenAiResponse {
            object: "list",
            data,
            model: request.model.as_deref().unwrap_or(&server.options.model_id),
            usage: Usage {
                prompt_tokens: facts.tokens,
                total_tokens: facts.tokens,
            },
        };
        let body = serde_json::to_string(&response).map_err(internal)?;
        Ok(json_response(body, facts))
    };
    result
        .await
        .unwrap_or_else(|e| e.in_shape(Shape::OpenAi).into_response())
}

/// TEI's `/tokenize` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    inputs: Value,
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    prompt_name: Option<String>,
}

#[derive(Serialize)]
struct Token<'a> {
    id: u32,
    text: &'a str,
    special: bool,
}

/// `POST /tokenize`: `{"inputs", "add_special_tokens", "prompt_name"}` → per input, its
/// tokens as the model sees them (`id`, `text`, `special`), truncated to the model's length.
pub(crate) async fn tokenize(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: TokenizeRequest = parse_body(&server, body)?;
        let (texts, _) = texts(&request.inputs, "inputs")?;
        check_count(&server, texts.len())?;
        let encoder = server.models.encoder.clone();
        let encoding = match request.prompt_name {
            Some(name) => encoder
                .encoding_builder()
                .prompt_named(Some(name))
                .build()?,
            None => encoder.encoding().clone(),
        };
        let keep_special = request.add_special_tokens;
        let (body, facts) = Server::blocking(move || {
            let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
            let tokenized = encoder.tokenize_on_caller_thread(&inputs, &encoding)?;
            let tokenizer = encoder.tokenizer();
            let lists: Vec<Vec<Token>> = tokenized
                .iter()
                .map(|t| {
                    t.ids
                        .iter()
                        .zip(&t.tokens)
                        .map(|(&id, text)| Token {
                            id,
                            text,
                            special: tokenizer.is_special(id),
                        })
                        .filter(|token| keep_special || !token.special)
                        .collect()
                })
                .collect();
            let facts = RequestFacts {
                inputs: tokenized.len(),
                tokens: tokenized.iter().map(|t| t.ids.len()).sum(),
                ..Default::default()
            };
            Ok((serde_json::to_string(&lists).map_err(internal)?, facts))
        })
        .await?;
        Ok::<_, ApiError>(json_response(body, facts))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
