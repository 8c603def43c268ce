//! `POST /predict` (TEI's sequence classification) and `POST /` and `POST /invocations`
//! (TEI's root route: one task, chosen by `--root`).

use super::embed::{
    check_count, check_direction, embed_request, internal, json_type, parse_body, similarity,
    tokenize_checked,
};
use super::errors::ApiError;
use super::tasks::{rerank_request, RerankRequest};
use super::{json_response, RequestFacts, RootTask, Server};
use crate::heads::{sigmoid, softmax};
use crate::tokenizer::Input;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// TEI's `/predict` body, with the `parameters` `huggingface_hub`'s `text_classification`
/// sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    inputs: Value,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    parameters: Option<PredictParameters>,
}

/// The Hugging Face inference API's text-classification parameters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PredictParameters {
    /// `softmax`, `sigmoid` or `none` (the logits).
    #[serde(default)]
    function_to_apply: Option<String>,
    /// The best `top_k` labels only.
    #[serde(default)]
    top_k: Option<usize>,
}

/// One sequence to classify: a text, or a pair (`[CLS] a [SEP] b [SEP]`).
#[derive(Debug, Clone, PartialEq)]
enum Sequence {
    Single(String),
    Pair(String, String),
}

/// How logits become scores.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scores {
    /// TEI's default: softmax over several labels, sigmoid of one (the classifier's own
    /// scores, as [`crate::PairScores::scores`]).
    Default,
    Softmax,
    Sigmoid,
    /// The logits as they are (`raw_scores`, or `function_to_apply: "none"`).
    Raw,
}

#[derive(Serialize)]
struct Prediction {
    score: f32,
    label: String,
}

const SHAPES: &str =
    "a string, a pair [string, string], or a batch [[string], [string, string], ...]";

/// TEI's `inputs` of `/predict`: a string is one text; a list of strings one sequence (one
/// string: a text, two: a pair); a list of lists a batch of them. Returns the sequences and
/// whether the request was a batch.
fn sequences(value: &Value) -> Result<(Vec<Sequence>, bool), ApiError> {
    let sequence = |items: &[Value], at: &str| -> Result<Sequence, ApiError> {
        let strings: Vec<&str> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    ApiError::validation(format!(
                        "inputs{at}[{i}] is {}, not a string ({SHAPES})",
                        json_type(item)
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        match strings.as_slice() {
            [text] => Ok(Sequence::Single(text.to_string())),
            [a, b] => Ok(Sequence::Pair(a.to_string(), b.to_string())),
            _ => Err(ApiError::validation(format!(
                "inputs{at} has {} strings; a sequence is one text or a pair of two ({SHAPES})",
                strings.len()
            ))),
        }
    };
    match value {
        Value::String(text) => Ok((vec![Sequence::Single(text.clone())], false)),
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::validation("inputs is an empty list"))
        }
        Value::Array(items) if items[0].is_array() => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Array(inner) => sequence(inner, &format!("[{i}]")),
                other => Err(ApiError::validation(format!(
                    "inputs[{i}] is {}, not a list of strings: a batch is a list of sequences ({SHAPES})",
                    json_type(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|batch| (batch, true)),
        Value::Array(items) => Ok((vec![sequence(items, "")?], false)),
        Value::Null => Err(ApiError::validation("inputs is missing")),
        other => Err(ApiError::validation(format!(
            "inputs is {}, not {SHAPES}",
            json_type(other)
        ))),
    }
}

impl Scores {
    fn of(raw_scores: bool, function: Option<&str>) -> Result<Scores, ApiError> {
        match (raw_scores, function) {
            (true, None | Some("none")) => Ok(Scores::Raw),
            (true, Some(other)) => Err(ApiError::validation(format!(
                "raw_scores asks for the logits, parameters.function_to_apply for {other:?}: send one"
            ))),
            (false, None) => Ok(Scores::Default),
            (false, Some("softmax")) => Ok(Scores::Softmax),
            (false, Some("sigmoid")) => Ok(Scores::Sigmoid),
            (false, Some("none")) => Ok(Scores::Raw),
            (false, Some(other)) => Err(ApiError::validation(format!(
                "parameters.function_to_apply is {other:?}; it is \"softmax\", \"sigmoid\" or \"none\""
            ))),
        }
    }

    /// The scores of one sequence's `logits` (`default`: the classifier's own).
    fn apply(self, logits: &[f32], default: &[f32]) -> Vec<f32> {
        match self {
            Scores::Default => default.to_vec(),
            Scores::Raw => logits.to_vec(),
            Scores::Sigmoid => logits.iter().map(|&l| sigmoid(l)).collect(),
            Scores::Softmax => softmax(logits),
        }
    }
}

/// `POST /predict`: `{"inputs", "raw_scores", "truncate", "parameters": {"function_to_apply",
/// "top_k"}}` → per sequence `[{"score", "label"}]`, best first (a list of those for a batch).
pub(crate) async fn predict(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: PredictRequest = parse_body(&server, body)?;
        predict_request(&server, request).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn predict_request(
    server: &Arc<Server>,
    request: PredictRequest,
) -> Result<Response, ApiError> {
    let (Some(classifier), Some(queue)) = (&server.models.reranker, &server.rerank_queue) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server has no sequence classifier: start it with --classifier DIR",
        ));
    };
    check_direction(request.truncation_direction.as_deref())?;
    let parameters = request.parameters.unwrap_or_default();
    let scores = Scores::of(request.raw_scores, parameters.function_to_apply.as_deref())?;
    if parameters.top_k == Some(0) {
        return Err(ApiError::validation("parameters.top_k must be at least 1"));
    }
    let (sequences, batch) = sequences(&request.inputs)?;
    check_count(server, sequences.len())?;
    let classifier = classifier.clone();
    let truncate = request.truncate;
    let tokenized = Server::blocking(move || {
        let encoder = classifier.encoder();
        let inputs: Vec<Input> = sequences
            .iter()
            .map(|s| match s {
                Sequence::Single(text) => Input::Text(text),
                Sequence::Pair(a, b) => Input::Pair(a, b),
            })
            .collect();
        tokenize_checked(encoder, &inputs, encoder.encoding(), truncate)
    })
    .await?;
    let facts = RequestFacts::of(&tokenized);
    let done = server.wait(queue.submit((), tokenized)?).await?;
    let labels = server.models.reranker.as_ref().expect("checked").labels();
    let predictions: Vec<Vec<Prediction>> = done
        .outputs
        .iter()
        .map(|output| {
            let values = scores.apply(&output.logits, &output.scores);
            let mut ranked: Vec<Prediction> = values
                .into_iter()
                .zip(labels)
                .map(|(score, label)| Prediction {
                    score,
                    label: label.clone(),
                })
                .collect();
            // Best first; equal scores keep label order.
            ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
            ranked.truncate(parameters.top_k.unwrap_or(usize::MAX));
            ranked
        })
        .collect();
    let body = if batch {
        serde_json::to_string(&predictions)
    } else {
        serde_json::to_string(&predictions[0])
    }
    .map_err(internal)?;
    Ok(json_response(body, facts.timed(&done)))
}

/// `POST /` and `POST /invocations` (TEI's SageMaker route): TEI answers them as its one
/// model's task; densa holds several, so `--root` says which. Whatever the task, a body of
/// TEI's `/rerank` shape (`query` and `texts`) is a rerank request, and one whose `inputs`
/// is `{"source_sentence", "sentences"}` a similarity request.
pub(crate) async fn tei_root(
    State(server): State<Arc<Server>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let value: Value = parse_body(&server, body)?;
        let is_rerank = value.get("query").is_some() && value.get("texts").is_some();
        let task = match (&value["inputs"], is_rerank) {
            (_, true) => RootTask::Rerank,
            (Value::Object(_), false) => RootTask::Similarity,
            _ => server.options.root,
        };
        match task {
            RootTask::Embed => embed_request(&server, body_of(value)?).await,
            RootTask::Similarity => similarity(&server, body_of(value)?).await,
            RootTask::Predict => predict_request(&server, body_of(value)?).await,
            RootTask::Rerank => {
                let request: RerankRequest = body_of(value)?;
                rerank_request(&server, request).await
            }
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A parsed JSON body read as a task's request (422 where its shape is wrong).
fn body_of<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<(Vec<Sequence>, bool), String> {
        sequences(&value).map_err(|e| e.message)
    }

    fn single(s: &str) -> Sequence {
        Sequence::Single(s.into())
    }

    #[test]
    fn inputs_are_read_as_tei_reads_them() {
        assert_eq!(parse(json!("a")), Ok((vec![single("a")], false)));
        assert_eq!(parse(json!(["a"])), Ok((vec![single("a")], false)));
        let pair = Sequence::Pair("a".into(), "b".into());
        assert_eq!(parse(json!(["a", "b"])), Ok((vec![pair.clone()], false)));
        assert_eq!(
            parse(json!([["a"], ["a", "b"]])),
            Ok((vec![single("a"), pair], true))
        );
        assert!(parse(json!(["a", "b", "c"]))
            .unwrap_err()
            .contains("3 strings"));
        assert!(parse(json!([["a"], "b"]))
            .unwrap_err()
            .contains("inputs[1]"));
        assert!(parse(json!([["a", 1]]))
            .unwrap_err()
            .contains("inputs[0][1]"));
        assert!(parse(json!([[]])).unwrap_err().contains("0 strings"));
        assert!(parse(json!([])).unwrap_err().contains("empty"));
        assert!(parse(json!(7)).unwrap_err().contains("a number"));
        assert!(parse(Value::Null).unwrap_err().contains("missing"));
    }

    #[test]
    fn scores_follow_the_hub_s_function_to_apply() {
        let logits = [1.0f32, -2.0, 0.5];
        // softmax and sigmoid by hand.
        let e: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        let softmax = Scores::of(false, Some("softmax"))
            .unwrap()
            .apply(&logits, &[]);
        for (got, want) in softmax.iter().zip(&e) {
            assert!((*got as f64 - want / sum).abs() < 1e-7);
        }
        let sigmoid = Scores::of(false, Some("sigmoid"))
            .unwrap()
            .apply(&logits, &[]);
        assert!((sigmoid[1] as f64 - 1.0 / (1.0 + 2f64.exp())).abs() < 1e-7);
        assert_eq!(Scores::of(true, None).unwrap().apply(&logits, &[]), logits);
        assert_eq!(Scores::of(false, Some("none")).unwrap(), Scores::Raw);
        assert!(Scores::of(false, Some("relu")).is_err());
        assert!(Scores::of(true, Some("softmax")).is_err());
    }
}
