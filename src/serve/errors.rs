//! The server's errors: a status, a kind (for clients and metrics) and densa's message, written
//! in Hugging Face TEI's shape (`{"error", "error_type"}`) or, on `/v1/` routes, OpenAI's
//! (`{"error": {"message", "type", "param", "code"}}`).

use crate::error::Error;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Which clients' error shape a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Tei,
    OpenAi,
}

/// A request that failed: what the client is told.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// `validation`, `payload_too_large`, `overloaded`, `timeout`, `unauthorized`,
    /// `not_found`, `unhealthy` or `backend`.
    pub kind: &'static str,
    pub message: String,
    pub shape: Shape,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            shape: Shape::Tei,
        }
    }

    /// 422: the request is well-formed JSON but asks for something invalid.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    /// 413: a limit of the server (body size, inputs, tokens) is passed; the message names it.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// The same error in `shape`.
    pub fn in_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidInput(_) | Error::Tokenizer(_) => ApiError::validation(message),
            Error::Overloaded { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message)
            }
            Error::ShutDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", message),
            Error::Internal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.shape {
            Shape::Tei => serde_json::json!({ "error": self.message, "error_type": self.kind }),
            Shape::OpenAi => serde_json::json!({ "error": {
                "message": self.message,
                "type": if self.status.is_server_error() { "server_error" } else { "invalid_request_error" },
                "param": null,
                "code": self.kind,
            }}),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorKind(self.kind));
        response
    }
}

/// The kind of a failed response, for the request log and the metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorKind(pub &'static str);

/// A JSON body parsed into `T`: syntax errors (and invalid UTF-8) are 400, a body of the wrong
/// shape (a missing field, a wrong type) 422, each naming what is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("invalid JSON body: {e}");
        match e.classify() {
            serde_json::error::Category::Data => ApiError::validation(message),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "validation", message),
        }
    })
}
