//! What an index is built from: a passages file as it is, or a documents file cut into
//! passages ([`super::chunk`]); and the check that no passage is truncated in silence.

use super::chunk::{chunk_documents, Chunking, PassageEncoding};
use super::passages::{fnv1a, read_passages, Passage};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// The passages of an index.
pub struct Collection {
    pub passages: Vec<Passage>,
    /// A fingerprint of the input file and, for documents, of how they were cut.
    pub fingerprint: u64,
    /// Passages longer than the model's max length (encoded truncated, as `truncate` allowed).
    pub truncated: usize,
}

/// Reads `path`: passages, or with `chunking` documents cut into passages. Unless `truncate`,
/// a passage longer than the model's max length (as `encoding` encodes it) is an error that
/// gives their count and first ids.
pub fn read_collection(
    path: &Path,
    chunking: Option<Chunking>,
    encoding: &PassageEncoding<'_>,
    truncate: bool,
) -> Result<Collection> {
    let (records, file_fingerprint) = read_passages(path)?;
    let (passages, fingerprint) = match chunking {
        None => (records, file_fingerprint),
        Some(chunking) => {
            let passages = chunk_documents(&records, chunking, encoding)?;
            let how = chunking.describe();
            (passages, fnv1a(how.as_bytes(), file_fingerprint))
        }
    };
    // Passages cut by tokens fit by construction.
    let checked = !matches!(chunking, Some(Chunking::Tokens { .. }));
    let long = match checked {
        true => too_long(&passages, encoding)?,
        false => Vec::new(),
    };
    if !long.is_empty() && !truncate {
        let first: Vec<String> = long
            .iter()
            .take(5)
            .map(|id| format!("{:?}", id.to_string()))
            .collect();
        let remedy = match chunking {
            Some(_) => "cut by tokens instead of words (--max-tokens, the default)",
            None => "cut them with densa chunk or densa index --documents",
        };
        return Err(Error::InvalidInput(format!(
            "{} of {} passages are longer than the model's max length ({} tokens) and would be truncated (first: {}{}): {remedy}, or pass --truncate to encode only their first tokens",
            long.len(),
            passages.len(),
            encoding.encoder.tokenizer().max_length(),
            first.join(", "),
            if long.len() > first.len() { ", …" } else { "" }
        )));
    }
    Ok(Collection {
        truncated: long.len(),
        passages,
        fingerprint,
    })
}

/// The ids of the passages the encoder would truncate, in collection order.
fn too_long<'a>(
    passages: &'a [Passage],
    encoding: &PassageEncoding<'_>,
) -> Result<Vec<&'a super::passages::Id>> {
    let truncated: Vec<bool> = encoding.encoder.install(|| {
        passages
            .par_iter()
            .map(|p| encoding.tokens(p).map(|(_, truncated)| truncated))
            .collect::<Result<_>>()
    })?;
    Ok(passages
        .iter()
        .zip(truncated)
        .filter(|(_, t)| *t)
        .map(|(p, _)| &p.id)
        .collect())
}
