//! `densa serve`: embeddings, reranking, search and answers over HTTP, with the request and
//! response bodies of Hugging Face text-embeddings-inference (`/`, `/invocations`, `/embed`,
//! `/similarity`, `/embed_all`, `/embed_sparse`, `/predict`, `/rerank`, `/tokenize`, `/decode`, `/info`,
//! `/health`), OpenAI (`/v1/embeddings`, `/v1/models`) and Cohere/Jina (`/v1/rerank`), so their
//! clients work unchanged.
//!
//! Each model sits behind a [`Batcher`]: concurrent requests are merged into one packed forward
//! pass (a vector never depends on what it was batched with). Requests are bounded (body
//! bytes, inputs, tokens per input, queued tokens, time); past a bound the answer is a JSON
//! error naming it. With an API key every route but `/health` needs `Authorization: Bearer`.
//! No route reads or writes a file a request names.
//!
//! ```text
//! request → auth → body limit → parse JSON → tokenize (blocking pool) → Batcher queue
//!         → worker: one forward pass for many requests → rows back → JSON → log + metrics
//! ```

mod embed;
mod errors;
mod hybrid;
mod metrics;
mod predict;
mod tasks;
mod tokens;

use crate::batching::{BatchLimits, Batcher, Done, Pending};
use crate::encoder::{Encoder, Encoding};
use crate::error::{Error, Result};
use crate::heads::m3::M3Task;
use crate::heads::{M3Heads, Reader, Reranker};
use crate::pipeline::{AnswerOptions, QaPipeline};
use crate::retrieval::Index;
use crate::tokenizer::Tokenized;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use errors::{ApiError, ErrorKind};
use metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's limits and settings (the `densa serve` flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Batching: the wait for company, the queue's bound in tokens (each pass holds at most
    /// the models' own `max_batch_tokens`).
    pub limits: BatchLimits,
    /// Largest request body, in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Most texts (or pairs) in one request (413 past it).
    pub max_client_batch_size: usize,
    /// Longest a request may wait and run (503 past it; its queued work is withdrawn).
    pub request_timeout: Duration,
    /// Most requests handled at once (bodies read, parsed, tokenized, queued); more get 503.
    pub max_concurrent_requests: usize,
    /// Required as `Authorization: Bearer <key>` on every route but `/health`.
    pub api_key: Option<String>,
    /// The name `/info` and `/v1/embeddings` report.
    pub model_id: String,
    /// One log line per request on standard error.
    pub log_requests: bool,
    /// What `POST /` and `POST /invocations` answer (TEI answers its one model's task).
    pub root: RootTask,
    /// The defaults of `/answer` (a request can change `read_top`, `rerank_top`, `top_k`);
    /// its `search` is also how `/search` searches the index.
    pub answer: AnswerOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: BatchLimits::default(),
            max_body_bytes: 2 * 1024 * 1024,
            max_client_batch_size: 128,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 512,
            api_key: None,
            model_id: "densa".into(),
            log_requests: true,
            root: RootTask::Embed,
            answer: AnswerOptions::default(),
        }
    }
}

/// The task of TEI's root route. Whatever it is, a `/rerank` body (`query`, `texts`) is
/// reranked and a `/similarity` body (`inputs: {source_sentence, sentences}`) compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootTask {
    /// `/embed` with the embedding model.
    Embed,
    /// `/similarity`: TEI's `TASK=sentence-similarity`.
    Similarity,
    /// `/predict` with the sequence classifier.
    Predict,
    /// `/rerank` with the cross-encoder.
    Rerank,
}

impl RootTask {
    pub const NAMES: [&'static str; 4] = ["embed", "similarity", "predict", "rerank"];

    pub fn from_name(name: &str) -> Option<RootTask> {
        Some(match name {
            "embed" => RootTask::Embed,
            "similarity" => RootTask::Similarity,
            "predict" => RootTask::Predict,
            "rerank" => RootTask::Rerank,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The models a server holds: an embedding model, and optionally a cross-encoder, an index
/// (searched with the embedding model as question encoder) and a reader over it.
pub struct Models {
    pub encoder: Arc<Encoder>,
    /// How `/search` and `/answer` encode questions.
    pub query_encoding: Encoding,
    pub reranker: Option<Arc<Reranker>>,
    pub index: Option<Arc<Index>>,
    pub reader: Option<Arc<Reader>>,
    /// bge-m3's sparse and ColBERT heads on `encoder` (`/embed_sparse`), when its folder has
    /// them.
    pub m3: Option<Arc<M3Heads>>,
}

/// A running server's state: the models, their queues and the counters. Build one with
/// [`Server::new`], route it with [`Server::router`], run it with [`serve`].
pub struct Server {
    models: Models,
    options: ServeOptions,
    embed_queue: Batcher<Encoder>,
    rerank_queue: Option<Batcher<Reranker>>,
    /// bge-m3's outputs (`/embed_sparse`, `/search` by mode), when the model has its heads.
    m3_queue: Option<Batcher<M3Task>>,
    pipeline: Option<QaPipeline>,
    /// `/answer`s computing now (see [`ANSWER_SLOTS`]).
    answer_slots: Arc<tokio::sync::Semaphore>,
    /// Requests being handled now, bounded by `ServeOptions::max_concurrent_requests`.
    in_flight: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
    started: Instant,
}

/// The most `/answer` requests computed at once (each holds the cores for its whole pipeline).
pub const ANSWER_SLOTS: usize = 4;

impl Server {
    /// Starts the batching queues. A reader needs an index; `--root predict` or `rerank` a
    /// classifier (reranking one of one label).
    pub fn new(models: Models, options: ServeOptions) -> Result<Self> {
        match (options.root, &models.reranker) {
            (RootTask::Predict | RootTask::Rerank, None) => {
                return Err(Error::InvalidInput(format!(
                    "--root {} answers with a sequence classifier: give one with --classifier DIR",
                    options.root.name()
                )))
            }
            // /answer reranks by a relevance score: the logit of one label, or the last of two
            // (binary relevance); a classifier of more labels has none.
            (_, Some(reranker)) if models.reader.is_some() && reranker.labels().len() > 2 => {
                return Err(Error::InvalidInput(format!(
                    "/answer reranks with the cross-encoder, but the classifier has {} labels ({}): give a relevance cross-encoder (one label, or two) with --reader, or no --reader",
                    reranker.labels().len(),
                    reranker.labels().join(", ")
                )))
            }
            (RootTask::Rerank, Some(reranker)) if reranker.labels().len() != 1 => {
                return Err(Error::InvalidInput(format!(
                    "--root rerank needs a cross-encoder of one label; the classifier has {} ({})",
                    reranker.labels().len(),
                    reranker.labels().join(", ")
                )))
            }
            _ => {}
        }
        if let Some(index) = &models.index {
            let dim = models.encoder.dim_of(&models.query_encoding);
            if dim != index.dim() {
                return Err(Error::InvalidInput(format!(
                    "the model gives {dim}-dimensional question vectors, the index holds {}-dimensional ones (wrong model for this index?)",
                    index.dim()
                )));
            }
        }
        let pipeline = match (&models.reader, &models.index) {
            (Some(reader), Some(index)) => Some(QaPipeline {
                question_encoder: models.encoder.clone(),
                question_encoding: models.query_encoding.clone(),
                index: index.clone(),
                reranker: models.reranker.clone(),
                reader: reader.clone(),
            }),
            (Some(_), None) => {
                return Err(Error::InvalidInput(
                    "a reader answers from an index's passages: give an index too".into(),
                ))
            }
            _ => None,
        };
        let embed_queue = Batcher::new(models.encoder.clone(), options.limits)?;
        let max_concurrent = options.max_concurrent_requests;
        let rerank_queue = match &models.reranker {
            Some(reranker) => Some(Batcher::new(reranker.clone(), options.limits)?),
            None => None,
        };
        let m3_queue = match &models.m3 {
            Some(heads) => {
                let task = M3Task {
                    encoder: models.encoder.clone(),
                    heads: heads.clone(),
                };
                Some(Batcher::new(Arc::new(task), options.limits)?)
            }
            None => None,
        };
        Ok(Server {
            models,
            options,
            embed_queue,
            rerank_queue,
            m3_queue,
            pipeline,
            answer_slots: Arc::new(tokio::sync::Semaphore::new(ANSWER_SLOTS)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            metrics: Metrics::default(),
            started: Instant::now(),
        })
    }

    /// The routes ([`ROUTES`]), with authentication, the body limit, the request log and the
    /// metrics.
    pub fn router(self: Arc<Self>) -> Router {
        let routes = ROUTES
            .iter()
            .fold(Router::new(), |router, route| {
                router.route(route.path, (route.handler)())
            })
            .fallback(not_found);
        routes
            .layer(middleware::from_fn_with_state(self.clone(), authenticate))
            .layer(middleware::from_fn_with_state(self.clone(), log_and_count))
            .layer(DefaultBodyLimit::max(self.options.max_body_bytes))
            .with_state(self)
    }

    /// The facts `/info` reports and start-up prints.
    pub fn info(&self) -> serde_json::Value {
        let encoder = &self.models.encoder;
        let st = encoder.sentence_transformers();
        let prompts: serde_json::Map<String, serde_json::Value> = st
            .prompts
            .iter()
            .map(|(name, text)| (name.clone(), text.clone().into()))
            .collect();
        let limits = self.options.limits;
        serde_json::json!({
            "model_id": self.options.model_id,
            "model_type": "embedding",
            "model_dtype": encoder.model().precision.name(),
            "dimension": encoder.dim(),
            "pooling": encoder.pooling().name(),
            "normalize": encoder.normalizes(),
            "prompts": prompts,
            "default_prompt_name": st.default_prompt_name,
            "max_input_length": encoder.tokenizer().max_length(),
            "max_batch_tokens": encoder.max_batch_tokens(),
            "max_wait_us": limits.max_wait.as_micros() as u64,
            "max_queued_tokens": limits.max_queued_tokens,
            "max_client_batch_size": self.options.max_client_batch_size,
            "max_body_bytes": self.options.max_body_bytes,
            "threads": encoder.threads(),
            "root": self.options.root.name(),
            "reranker": self.models.reranker.as_ref().map(|r| serde_json::json!({
                "labels": r.labels(),
                "model_dtype": r.encoder().model().precision.name(),
                "max_input_length": r.encoder().tokenizer().max_length(),
            })),
            "index": self.models.index.as_ref().map(|i| serde_json::json!({
                "passages": i.len(), "dimension": i.dim(),
            })),
            "reader": self.models.reader.is_some(),
            "routes": ROUTES.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// Stops the queues: calls already queued still run, new ones get 503.
    pub fn close(&self) {
        self.embed_queue.close();
        if let Some(queue) = &self.rerank_queue {
            queue.close();
        }
    }

    /// Waits for a queued call, within the request timeout (then its work is withdrawn).
    async fn wait<T>(&self, pending: Pending<T>) -> Result<Done<T>, ApiError> {
        let timeout = self.options.request_timeout;
        match tokio::time::timeout(timeout, pending).await {
            Ok(done) => done.map_err(ApiError::from),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request did not finish within the request timeout ({} ms)",
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// Runs blocking work (tokenizing, searching, reading) off the async threads.
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backend",
                "internal error: a worker panicked",
            ))
        })
    }
}

/// What a handler tells the request log and the metrics about its request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestFacts {
    pub inputs: usize,
    pub tokens: usize,
    pub queued: Duration,
    pub compute: Duration,
}

impl RequestFacts {
    /// The inputs and tokens of a tokenized request.
    pub(crate) fn of(tokenized: &[Tokenized]) -> Self {
        RequestFacts {
            inputs: tokenized.len(),
            tokens: tokenized.iter().map(|t| t.ids.len()).sum(),
            ..Default::default()
        }
    }

    /// These facts with the queue and compute times of the call that ran them.
    pub(crate) fn timed<T>(self, done: &Done<T>) -> Self {
        RequestFacts {
            queued: done.queued,
            compute: done.compute,
            ..self
        }
    }
}

/// A JSON response carrying its request's facts for the log.
pub(crate) fn json_response(body: String, facts: RequestFacts) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    response.extensions_mut().insert(facts);
    response
}

/// Every route but `/health` needs the API key, when there is one. The comparison takes the
/// same time wherever the keys differ.
async fn authenticate(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    let Some(key) = &server.options.api_key else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        // The scheme's name is case-insensitive (RFC 9110).
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"Bearer "))
        .map(|v| &v[7..]);
    match given {
        Some(given) if constant_time_eq(given, key.as_bytes()) => next.run(request).await,
        _ => {
            let error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs an API key: send Authorization: Bearer <key>",
            );
            let shape = route_shape(request.uri().path());
            error.in_shape(shape).into_response()
        }
    }
}

/// `a == b`, in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        differ |= usize::from(x ^ y);
    }
    std::hint::black_box(differ) == 0
}

fn route_shape(path: &str) -> errors::Shape {
    if path.starts_with("/v1/") || path.starts_with("/v2/") {
        errors::Shape::OpenAi
    } else {
        errors::Shape::Tei
    }
}

/// One route: its path, its method and its handler.
pub struct Route {
    pub path: &'static str,
    pub method: Method,
    handler: fn() -> MethodRouter<Arc<Server>>,
}

impl Route {
    const fn new(
        path: &'static str,
        method: Method,
        handler: fn() -> MethodRouter<Arc<Server>>,
    ) -> Self {
        Route {
            path,
            method,
            handler,
        }
    }
}

/// Every route the server answers: the router, the metrics' route names, the 404 and 405
/// messages and the README's table all follow this list.
pub static ROUTES: [Route; 19] = [
    Route::new("/embed", Method::POST, || post(embed::tei_embed)),
    // TEI's root route (and its SageMaker twin) answers as the task --root names.
    Route::new("/", Method::POST, || post(predict::tei_root)),
    Route::new("/invocations", Method::POST, || post(predict::tei_root)),
    Route::new("/similarity", Method::POST, || post(embed::tei_similarity)),
    Route::new("/v1/embeddings", Method::POST, || {
        post(embed::openai_embeddings)
    }),
    Route::new("/embed_all", Method::POST, || post(tokens::embed_all)),
    Route::new("/embed_sparse", Method::POST, || post(tokens::embed_sparse)),
    Route::new("/tokenize", Method::POST, || post(embed::tokenize)),
    Route::new("/decode", Method::POST, || post(tokens::decode)),
    Route::new("/predict", Method::POST, || post(predict::predict)),
    Route::new("/rerank", Method::POST, || post(tasks::rerank)),
    Route::new("/v1/rerank", Method::POST, || post(tasks::v1_rerank)),
    // Cohere's v2 client (`cohere.ClientV2`) posts the same body here.
    Route::new("/v2/rerank", Method::POST, || post(tasks::v1_rerank)),
    Route::new("/v1/models", Method::GET, || get(openai_models)),
    Route::new("/search", Method::POST, || post(tasks::search)),
    Route::new("/answer", Method::POST, || post(tasks::answer)),
    Route::new("/info", Method::GET, || get(info)),
    Route::new("/metrics", Method::GET, || get(metrics_text)),
    Route::new("/health", Method::GET, || get(health)),
];

/// The known route of `path` (`None` for an unknown path).
fn route_of(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.path == path)
}

/// A route's name for the log and the metrics: a fixed set, so unknown paths do not grow them.
fn route_name(path: &str) -> &'static str {
    route_of(path).map_or("other", |route| route.path)
}

/// One log line and the metrics of each request.
async fn log_and_count(
    State(server): State<Arc<Server>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = route_name(request.uri().path());
    let method = request.method().clone();
    // Past the concurrency bound a request is refused before its body is read.
    let permit = server.in_flight.clone().try_acquire_owned();
    let mut response = match permit {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the server is handling {} requests, its limit (--max-concurrent-requests); retry later",
                server.options.max_concurrent_requests
            ),
        )
        .in_shape(route_shape(route))
        .into_response(),
    };
    // A wrong method is refused inside axum, with an empty body: answer in our words.
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.extensions().get::<ErrorKind>().is_none()
    {
        let verb = route_of(route).map_or(Method::POST, |r| r.method.clone());
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "validation",
            format!("{method} is not allowed on {route}: use {verb}"),
        )
        .in_shape(route_shape(route))
        .into_response();
        // HTTP requires a 405 to say which methods are allowed.
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let latency = started.elapsed();
    let facts = response
        .extensions()
        .get::<RequestFacts>()
        .copied()
        .unwrap_or_default();
    let error = response.extensions().get::<ErrorKind>().map(|k| k.0);
    let status = response.status().as_u16();
    server
        .metrics
        .record(route, status, error, latency, (facts.inputs, facts.tokens));
    if server.options.log_requests && route != "/metrics" && route != "/health" {
        let line = serde_json::json!({
            "method": method.as_str(), "route": route, "status": status, "error": error,
            "inputs": facts.inputs, "tokens": facts.tokens,
            "queue_ms": facts.queued.as_secs_f64() * 1e3,
            "compute_ms": facts.compute.as_secs_f64() * 1e3,
            "total_ms": latency.as_secs_f64() * 1e3,
        });
        log_line(&line.to_string());
    }
    response
}

/// Writes one line to standard error; a closed or full stderr loses the line, never the
/// request (`eprintln!` would panic).
pub fn log_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `GET /v1/models`: OpenAI's model list, the one model this server embeds with.
async fn openai_models(State(server): State<Arc<Server>>) -> Response {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(server.started.elapsed().as_secs());
    let body = serde_json::json!({
        "object": "list",
        "data": [{
            "id": server.options.model_id,
            "object": "model",
            "created": created,
            "owned_by": "densa",
        }],
    });
    json_response(body.to_string(), RequestFacts::default())
}

async fn health() -> &'static str {
    "ok"
}

async fn info(State(server): State<Arc<Server>>) -> Response {
    json_response(server.info().to_string(), RequestFacts::default())
}

async fn metrics_text(State(server): State<Arc<Server>>) -> Response {
    let mut queues = vec![("embed", server.embed_queue.stats())];
    if let Some(queue) = &server.rerank_queue {
        queues.push(("rerank", queue.stats()));
    }
    let text = server.metrics.render(&queues, server.started.elapsed());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let list = |method: Method| -> String {
        let paths: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.method == method)
            .map(|r| r.path)
            .collect();
        format!("{method} {}", paths.join(", "))
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {path} ({}; {})",
            list(Method::POST),
            list(Method::GET)
        ),
    )
    .in_shape(route_shape(&path))
    .into_response()
}

/// Serves `server` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// requests in flight finish, and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<Server>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = server.clone().router();
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    server.close();
    result
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let interrupt = async {
        // If the handler cannot be installed, only SIGTERM stops the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
