//! Documents to passages, nothing dropped: `densa chunk` and `densa index --documents`.
//!
//! A document (`{"id", "title"?, "text"}`) is cut at word boundaries (whitespace) into
//! passages `{"id": "<doc id>#<n>", "doc_id", "title", "text", "start", "end"}`, where
//! `start..end` are the passage's characters (Unicode scalar values, as Python indexes
//! strings) in the document's text and `text == document_text[start:end]`:
//!
//! - [`Chunking::Words`]: DPR's way, disjoint passages of `n` words;
//! - [`Chunking::Tokens`]: by the model's tokens, each passage as long as fits in `max_tokens`
//!   once encoded the way the index encodes it (title, prompt and special tokens counted), so
//!   that no passage is ever truncated, consecutive passages sharing up to `overlap` tokens of
//!   whole words. A word longer than a passage alone is cut between two of its tokens.
//!
//! Every non-whitespace character of a document is in a passage (whitespace between two
//! passages belongs to neither); a document without words gives one empty passage, so that
//! it stays findable by its title.

use super::passages::{Id, Origin, Passage};
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::tokenizer::Input;
use rayon::prelude::*;

/// How documents are cut into passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// DPR's way: disjoint passages of `n` words (whitespace-separated).
    Words(usize),
    /// By the model's tokens: at most `max_tokens` per passage as the index encodes it (`None`:
    /// the model's max length), consecutive passages sharing up to `overlap` tokens.
    Tokens {
        max_tokens: Option<usize>,
        overlap: usize,
    },
}

impl Chunking {
    /// The default: passages as long as the model takes, no overlap.
    pub const MODEL_LENGTH: Chunking = Chunking::Tokens {
        max_tokens: None,
        overlap: 0,
    };

    /// What the manifest records (and a resumed build compares).
    pub fn describe(&self) -> String {
        match self {
            Chunking::Words(n) => format!("words {n}"),
            Chunking::Tokens {
                max_tokens,
                overlap,
            } => match max_tokens {
                Some(n) => format!("tokens {n} overlap {overlap}"),
                None => format!("tokens model overlap {overlap}"),
            },
        }
    }
}

/// How passages are encoded into an index: the encoder (its prompt, pairs or single texts)
/// and an optional template joining title and text into one text.
pub struct PassageEncoding<'a> {
    pub encoder: &'a Encoder,
    pub template: Option<&'a str>,
}

impl PassageEncoding<'_> {
    /// The texts `passages` are encoded as, when a template joins title and text (`None`:
    /// each passage is its (title, text) pair).
    pub(crate) fn templated(&self, passages: &[Passage]) -> Option<Vec<String>> {
        let template = self.template?;
        Some(passages.iter().map(|p| p.templated(template)).collect())
    }

    /// What the encoder gets for each passage: its templated text, or its pair.
    pub(crate) fn inputs<'a>(
        passages: &'a [Passage],
        templated: &'a Option<Vec<String>>,
    ) -> Vec<Input<'a>> {
        match templated {
            Some(texts) => texts.iter().map(|t| Input::Text(t)).collect(),
            None => passages.iter().map(Passage::input).collect(),
        }
    }

    /// The number of tokens `passage` gets when encoded (special tokens included), whole:
    /// `(tokens kept, truncated)`.
    pub(crate) fn tokens(&self, passage: &Passage) -> Result<(usize, bool)> {
        let one = std::slice::from_ref(passage);
        let templated = self.templated(one);
        let inputs = Self::inputs(one, &templated);
        let encoding = self.encoder.encoding();
        let tokenized = self
            .encoder
            .tokenize_on_caller_thread(&inputs, encoding)?
            .remove(0);
        Ok((tokenized.ids.len(), tokenized.truncated))
    }
}

/// Cuts every document into passages, in document order, on the encoder's threads. An error
/// names the document.
pub fn chunk_documents(
    documents: &[Passage],
    chunking: Chunking,
    encoding: &PassageEncoding<'_>,
) -> Result<Vec<Passage>> {
    let model_length = encoding.encoder.tokenizer().max_length();
    if let Chunking::Tokens {
        max_tokens: Some(n),
        ..
    } = chunking
    {
        if n > model_length {
            return Err(Error::InvalidInput(format!(
                "max_tokens {n} is more than the model's max length ({model_length} tokens): such passages would be truncated"
            )));
        }
    }
    if chunking == Chunking::Words(0) {
        return Err(Error::InvalidInput("words must be at least 1".into()));
    }
    let per_document: Vec<Vec<Passage>> = encoding.encoder.install(|| {
        documents
            .par_iter()
            .map(|document| {
                chunk_document(document, chunking, encoding).map_err(|e| match e {
                    Error::InvalidInput(message) => Error::InvalidInput(format!(
                        "document {:?}: {message}",
                        document.id.to_string()
                    )),
                    other => other,
                })
            })
            .collect::<Result<_>>()
    })?;
    Ok(per_document.into_iter().flatten().collect())
}

/// The passages of one document.
fn chunk_document(
    document: &Passage,
    chunking: Chunking,
    encoding: &PassageEncoding<'_>,
) -> Result<Vec<Passage>> {
    let text = CharText::new(&document.text);
    let spans = match chunking {
        Chunking::Words(n) => word_passages(&text, n),
        Chunking::Tokens {
            max_tokens,
            overlap,
        } => {
            let max_tokens = max_tokens.unwrap_or(encoding.encoder.tokenizer().max_length());
            TokenChunker::new(document, &text, encoding, max_tokens)?.passages(overlap)?
        }
    };
    Ok(spans
        .into_iter()
        .enumerate()
        .map(|(n, (start, end))| Passage {
            id: Id::Text(format!("{}#{n}", document.id)),
            title: document.title.clone(),
            text: text.slice(start, end).to_owned(),
            origin: Some(Origin {
                doc_id: document.id.clone(),
                start,
                end,
            }),
        })
        .collect())
}

/// A text with its characters' byte positions: passages are cut in characters, sliced in
/// bytes.
struct CharText<'a> {
    text: &'a str,
    /// Byte position of each character, then the text's length.
    bytes: Vec<usize>,
}

impl<'a> CharText<'a> {
    fn new(text: &'a str) -> Self {
        let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        bytes.push(text.len());
        CharText { text, bytes }
    }

    fn chars(&self) -> usize {
        self.bytes.len() - 1
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        &self.text[self.bytes[start]..self.bytes[end]]
    }

    /// The character at byte position `byte` (a character boundary, or the end).
    fn char_at_byte(&self, byte: usize) -> usize {
        self.bytes.partition_point(|&b| b < byte)
    }

    /// Whether character `c` is whitespace.
    fn is_whitespace(&self, c: usize) -> bool {
        self.slice(c, c + 1).chars().all(char::is_whitespace)
    }

    /// The words: maximal runs of non-whitespace characters, as character ranges.
    fn words(&self) -> Vec<(usize, usize)> {
        let mut words = Vec::new();
        let mut start = None;
        for (i, c) in self.text.chars().enumerate() {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    words.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            words.push((s, self.chars()));
        }
        words
    }
}

/// `--words n`: disjoint runs of `n` words; one empty passage for a text without words.
fn word_passages(text: &CharText<'_>, n: usize) -> Vec<(usize, usize)> {
    let words = text.words();
    if words.is_empty() {
        return vec![(0, 0)];
    }
    words
        .chunks(n)
        .map(|run| (run[0].0, run[run.len() - 1].1))
        .collect()
}

/// Cuts one document by tokens, in units of words: a unit is a whole word, or a piece of a
/// word too long for a passage alone (cut between two of its tokens).
struct TokenChunker<'a> {
    document: &'a Passage,
    text: &'a CharText<'a>,
    encoding: &'a PassageEncoding<'a>,
    max_tokens: usize,
    /// The text's tokens, as character ranges (no special tokens).
    tokens: Vec<(usize, usize)>,
}

/// A run of characters `start..end`, with the characters where its tokens start.
#[derive(Debug, Clone)]
struct Unit {
    start: usize,
    end: usize,
    token_starts: Vec<usize>,
}

impl Unit {
    fn tokens(&self) -> usize {
        self.token_starts.len()
    }

    /// The unit cut in two at its middle token (`None` for a unit of one token or none).
    fn halves(&self) -> Option<(Unit, Unit)> {
        let mid = self.tokens() / 2;
        let cut = *self.token_starts.get(mid).filter(|_| mid > 0)?;
        let left = Unit {
            start: self.start,
            end: cut,
            token_starts: self.token_starts[..mid].to_vec(),
        };
        let right = Unit {
            start: cut,
            end: self.end,
            token_starts: self.token_starts[mid..].to_vec(),
        };
        Some((left, right))
    }
}

impl<'a> TokenChunker<'a> {
    fn new(
        document: &'a Passage,
        text: &'a CharText<'a>,
        encoding: &'a PassageEncoding<'a>,
        max_tokens: usize,
    ) -> Result<Self> {
        let tokenizer = encoding.encoder.tokenizer();
        let tokens = tokenizer
            .token_byte_spans(text.text)?
            .into_iter()
            .map(|(start, end)| (text.char_at_byte(start), text.char_at_byte(end)))
            .collect();
        Ok(TokenChunker {
            document,
            text,
            encoding,
            max_tokens,
            tokens,
        })
    }

    /// The passages' character ranges.
    fn passages(&self, overlap: usize) -> Result<Vec<(usize, usize)>> {
        let words = self.text.words();
        if words.is_empty() {
            return Ok(vec![(0, 0)]);
        }
        let overhead = self.overhead()?;
        let budget = self.max_tokens.checked_sub(overhead).filter(|&b| b > 0);
        let Some(budget) = budget else {
            return Err(Error::InvalidInput(format!(
                "its title, the prompt and the special tokens already take {overhead} tokens, and a passage may hold {}: no room for its text (shorten the title, or raise --max-tokens up to the model's max length)",
                self.max_tokens
            )));
        };
        let mut units = self.units(&words, budget);
        let mut passages = Vec::new();
        let mut first = 0;
        loop {
            let end = self.fitting_end(&mut units, first, budget)?;
            passages.push((units[first].start, units[end - 1].end));
            if end == units.len() {
                return Ok(passages);
            }
            first = next_start(&units, first, end, overlap);
        }
    }

    /// Tokens an encoded passage of this document holds besides its text's.
    fn overhead(&self) -> Result<usize> {
        Ok(self.encoding.tokens(&self.passage(0, 0))?.0)
    }

    /// The document's passage of characters `start..end`.
    fn passage(&self, start: usize, end: usize) -> Passage {
        Passage {
            text: self.text.slice(start, end).to_owned(),
            ..self.document.clone()
        }
    }

    /// The words with their tokens (a token belongs to the word holding its first
    /// non-whitespace character; a token of whitespace alone to the next word), each word of
    /// more than `budget` tokens cut into pieces at its tokens' starts.
    fn units(&self, words: &[(usize, usize)], budget: usize) -> Vec<Unit> {
        let mut units: Vec<Unit> = words
            .iter()
            .map(|&(start, end)| Unit {
                start,
                end,
                token_starts: Vec::new(),
            })
            .collect();
        for &(start, end) in &self.tokens {
            let first_visible = (start..end).find(|&c| !self.text.is_whitespace(c));
            let at = first_visible.unwrap_or(end);
            let w = words
                .partition_point(|word| word.1 <= at)
                .min(words.len() - 1);
            let unit = &mut units[w];
            unit.token_starts.push(at.clamp(unit.start, unit.end));
        }
        let mut pieces = Vec::with_capacity(units.len());
        for unit in units {
            if unit.tokens() <= budget {
                pieces.push(unit);
                continue;
            }
            // A word longer than a passage: pieces a token short of `budget` (a piece alone
            // may take one more token than inside its word, as a word-start marker).
            let piece = budget.saturating_sub(1).max(1);
            let starts = &unit.token_starts;
            for (i, chunk) in starts.chunks(piece).enumerate() {
                let start = if i == 0 { unit.start } else { chunk[0] };
                let end = starts.get((i + 1) * piece).copied().unwrap_or(unit.end);
                pieces.push(Unit {
                    start,
                    end,
                    token_starts: chunk.to_vec(),
                });
            }
        }
        pieces.retain(|u| u.start < u.end);
        pieces
    }

    /// The end (exclusive unit) of the passage starting at unit `first`: as many units as the
    /// token counts allow, checked against the real encoding and shortened until it fits. A
    /// unit that does not fit alone (its tokens counted in context were fewer) is cut in two.
    fn fitting_end(&self, units: &mut Vec<Unit>, first: usize, budget: usize) -> Result<usize> {
        let mut end = first;
        let mut total = 0;
        while end < units.len() && (end == first || total + units[end].tokens() <= budget) {
            total += units[end].tokens();
            end += 1;
        }
        loop {
            let passage = self.passage(units[first].start, units[end - 1].end);
            let (tokens, truncated) = self.encoding.tokens(&passage)?;
            if !truncated && tokens <= self.max_tokens {
                return Ok(end);
            }
            if end > first + 1 {
                end -= 1;
                continue;
            }
            let Some((left, right)) = units[first].halves() else {
                let unit = &units[first];
                return Err(Error::InvalidInput(format!(
                    "characters {}..{} give {tokens}{} tokens encoded alone, more than a passage of {} holds",
                    unit.start,
                    unit.end,
                    if truncated { " or more" } else { "" },
                    self.max_tokens
                )));
            };
            units.splice(first..=first, [left, right]);
        }
    }
}

/// Where the passage after units `first..end` starts: the latest units before `end` whose
/// tokens add up to at most `overlap` (none: `end`), always after `first`.
fn next_start(units: &[Unit], first: usize, end: usize, overlap: usize) -> usize {
    let mut start = end;
    let mut shared = 0;
    while start > first + 1 && shared + units[start - 1].tokens() <= overlap {
        shared += units[start - 1].tokens();
        start -= 1;
    }
    start
}
