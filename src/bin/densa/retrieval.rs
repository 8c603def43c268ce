//! `densa index`, `densa search` and `densa eval`.

use crate::{
    describe_encoding, open_encoder, print_stdout, progress_bar, EncodeArgs, ModelArgs, Side,
};
use densa::io::output::Pending;
use densa::io::records::{read_records, Record};
use densa::{Encoder, Error};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn index(
    model: ModelArgs,
    encode: &EncodeArgs,
    passage_template: Option<&str>,
    passages: &Path,
    output: &Path,
    (batch_size, chunk_size): (usize, usize),
    shard: Option<(usize, usize)>,
) -> Result<(), Error> {
    let encoder = open_encoder(&model, encode, Side::Passage, None, batch_size)?;
    describe_encoding("densa: passages", &encoder);
    let bar = progress_bar("passages");
    let start = Instant::now();
    let options = densa::IndexOptions {
        chunk_size,
        shard,
        passage_template: passage_template.map(str::to_owned),
    };
    let report = densa::build_index(&encoder, passages, output, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
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
    if report.is_complete() {
        eprintln!("densa: index complete: {}", output.display());
    } else {
        eprintln!(
            "densa: {} chunks belong to other shards; copy their {}/chunks/ files here and rerun this command to assemble",
            report.chunks_missing,
            output.display()
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
    index: &densa::Index,
) -> Result<Encoder, Error> {
    let encoder = open_encoder(model, encode, Side::Query, None, 32)?;
    describe_encoding("densa: questions", &encoder);
    for mismatch in index.encoding_mismatches(&encoder) {
        eprintln!("densa: warning: {mismatch}");
    }
    Ok(encoder)
}

pub(crate) fn search(
    model: ModelArgs,
    encode: &EncodeArgs,
    index_dir: &Path,
    top_k: usize,
    input: Option<&str>,
    question: Option<String>,
    json: bool,
) -> Result<(), Error> {
    let questions = questions_from(question, input)?;
    let index = densa::Index::open(index_dir)?;
    let encoder = question_encoder(&model, encode, &index)?;
    let refs: Vec<&str> = questions.iter().map(String::as_str).collect();
    let results = index.search_questions(&encoder, &refs, top_k)?;
    let mut out = String::new();
    for (question, hits) in questions.iter().zip(&results) {
        if json {
            let hits: Vec<serde_json::Value> = hits
                .iter()
                .enumerate()
                .map(|(rank, h)| h.to_json(rank + 1))
                .collect();
            out += &serde_json::json!({ "question": question, "hits": hits }).to_string();
            out.push('\n');
        } else {
            out += &format!("{question}\n");
            for (rank, h) in hits.iter().enumerate() {
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

/// A model for a stage after retrieval (reranker, reader) and how many passages it takes.
pub(crate) type StageModel = (ModelArgs, usize);

pub(crate) fn eval(
    (model_q, encode_q): (ModelArgs, &EncodeArgs),
    model_ctx: Option<(ModelArgs, EncodeArgs)>,
    passage_template: Option<&str>,
    qa: &Path,
    (passages, index_dir): (Option<&Path>, Option<&Path>),
    cutoffs: &[usize],
    (rerank, reader): (Option<StageModel>, Option<StageModel>),
) -> Result<(), Error> {
    // The collection: an existing index, or the passages encoded now into a temporary one.
    let scratch = tempfile::Builder::new()
        .prefix("densa-eval-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let _remove_on_interrupt = Pending::new(scratch.path());
    let index_dir = match (index_dir, passages, &model_ctx) {
        (Some(dir), _, _) => dir.to_owned(),
        (None, Some(passages), Some((ctx, encode_ctx))) => {
            let encoder = open_encoder(ctx, encode_ctx, Side::Passage, None, 32)?;
            describe_encoding("densa: passages", &encoder);
            let options = densa::IndexOptions {
                passage_template: passage_template.map(str::to_owned),
                ..Default::default()
            };
            densa::build_index(&encoder, passages, scratch.path(), &options, &mut |_, _| {})?;
            scratch.path().to_owned()
        }
        (None, Some(_), None) => {
            return Err(Error::InvalidInput(
                "--passages needs --model-ctx to encode them".into(),
            ))
        }
        (None, None, _) => return Err(Error::InvalidInput("give --index or --passages".into())),
    };
    let index = densa::Index::open(&index_dir)?;
    let (questions, gold) = densa::retrieval::read_qa_pairs(qa, &index)?;
    let encoder = question_encoder(&model_q, encode_q, &index)?;
    let metrics =
        densa::retrieval::RetrievalMetrics::evaluate(&encoder, &index, &questions, &gold, cutoffs)?;
    let mut report = metrics.to_json();
    let mut reranker = None;
    let template = passage_template.unwrap_or("{title}. {text}");
    let mut rerank_top = 20;
    if let Some((cross_encoder, top)) = rerank {
        rerank_top = top;
        let start = Instant::now();
        let options = crate::run_options(&cross_encoder, None, 32);
        let cross = densa::Reranker::from_dir(&cross_encoder.model, options)?;
        let ranks = densa::heads::reranked_gold_ranks(
            &encoder, &index, &cross, &questions, &gold, top, template,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let reranked =
            densa::retrieval::RetrievalMetrics::from_ranks(&ranks, index.len(), cutoffs, seconds);
        let mut reranked = reranked.to_json();
        reranked["rerank_top"] = top.into();
        report["reranked"] = reranked;
        reranker = Some(cross);
    }
    if let Some((reader_model, read_top)) = reader {
        let golds = read_gold_answers(qa)?;
        let options = crate::run_options(&reader_model, None, 32);
        let reader = densa::Reader::from_dir(&reader_model.model, options)?;
        let pipeline = densa::QaPipeline::new(
            Arc::new(encoder),
            Arc::new(index),
            reranker.map(Arc::new),
            Arc::new(reader),
        );
        let answer_options = densa::AnswerOptions {
            rerank_top,
            read_top,
            passage_template: template.to_owned(),
            ..Default::default()
        };
        let (mut exact, mut f1, mut scored) = (0.0, 0.0, 0usize);
        for (question, golds) in questions.iter().zip(&golds) {
            let Some(golds) = golds else { continue };
            let result = pipeline.answer(question, &answer_options)?;
            let predicted = result
                .answers
                .first()
                .map_or("", |a| a.answer.answer.as_str());
            let (e, f) = densa::heads::answer_scores(predicted, golds);
            (exact, f1, scored) = (exact + e, f1 + f, scored + 1);
        }
        let n = scored.max(1) as f64;
        report["answers"] = serde_json::json!({
            "questions": scored, "exact_match": exact / n, "f1": f1 / n, "read_top": read_top,
        });
    }
    print_stdout(&format!("{report}\n"))
}
