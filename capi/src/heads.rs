//! The C API of the heads: a cross-encoder (`densa_reranker`) and an extractive reader
//! (`densa_reader`), with the same rules as the encoder's (checked arguments, no unwinding,
//! the thread's last error).

use crate::{c_str, c_strings, guarded, parse_options, same_process, DensaOptions};
use densa::{ReadOptions, Reader, Reranker};
use std::ffi::{c_char, c_int};

/// The opaque `densa_reranker`.
pub struct DensaReranker {
    reranker: Reranker,
    opened_by: u32,
}

/// The opaque `densa_reader`.
pub struct DensaReader {
    reader: Reader,
    opened_by: u32,
}

/// `densa_reranker_open`
///
/// # Safety
/// As `densa_open`.
#[no_mangle]
pub unsafe extern "C" fn densa_reranker_open(
    model_dir: *const c_char,
    options: *const DensaOptions,
) -> *mut DensaReranker {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: contract of this function.
        let (dir, options) = unsafe { (c_str(model_dir, "model_dir")?, parse_options(options)?) };
        let reranker = Reranker::from_dir(dir, options).map_err(|e| e.to_string())?;
        let opened_by = std::process::id();
        Ok(Box::into_raw(Box::new(DensaReranker {
            reranker,
            opened_by,
        })))
    })
}

/// `densa_reranker_labels`: outputs per pair (0 on error).
///
/// # Safety
/// `reranker` is NULL or was returned by `densa_reranker_open` and not closed.
#[no_mangle]
pub unsafe extern "C" fn densa_reranker_labels(reranker: *const DensaReranker) -> usize {
    guarded(0, || {
        // SAFETY: NULL or live (contract).
        let r = unsafe { reranker.as_ref() }.ok_or("reranker is NULL")?;
        same_process(r.opened_by, "reranker")?;
        Ok(r.reranker.labels().len())
    })
}

/// `densa_rerank`: the logits of `count` (query, text) pairs, `labels` per pair, into `out`.
///
/// # Safety
/// `reranker` is live; `queries` and `texts` point at `count` NUL-terminated strings; `out`
/// has `out_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn densa_rerank(
    reranker: *mut DensaReranker,
    queries: *const *const c_char,
    texts: *const *const c_char,
    count: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    guarded(-1, || {
        // SAFETY: NULL or live (contract).
        let r = unsafe { reranker.as_ref() }.ok_or("reranker is NULL")?;
        same_process(r.opened_by, "reranker")?;
        let labels = r.reranker.labels().len();
        let needed = count
            .checked_mul(labels)
            .ok_or("count * labels overflows")?;
        if out_len < needed {
            return Err(format!(
                "out holds {out_len} floats, {count} pairs of {labels} logits need {needed}"
            ));
        }
        if count == 0 {
            return Ok(0);
        }
        if queries.is_null() || texts.is_null() || out.is_null() {
            return Err("queries, texts and out must not be NULL".into());
        }
        // SAFETY: both arrays hold `count` strings (contract), checked non-NULL.
        let (queries, texts) = unsafe {
            (
                c_strings(queries, count, "queries")?,
                c_strings(texts, count, "texts")?,
            )
        };
        let pairs: Vec<(&str, &str)> = queries.into_iter().zip(texts).collect();
        let scores = r.reranker.score(&pairs).map_err(|e| e.to_string())?;
        // SAFETY: `out` has `out_len >= needed` writable floats (contract, checked).
        let target = unsafe { std::slice::from_raw_parts_mut(out, needed) };
        for (row, s) in target.chunks_exact_mut(labels).zip(&scores) {
            row.copy_from_slice(&s.logits);
        }
        Ok(0)
    })
}

/// `densa_reranker_close`
///
/// # Safety
/// `reranker` is NULL or was returned by `densa_reranker_open` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn densa_reranker_close(reranker: *mut DensaReranker) {
    if !reranker.is_null() {
        // SAFETY: returned by densa_reranker_open (Box::into_raw) and not freed (contract).
        drop(unsafe { Box::from_raw(reranker) });
    }
}

/// `densa_reader_open`
///
/// # Safety
/// As `densa_open`.
#[no_mangle]
pub unsafe extern "C" fn densa_reader_open(
    model_dir: *const c_char,
    options: *const DensaOptions,
) -> *mut DensaReader {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: contract of this function.
        let (dir, options) = unsafe { (c_str(model_dir, "model_dir")?, parse_options(options)?) };
        let reader = Reader::from_dir(dir, options).map_err(|e| e.to_string())?;
        let opened_by = std::process::id();
        Ok(Box::into_raw(Box::new(DensaReader { reader, opened_by })))
    })
}

/// `densa_read`: the best answer to `question` in `context` (windows of 384 tokens, stride
/// 128, answers of at most 15 tokens): its byte offsets in `context` and its score.
///
/// # Safety
/// `reader` is live; `question` and `context` are NUL-terminated strings; `start`, `end` and
/// `score` point at writable values.
#[no_mangle]
pub unsafe extern "C" fn densa_read(
    reader: *mut DensaReader,
    question: *const c_char,
    context: *const c_char,
    start: *mut usize,
    end: *mut usize,
    score: *mut f64,
) -> c_int {
    guarded(-1, || {
        // SAFETY: NULL or live (contract).
        let r = unsafe { reader.as_ref() }.ok_or("reader is NULL")?;
        same_process(r.opened_by, "reader")?;
        if start.is_null() || end.is_null() || score.is_null() {
            return Err("start, end and score must not be NULL".into());
        }
        // SAFETY: NUL-terminated strings (contract).
        let (question, context) =
            unsafe { (c_str(question, "question")?, c_str(context, "context")?) };
        let answers = r
            .reader
            .read(question, context, &ReadOptions::default())
            .map_err(|e| e.to_string())?;
        let best = answers.first().ok_or("no answer")?;
        // Characters to bytes: C indexes the UTF-8 bytes.
        let byte = |chars: usize| {
            context
                .char_indices()
                .nth(chars)
                .map_or(context.len(), |(b, _)| b)
        };
        // SAFETY: writable (contract), checked non-NULL.
        unsafe {
            *start = byte(best.start);
            *end = byte(best.end);
            *score = best.score;
        }
        Ok(0)
    })
}

/// `densa_reader_close`
///
/// # Safety
/// `reader` is NULL or was returned by `densa_reader_open` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn densa_reader_close(reader: *mut DensaReader) {
    if !reader.is_null() {
        // SAFETY: returned by densa_reader_open (Box::into_raw) and not freed (contract).
        drop(unsafe { Box::from_raw(reader) });
    }
}
