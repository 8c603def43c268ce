//! `densa serve`: the flags, the models, the runtime; the server itself is `densa::serve`.

use crate::ann::SearchFlags;
use crate::args::side_prompt;
use crate::{open_encoder, run_options, EncodeArgs, ModelArgs, Side};
use densa::batching::DEFAULT_MAX_QUEUED_TOKENS;
use densa::serve::{Models, RootTask, ServeOptions, Server};
use densa::{BatchLimits, Encoder, Encoding, Error, Reader, Reranker};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// The embedding model (also the question encoder of --index).
    #[command(flatten)]
    model: ModelArgs,
    /// The default encoding of /embed and /v1/embeddings (a request's prompt_name,
    /// normalize and dimensions override it on /embed).
    #[command(flatten)]
    encode: EncodeArgs,
    /// Truncation length in tokens (default: the model's).
    #[arg(long)]
    max_length: Option<usize>,
    /// A sequence classifier (*ForSequenceClassification) for /predict; with one label (a
    /// cross-encoder) also for /rerank, /v1/rerank and /answer.
    #[arg(long, visible_alias = "classifier")]
    reranker: Option<PathBuf>,
    /// What TEI's root route (POST / and /invocations) answers: embed, similarity, predict
    /// (needs --classifier) or rerank (needs --reranker). A /rerank or /similarity body is
    /// answered as such whatever the task.
    #[arg(long, default_value = "embed", value_parser = clap::builder::PossibleValuesParser::new(RootTask::NAMES))]
    root: String,
    /// An index written by densa index, for /search (questions encoded by --model).
    #[arg(long)]
    index: Option<PathBuf>,
    /// How /search and /answer search the index (its graph, if it has one, or --exact).
    #[command(flatten)]
    search: SearchFlags,
    /// A reader (*ForQuestionAnswering) for /answer (needs --index).
    #[arg(long)]
    reader: Option<PathBuf>,
    /// Address to bind: loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Longest the oldest queued request waits for others to join its forward pass.
    #[arg(long, default_value_t = 100)]
    max_wait_us: u64,
    /// Most tokens waiting to run; a request that would pass it gets 429 with Retry-After.
    /// (Each forward pass holds at most --max-batch-tokens.)
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUED_TOKENS)]
    max_queued_tokens: usize,
    /// Largest request body in bytes (413 past it).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Most texts (or pairs, or queries) in one request (413 past it).
    #[arg(long, default_value_t = 128)]
    max_client_batch_size: usize,
    /// Longest a request may wait and run, in milliseconds (503 past it).
    #[arg(long, default_value_t = 60_000)]
    request_timeout_ms: u64,
    /// Most requests handled at once (bodies read, parsed, tokenized or queued); more get 503.
    #[arg(long, default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "DENSA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The model name /info and /v1/embeddings report (default: the folder's name).
    #[arg(long)]
    model_id: Option<String>,
    /// No log line per request.
    #[arg(long)]
    quiet: bool,
    /// Worker threads of the HTTP runtime (0: one per core); the models' threads are --threads.
    #[arg(long, default_value_t = 0)]
    http_threads: usize,
}

pub(crate) fn serve(args: ServeArgs) -> Result<(), Error> {
    let models = load_models(&args)?;
    let options = ServeOptions {
        limits: BatchLimits {
            max_wait: Duration::from_micros(args.max_wait_us),
            max_queued_tokens: args.max_queued_tokens,
        },
        max_body_bytes: args.max_body_bytes,
        max_client_batch_size: args.max_client_batch_size,
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        max_concurrent_requests: args.max_concurrent_requests,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        model_id: args
            .model_id
            .clone()
            .unwrap_or_else(|| folder_name(&args.model.model)),
        log_requests: !args.quiet,
        root: RootTask::from_name(&args.root).expect("clap checked the name"),
        answer: densa::AnswerOptions {
            search: args.search.options(),
            ..Default::default()
        },
    };
    let has_key = options.api_key.is_some();
    let server = Arc::new(Server::new(models, options)?);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.http_threads > 0 {
        runtime.worker_threads(args.http_threads);
    }
    let runtime = runtime
        .enable_all()
        .thread_name("densa-http")
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot start the HTTP runtime: {e}")))?;
    let address = format!("{}:{}", args.host, args.port);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| Error::InvalidInput(format!("cannot listen on {address}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Error::io(&address, e))?;
        eprintln!("densa serve: {}", server.info());
        eprintln!(
            "densa serve: listening on http://{bound}{}",
            if has_key { " (API key required)" } else { "" }
        );
        densa::serve::serve(listener, server, densa::serve::shutdown_signal())
            .await
            .map_err(|e| Error::io(&address, e))?;
        densa::serve::log_line("densa serve: stopped (requests in flight finished)");
        Ok(())
    })
}

/// The models `--model`, `--reranker`, `--index` and `--reader` name, each run with the same
/// flags (threads, precision, tokens per pass).
fn load_models(args: &ServeArgs) -> Result<Models, Error> {
    let model = &args.model;
    // A served model's passes are bounded by tokens alone (--max-batch-tokens), whether its
    // queue merged them or /answer calls it directly: no second bound by sequence count.
    let batch_size = usize::MAX;
    let encoder = open_encoder(model, &args.encode, Side::Any, args.max_length, batch_size)?;
    let same_run = |dir: &Path| {
        run_options(
            &ModelArgs {
                model: dir.to_owned(),
                run: model.run,
            },
            None,
            batch_size,
        )
    };
    let reranker = match &args.reranker {
        Some(dir) => Some(Arc::new(Reranker::from_dir(dir, same_run(dir))?)),
        None => None,
    };
    let reader = match &args.reader {
        Some(dir) => Some(Arc::new(Reader::from_dir(dir, same_run(dir))?)),
        None => None,
    };
    let index = match &args.index {
        Some(dir) => Some(Arc::new(args.search.open(dir)?)),
        None => None,
    };
    let query_encoding = query_encoding(args, &encoder)?;
    if let Some(index) = &index {
        for mismatch in index.encoding_mismatches_with(&encoder, &query_encoding) {
            eprintln!("densa serve: warning: {mismatch}");
        }
    }
    let m3 = match densa::heads::M3Heads::present(&model.model) {
        true => Some(Arc::new(densa::heads::M3Heads::from_dir(
            &model.model,
            &encoder,
        )?)),
        false => None,
    };
    Ok(Models {
        m3,
        encoder: Arc::new(encoder),
        query_encoding,
        reranker,
        index,
        reader,
    })
}

/// How `/search` and `/answer` encode questions: as densa search does, the folder's "query"
/// prompt unless the flags name one; without an index, the server's default encoding.
fn query_encoding(args: &ServeArgs, encoder: &Encoder) -> Result<Encoding, Error> {
    if args.index.is_none() {
        return Ok(encoder.encoding().clone());
    }
    let prompt = side_prompt(&args.encode, Side::Query, encoder.sentence_transformers());
    encoder.encoding_builder().prompt(prompt).build()
}

/// The model's name for `/info` and `/v1/embeddings`: its folder's.
fn folder_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "densa".into())
}
