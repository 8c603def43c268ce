//! `densa index`, `densa search` and `densa eval`.

use crate::ann::{build_graph, GraphArgs, SearchFlags};
use crate::args::RunArgs;
use crate::{
    advance, describe_encoding, open_encoder, parse_shard, print_stdout, progress_bar, run_options,
    EncodeArgs, ModelArgs, Side,
};
use densa::heads::M3Heads;
use densa::io::output::{write_output, Pending};
use densa::io::records::{read_records, Record};
use densa::retrieval::hybrid::{HybridHit, HybridWeights};
use densa::retrieval::{
    answer_scores, read_qa_pairs, reranked_gold_ranks, Chunking, PassageEncoding, RetrievalMetrics,
    VectorKind,
};
use densa::{AnswerOptions, Encoder, Error, Index, QaPipeline, Reader, Reranker};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How documents are cut into passages (`densa chunk`, `densa index --documents`).
#[derive(clap::Args)]
pub(crate) struct ChunkArgs {
    /// DPR's way: disjoint passages of N words.
    #[arg(long, conflicts_with_all = ["max_tokens", "overlap_tokens"])]
    words: Option<usize>,
    /// Most tokens per passage as the index encodes it (title, prompt and special tokens
    /// counted; default: the model's max length, so that no passage is truncated).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Tokens (of whole words) consecutive passages share.
    #[arg(long, default_value_t = 0)]
    overlap_tokens: usize,
}

impl ChunkArgs {
    fn chunking(&self) -> Chunking {
        match self.words {
            Some(n) => Chunking::Words(n),
            None => Chunking::Tokens {
                max_tokens: self.max_tokens,
                overlap: self.overlap_tokens,
            },
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct ChunkCommandArgs {
    /// The context (passage) encoder the passages are cut for.
    #[command(flatten)]
    model: ModelArgs,
    /// Documents: JSON lines {"id", "title"?, "text"} (id a string or a number; default the
    /// line number).
    #[arg(long)]
    input: PathBuf,
    /// Passages: JSON lines {"id": "<doc id>#<n>", "doc_id", "title", "text", "start", "end"}.
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    chunk: ChunkArgs,
    /// How passages will be encoded (their prompt counts against --max-tokens).
    #[command(flatten)]
    encode: EncodeArgs,
    /// As densa index --passage-template (the joined text counts against --max-tokens).
    #[arg(long)]
    passage_template: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct IndexArgs {
    /// The context (passage) encoder.
    #[command(flatten)]
    model: ModelArgs,
    /// JSON lines with "text" and optional "id" and "title"; passages are encoded as the
    /// pair (title, text).
    #[arg(
        long,
        required_unless_present = "documents",
        conflicts_with = "documents"
    )]
    passages: Option<PathBuf>,
    /// Documents (JSON lines {"id", "title"?, "text"}) to cut into passages first, as densa
    /// chunk does (--words, --max-tokens, --overlap-tokens).
    #[arg(long)]
    documents: Option<PathBuf>,
    #[command(flatten)]
    chunk: ChunkArgs,
    /// Encode passages longer than the model's max length truncated to it (without this, such
    /// passages are an error that names them).
    #[arg(long)]
    truncate: bool,
    /// How the vectors are stored for search: f32, f16 (half the bytes), int8 (codes a
    /// quarter of the bytes, calibrated per dimension) or binary (sign bits, 1/32); int8 and
    /// binary candidates are rescored against the float32 vectors.
    #[arg(long, value_parser = VectorKind::parse, default_value = "f32")]
    vectors: VectorKind,
    /// Also build an HNSW graph for approximate search (over the --vectors kind), once the
    /// index is complete.
    #[arg(long, value_parser = ["hnsw"])]
    ann: Option<String>,
    #[command(flatten)]
    graph: GraphArgs,
    /// Index folder (created; an interrupted build there is resumed).
    #[arg(long)]
    output: PathBuf,
    /// How passages are encoded (default prompt: the folder's "passage" or "document").
    #[command(flatten)]
    encode: EncodeArgs,
    /// One text per passage made from this template ("{title}. {text}"), instead of the
    /// (title, text) pair.
    #[arg(long)]
    passage_template: Option<String>,
    /// Passages per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Passages per chunk: the unit written at once, resumed and sharded.
    #[arg(long, default_value_t = 4096)]
    chunk_size: usize,
    /// Encode only every N-th chunk, starting at I (I/N, I from 0), for N processes on N
    /// machines. The folder becomes shard I's own index (searched alone, or served with the
    /// others by densa.ray); all shards' chunks/ copied into one folder and this command
    /// rerun there without --shard assemble the whole collection's index.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// With --shard: only encode the shard's chunks, for a merged index (no shard index).
    #[arg(long, requires = "shard")]
    encode_only: bool,
}

#[derive(clap::Args)]
pub(crate) struct SearchArgs {
    /// The question encoder (its vectors must match the index's).
    #[command(flatten)]
    model: ModelArgs,
    /// Index folder written by densa index.
    #[arg(long)]
    index: PathBuf,
    /// How questions are encoded (default prompt: the folder's "query").
    #[command(flatten)]
    encode: EncodeArgs,
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    #[command(flatten)]
    search: SearchFlags,
    /// dense (the index's vectors), or with an index built by a bge-m3 folder: sparse (lexical
    /// weights) or hybrid (dense and sparse candidates scored by --weights, ColBERT included).
    /// On such an index every mode encodes questions as bge-m3 does (normalised [CLS]).
    #[arg(long, default_value = "dense", value_parser = ["dense", "sparse", "hybrid"])]
    mode: String,
    /// --mode hybrid's weights of the dense, sparse and ColBERT scores (FlagEmbedding's
    /// weights_for_different_modes).
    #[arg(long, default_value = "0.4,0.2,0.4", value_parser = parse_weights)]
    weights: HybridWeights,
    /// --mode sparse and hybrid: candidates taken from each of the dense and sparse searches
    /// before exact scoring.
    #[arg(long, default_value_t = 100)]
    candidates: usize,
    /// Questions, one per line (- for standard input).
    #[arg(long)]
    input: Option<String>,
    /// JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// A question (instead of --input).
    question: Option<String>,
}

/// `D,S,C`: the dense, sparse and ColBERT weights.
fn parse_weights(text: &str) -> Result<HybridWeights, String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|e| format!("{v:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let [dense, sparse, colbert] = values[..] else {
        return Err(format!(
            "{text:?}: three weights, dense,sparse,colbert (e.g. 0.4,0.2,0.4)"
        ));
    };
    let weights = HybridWeights {
        dense,
        sparse,
        colbert,
    };
    weights.check().map_err(|e| e.to_string())?;
    Ok(weights)
}

/// bge-m3's heads of the model folder `dir` on `encoder`, when the folder has them.
fn m3_heads(dir: &Path, encoder: &Encoder) -> Result<Option<Arc<M3Heads>>, Error> {
    match M3Heads::present(dir) {
        true => Ok(Some(Arc::new(M3Heads::from_dir(dir, encoder)?))),
        false => Ok(None),
    }
}

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// The question encoder.
    #[arg(long)]
    model_q: PathBuf,
    /// The context encoder (to encode --passages; not needed with --index).
    #[arg(long)]
    model_ctx: Option<PathBuf>,
    /// JSON lines {"question": ..., "passage_id": ...}.
    #[arg(long)]
    qa: PathBuf,
    /// Passages to rank (JSON lines, as for densa index), encoded now with --model-ctx.
    #[arg(long, conflicts_with = "index")]
    passages: Option<PathBuf>,
    /// An index built with the context encoder, instead of --passages.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Cut-offs for recall@k.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 5, 20])]
    top_k: Vec<usize>,
    /// How questions are encoded (default prompt: the folder's "query").
    #[command(flatten)]
    encode: EncodeArgs,
    /// The prompt of --passages (default: the folder's "passage" or "document"); they are
    /// pooled, truncated and normalised as the questions.
    #[arg(long)]
    passage_prompt: Option<String>,
    /// As --passage-template of densa index, for --passages.
    #[arg(long)]
    passage_template: Option<String>,
    /// As --truncate of densa index, for --passages.
    #[arg(long)]
    truncate: bool,
    /// An index built by a bge-m3 folder, evaluated with one: also report each mode ("modes":
    /// dense, sparse, hybrid with these weights of the dense, sparse and ColBERT scores).
    #[arg(long, default_value = "0.4,0.2,0.4", value_parser = parse_weights)]
    weights: HybridWeights,
    /// With "modes": candidates from each of the dense and sparse searches, scored exactly.
    #[arg(long, default_value_t = 100)]
    candidates: usize,
    /// A cross-encoder: also report recall@k once it rescores the retriever's best
    /// --rerank-top passages ("reranked").
    #[arg(long)]
    rerank: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    rerank_top: usize,
    /// A reader: also report exact match and F1 of the best answer against each
    /// question's "answers" (after reranking when --rerank is given).
    #[arg(long)]
    reader: Option<PathBuf>,
    /// Passages the reader reads per question.
    #[arg(long, default_value_t = 3)]
    read_top: usize,
    /// How the index is searched (an index with a graph or codes is ranked as its search
    /// ranks: the gold passage's position among the first 100 hits).
    #[command(flatten)]
    search: SearchFlags,
    #[command(flatten)]
    run: RunArgs,
}

pub(crate) fn index(args: IndexArgs) -> Result<(), Error> {
    let encoder = open_encoder(
        &args.model,
        &args.encode,
        Side::Passage,
        None,
        args.batch_size,
    )?;
    describe_encoding("densa: passages", &encoder);
    let bar = progress_bar("passages");
    let start = Instant::now();
    let options = densa::IndexOptions {
        chunk_size: args.chunk_size,
        shard: args.shard,
        assemble_shard: !args.encode_only,
        passage_template: args.passage_template,
        documents: args.documents.is_some().then(|| args.chunk.chunking()),
        truncate: args.truncate,
        vectors: args.vectors,
        m3: m3_heads(&args.model.model, &encoder)?,
    };
    let input = args.documents.as_ref().or(args.passages.as_ref());
    let input = input.expect("clap requires --passages or --documents");
    let output = &args.output;
    let advance = advance(&bar);
    let report = densa::build_index(&encoder, input, output, &options, &mut |done, total| {
        advance(done, total)
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "densa: encoded {} of {} passages in {seconds:.1} s ({:.1} passages/s), {} of {} chunks this run",
        report.passages_encoded,
        report.passages,
        report.passages_encoded as f64 / seconds.max(1e-9),
        report.chunks_encoded,
        report.chunks
    );
    if report.truncated > 0 {
        eprintln!(
            "densa: {} passages were longer than the model's max length and were encoded truncated (--truncate)",
            report.truncated
        );
    }
    if let Some((i, n)) = report.shard_assembled {
        eprintln!(
            "densa: shard {i} of {n} complete: {} ({} of the collection's chunks still elsewhere)",
            output.display(),
            report.chunks_missing
        );
    } else if report.is_complete() {
        eprintln!("densa: index complete: {}", output.display());
    }
    if report.is_complete() {
        if args.ann.is_some() {
            let threads = args.model.run.threads;
            build_graph(output, &args.graph.options(args.vectors), threads)?;
        }
    } else {
        eprintln!(
            "densa: {} chunks belong to other shards; copy their {}/chunks/ files here and rerun this command to assemble",
            report.chunks_missing,
            output.display()
        );
    }
    Ok(())
}

/// `densa chunk`: documents cut into passages for the model, written as JSON lines.
pub(crate) fn chunk(args: ChunkCommandArgs) -> Result<(), Error> {
    let encoder = open_encoder(&args.model, &args.encode, Side::Passage, None, 32)?;
    let encoding = PassageEncoding {
        encoder: &encoder,
        template: args.passage_template.as_deref(),
    };
    let chunking = args.chunk.chunking();
    // Counted, not refused: densa index refuses them (or --truncate encodes them cut).
    let collection =
        densa::retrieval::read_collection(&args.input, Some(chunking), &encoding, true)?;
    write_output(&args.output, |out| {
        for passage in &collection.passages {
            writeln!(out, "{}", passage.to_json())?;
        }
        Ok(())
    })?;
    eprintln!(
        "densa: {} passages ({})",
        collection.passages.len(),
        chunking.describe()
    );
    if collection.truncated > 0 {
        eprintln!(
            "densa: warning: {} passages are longer than the model's max length ({} tokens): densa index refuses them unless --truncate; cut by tokens (--max-tokens) to avoid it",
            collection.truncated,
            encoder.tokenizer().max_length()
        );
    }
    Ok(())
}

/// Lines of `input` (a file or - for standard input; `.jsonl`: `"text"` of each object),
/// blank lines dropped.
pub(crate) fn read_questions(input: &str) -> Result<Vec<String>, Error> {
    let mut questions = Vec::new();
    for record in read_records(input)? {
        match record {
            Record::Text(t) if t.trim().is_empty() => {}
            Record::Text(t) => questions.push(t),
            Record::Pair(..) => {
                return Err(Error::InvalidInput(format!(
                    "{input}: a question has a \"title\"; questions are single texts"
                )))
            }
        }
    }
    Ok(questions)
}

/// The `"answers"` (gold answer strings) of each question of a QA file, in the order
/// `read_qa_pairs` reads the questions (blank lines skipped); None where a line has none.
fn read_gold_answers(qa: &Path) -> Result<Vec<Option<Vec<String>>>, Error> {
    let bytes = std::fs::read(qa).map_err(|e| Error::reading(qa, e))?;
    let mut golds = Vec::new();
    for (i, line) in densa::io::records::lines(&bytes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |m: &str| Error::InvalidInput(format!("{}: line {}: {m}", qa.display(), i + 1));
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| at(&format!("not JSON ({e})")))?;
        golds.push(match &v["answers"] {
            serde_json::Value::Null => None,
            serde_json::Value::Array(items) => Some(
                items
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| at("an answer is not a string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return Err(at("\"answers\" is not a list of strings")),
        });
    }
    Ok(golds)
}

/// The questions of a command: the one given, or those of `input` (standard input if neither).
pub(crate) fn questions_from(
    question: Option<String>,
    input: Option<&str>,
) -> Result<Vec<String>, Error> {
    match (question, input) {
        (Some(q), None) => Ok(vec![q]),
        (None, Some(input)) => read_questions(input),
        (None, None) => read_questions("-"),
        (Some(_), Some(_)) => Err(Error::InvalidInput(
            "give a question or --input, not both".into(),
        )),
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Opens the question encoder, says how it encodes, and warns where that looks inconsistent
/// with how the index's passages were encoded.
fn question_encoder(
    model: &ModelArgs,
    encode: &EncodeArgs,
    index: &Index,
) -> Result<Encoder, Error> {
    let encoder = open_encoder(model, encode, Side::Query, None, 32)?;
    describe_encoding("densa: questions", &encoder);
    for mismatch in index.encoding_mismatches(&encoder) {
        eprintln!("densa: warning: {mismatch}");
    }
    Ok(encoder)
}

/// A hit, with its dense, sparse and ColBERT scores when a bge-m3 mode found it.
type ScoredHit = (densa::SearchHit, Option<HybridHit>);

/// Each question's hits by `mode` (sparse or hybrid: bge-m3's outputs of the question against
/// the index's), with each hit's dense, sparse and ColBERT scores.
fn search_m3(
    args: &SearchArgs,
    index: &Index,
    (encoder, heads): (&Encoder, &M3Heads),
    refs: &[&str],
) -> Result<Vec<Vec<ScoredHit>>, Error> {
    let one = |dense, sparse| HybridWeights {
        dense,
        sparse,
        colbert: 0.0,
    };
    let weights = match args.mode.as_str() {
        "dense" => one(1.0, 0.0),
        "sparse" => one(0.0, 1.0),
        _ => args.weights,
    };
    let inputs: Vec<densa::Input> = refs.iter().map(|q| densa::Input::Text(q)).collect();
    let tokenized = encoder.tokenize(&inputs)?;
    let queries = heads.encode_tokenized(encoder, &tokenized)?;
    let options = args.search.options();
    queries
        .iter()
        .map(|q| {
            let hits = index.search_hybrid(q, args.top_k, args.candidates, &weights, &options)?;
            Ok(hits
                .into_iter()
                .map(|(hit, scores)| (hit, Some(scores)))
                .collect())
        })
        .collect()
}

pub(crate) fn search(args: SearchArgs) -> Result<(), Error> {
    let questions = questions_from(args.question.clone(), args.input.as_deref())?;
    let index = args.search.open(&args.index)?;
    let refs: Vec<&str> = questions.iter().map(String::as_str).collect();
    // An index with bge-m3's outputs, searched with a bge-m3 folder: every mode by them.
    let encoder = open_encoder(&args.model, &args.encode, Side::Query, None, 32)?;
    let heads = match index.has_m3() {
        true => m3_heads(&args.model.model, &encoder)?,
        false => None,
    };
    if heads.is_none() && args.mode != "dense" {
        return Err(Error::InvalidInput(format!(
            "--mode {} searches bge-m3's lexical weights: the index must be built, and the questions encoded, with a bge-m3 folder (sparse_linear.safetensors and colbert_linear.safetensors beside the trunk){}",
            args.mode,
            if index.has_m3() { "" } else { "; this index holds none" }
        )));
    }
    let results = match &heads {
        Some(heads) => search_m3(&args, &index, (&encoder, heads), &refs)?,
        None => {
            describe_encoding("densa: questions", &encoder);
            for mismatch in index.encoding_mismatches(&encoder) {
                eprintln!("densa: warning: {mismatch}");
            }
            let options = args.search.options();
            let encoding = encoder.encoding();
            let found =
                index.search_questions_with(&encoder, encoding, &refs, args.top_k, &options)?;
            found
                .into_iter()
                .map(|hits| hits.into_iter().map(|h| (h, None)).collect())
                .collect()
        }
    };
    let mut out = String::new();
    for (question, hits) in questions.iter().zip(&results) {
        if args.json {
            let hits: Vec<serde_json::Value> = hits
                .iter()
                .enumerate()
                .map(|(rank, (h, scores))| {
                    let mut hit = h.to_json(rank + 1);
                    if let Some(s) = scores {
                        hit["scores"] = serde_json::json!({
                            "dense": s.dense, "sparse": s.sparse, "colbert": s.colbert,
                        });
                    }
                    hit
                })
                .collect();
            out += &serde_json::json!({ "question": question, "hits": hits }).to_string();
            out.push('\n');
        } else {
            out += &format!("{question}\n");
            for (rank, (h, _)) in hits.iter().enumerate() {
                let title = h.passage.title.as_deref().unwrap_or("");
                out += &format!(
                    "  {:>2}. {:8.4}  [{}] {}: {}\n",
                    rank + 1,
                    h.score,
                    h.passage.id,
                    title,
                    shorten(&h.passage.text, 110)
                );
            }
            out.push('\n');
        }
    }
    print_stdout(&out)
}

pub(crate) fn eval(args: EvalArgs) -> Result<(), Error> {
    let model = |dir: &Path| ModelArgs {
        model: dir.to_owned(),
        run: args.run,
    };
    // The collection: an existing index, or the passages encoded now into a temporary one.
    let scratch = tempfile::Builder::new()
        .prefix("densa-eval-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let _remove_on_interrupt = Pending::new(scratch.path());
    let index_dir = match (&args.index, &args.passages, &args.model_ctx) {
        (Some(dir), _, _) => dir.clone(),
        (None, Some(passages), Some(ctx)) => {
            encode_passages(&args, &model(ctx), passages, scratch.path())?;
            scratch.path().to_owned()
        }
        (None, Some(_), None) => {
            return Err(Error::InvalidInput(
                "--passages needs --model-ctx to encode them".into(),
            ))
        }
        (None, None, _) => return Err(Error::InvalidInput("give --index or --passages".into())),
    };
    let index = args.search.open(&index_dir)?;
    let (questions, gold) = read_qa_pairs(&args.qa, &index)?;
    let encoder = question_encoder(&model(&args.model_q), &args.encode, &index)?;
    let how = (&args.top_k[..], &args.search.options());
    let metrics = RetrievalMetrics::evaluate(&encoder, &index, &questions, &gold, how)?;
    let mut report = metrics.to_json();
    if index.has_m3() {
        if let Some(heads) = m3_heads(&args.model_q, &encoder)? {
            report["modes"] = m3_modes(&args, (&encoder, &heads), &index, &questions, &gold)?;
        }
    }
    let template = args
        .passage_template
        .as_deref()
        .unwrap_or("{title}. {text}");
    let reranker = match &args.rerank {
        Some(dir) => {
            let start = Instant::now();
            let cross = Reranker::from_dir(dir, run_options(&model(dir), None, 32))?;
            let top = args.rerank_top;
            let ranks =
                reranked_gold_ranks(&encoder, &index, &cross, &questions, &gold, top, template)?;
            let seconds = start.elapsed().as_secs_f64();
            let reranked = RetrievalMetrics::from_ranks(&ranks, index.len(), &args.top_k, seconds);
            report["reranked"] = reranked.to_json();
            report["reranked"]["rerank_top"] = top.into();
            Some(cross)
        }
        None => None,
    };
    if let Some(dir) = &args.reader {
        let reader = Reader::from_dir(dir, run_options(&model(dir), None, 32))?;
        let pipeline = QaPipeline::new(
            Arc::new(encoder),
            Arc::new(index),
            reranker.map(Arc::new),
            Arc::new(reader),
        );
        report["answers"] = answer_metrics(&args, &pipeline, &questions, template)?;
    }
    print_stdout(&format!("{report}\n"))
}

/// Each mode's metrics over an index holding bge-m3's outputs: dense, sparse, hybrid.
fn m3_modes(
    args: &EvalArgs,
    model: (&Encoder, &M3Heads),
    index: &Index,
    questions: &[String],
    gold: &[usize],
) -> Result<Value, Error> {
    let one = |dense, sparse| HybridWeights {
        dense,
        sparse,
        colbert: 0.0,
    };
    let mut modes = serde_json::Map::new();
    for (name, weights) in [
        ("dense", one(1.0, 0.0)),
        ("sparse", one(0.0, 1.0)),
        ("hybrid", args.weights),
    ] {
        let options = args.search.options();
        let metrics = RetrievalMetrics::evaluate_m3(
            model,
            index,
            questions,
            gold,
            &args.top_k,
            args.candidates,
            &weights,
            &options,
        )?;
        let mut report = metrics.to_json();
        report["weights"] = serde_json::json!([weights.dense, weights.sparse, weights.colbert]);
        modes.insert(name.into(), report);
    }
    Ok(Value::Object(modes))
}

/// `eval --passages`: the passages encoded with `--model-ctx` into the index folder `dir`.
/// They are pooled, truncated and normalised as the questions; only the prompt differs
/// (default: the folder's "passage" or "document").
fn encode_passages(
    args: &EvalArgs,
    model_ctx: &ModelArgs,
    passages: &Path,
    dir: &Path,
) -> Result<(), Error> {
    let passage_side = EncodeArgs {
        prompt: args.passage_prompt.clone(),
        prompt_name: None,
        ..args.encode.clone()
    };
    let encoder = open_encoder(model_ctx, &passage_side, Side::Passage, None, 32)?;
    describe_encoding("densa: passages", &encoder);
    let options = densa::IndexOptions {
        passage_template: args.passage_template.clone(),
        truncate: args.truncate,
        m3: m3_heads(&model_ctx.model, &encoder)?,
        ..Default::default()
    };
    densa::build_index(&encoder, passages, dir, &options, &mut |_, _| {})?;
    Ok(())
}

/// `eval --reader`: exact match and F1 of the pipeline's best answer to each question that
/// has gold answers.
fn answer_metrics(
    args: &EvalArgs,
    pipeline: &QaPipeline,
    questions: &[String],
    template: &str,
) -> Result<Value, Error> {
    let golds = read_gold_answers(&args.qa)?;
    let options = AnswerOptions {
        rerank_top: args.rerank_top,
        read_top: args.read_top,
        passage_template: template.to_owned(),
        ..Default::default()
    };
    let (mut exact, mut f1, mut scored) = (0.0, 0.0, 0usize);
    for (question, golds) in questions.iter().zip(&golds) {
        let Some(golds) = golds else { continue };
        let result = pipeline.answer(question, &options)?;
        let predicted = result
            .answers
            .first()
            .map_or("", |a| a.answer.answer.as_str());
        let (e, f) = answer_scores(predicted, golds);
        (exact, f1, scored) = (exact + e, f1 + f, scored + 1);
    }
    let n = scored.max(1) as f64;
    Ok(serde_json::json!({
        "questions": scored, "exact_match": exact / n, "f1": f1 / n, "read_top": args.read_top,
    }))
}
