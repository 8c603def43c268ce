//! Text to token ids, with Hugging Face's `tokenizers`.
//!
//! A folder with `tokenizer.json` uses it as is (its stored padding and truncation switched
//! off: densa packs sequences and truncates by its own rule). A folder from before fast
//! tokenizers (`vocab.txt` + `tokenizer_config.json`, as the Spanish DPR pair ships) gets the
//! BERT WordPiece pipeline that `transformers` would build from the same files.

use crate::error::{Error, Result};
use crate::io::read_json_if_present;
use serde_json::Value;
use std::borrow::Cow;
use std::path::Path;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// One input: a single text (a question) or a pair (a passage's title and text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    Text(&'a str),
    /// `(first, second)`: the second segment gets token type 1.
    Pair(&'a str, &'a str),
}

impl<'a> From<&'a str> for Input<'a> {
    fn from(text: &'a str) -> Self {
        Input::Text(text)
    }
}

impl<'a> From<(&'a str, &'a str)> for Input<'a> {
    fn from((a, b): (&'a str, &'a str)) -> Self {
        Input::Pair(a, b)
    }
}

/// The tokens of one input, ready for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// Whether `max_length` cut the input short.
    pub truncated: bool,
}

/// The tokenizer of a model folder, with densa's truncation.
/// A tokenizer that cuts (question, context) pairs into windows ([`TextTokenizer::windowing`]).
#[derive(Clone)]
pub struct WindowTokenizer {
    tokenizer: Tokenizer,
    pub max_seq_len: usize,
    pub doc_stride: usize,
}

/// One window of a (question, context) pair ([`TextTokenizer::windows_with`]).
#[derive(Debug, Clone)]
pub struct Window {
    pub tokens: Tokenized,
    /// Per token: `Some(0)` question, `Some(1)` context, `None` special token.
    pub sequence_ids: Vec<Option<usize>>,
    /// Per token: its word within its sequence.
    pub word_ids: Vec<Option<u32>>,
    /// Per token: `(start, end)` in characters of its sequence's text.
    pub offsets: Vec<(usize, usize)>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    /// The same tokenizer without truncation, to count the tokens of a prefix: made at its
    /// first use (a copy of the vocabulary that most runs, short texts only, never need).
    untruncated: std::sync::OnceLock<Tokenizer>,
    max_length: usize,
    /// sentence-transformers' `do_lower_case`: lowercase text before the tokenizer sees it.
    lowercase_input: bool,
    /// Ids of the special tokens (`[CLS]`, `</s>`, …), sorted.
    special_ids: Vec<u32>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, or builds WordPiece from `vocab.txt` + `tokenizer_config.json`.
    pub fn from_dir(dir: &Path, max_length: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let mut inner = if json.is_file() {
            let mut t = Tokenizer::from_file(&json)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", json.display())))?;
            t.with_padding(None);
            t
        } else {
            from_vocab(dir)?
        };
        let specials = inner
            .get_post_processor()
            .map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false));
        if max_length < specials.max(1) {
            return Err(Error::InvalidInput(format!(
                "max_length {max_length} must be at least {} (the special tokens every text gets)",
                specials.max(1)
            )));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut special_ids: Vec<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        special_ids.sort_unstable();
        Ok(TextTokenizer {
            inner,
            untruncated: std::sync::OnceLock::new(),
            max_length,
            lowercase_input: false,
            special_ids,
        })
    }

    /// The tokenizer without truncation.
    fn untruncated(&self) -> &Tokenizer {
        self.untruncated.get_or_init(|| {
            let mut tokenizer = self.inner.clone();
            // Switching truncation off cannot fail (only a truncation too short for the
            // special tokens does).
            let _ = tokenizer.with_truncation(None);
            tokenizer
        })
    }

    /// Lowercase every text before tokenizing (sentence-transformers' `do_lower_case`).
    pub fn set_lowercase_input(&mut self, on: bool) {
        self.lowercase_input = on;
    }

    /// The truncation length, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// One more than the largest id the tokenizer can produce (its vocabulary with added
    /// tokens; ids may have gaps): the embedding table needs at least this many rows.
    pub fn id_bound(&self) -> usize {
        use tokenizers::Model;
        // The model's `n` tokens hold `n` distinct ids: when every id below `n` names one,
        // none is larger. That costs a lookup per id; the fallback copies the vocabulary into
        // a map (10 % of a one-question start's samples, when it was the only way).
        let model = self.inner.get_model();
        let n = model.get_vocab_size();
        let model_bound = match (0..n as u32).all(|id| model.id_to_token(id).is_some()) {
            true => n,
            false => model
                .get_vocab()
                .values()
                .max()
                .map_or(0, |&id| id as usize + 1),
        };
        let added = self.inner.get_added_tokens_decoder();
        let added_bound = added.keys().max().map_or(0, |&id| id as usize + 1);
        model_bound.max(added_bound)
    }

    /// Whether `id` is a special token (`[CLS]`, `[SEP]`, `<s>`, padding, …).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    /// The text of `ids`, as the tokenizer decodes it (special tokens left out when asked).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The token of an id, if the vocabulary has it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The tokenizer that cuts windows of `max_seq_len` tokens overlapping by `doc_stride`
    /// (a copy of this one with that truncation; building it copies the vocabulary, so a
    /// reader keeps it between calls).
    pub fn windowing(&self, max_seq_len: usize, doc_stride: usize) -> Result<WindowTokenizer> {
        let mut tokenizer = self.inner.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_len,
                stride: doc_stride,
                strategy: TruncationStrategy::OnlySecond,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(WindowTokenizer {
            tokenizer,
            max_seq_len,
            doc_stride,
        })
    }

    /// The windows a (question, context) pair is cut into for extractive reading, as
    /// transformers' question-answering pipeline cut them: the context truncated to windows of
    /// `max_seq_len` tokens (question and special tokens included) overlapping by `doc_stride`
    /// tokens; the question whole in each. Offsets are in characters of the context.
    pub fn windows_with(
        windowing: &WindowTokenizer,
        question: &str,
        context: &str,
    ) -> Result<Vec<Window>> {
        let (max_seq_len, doc_stride) = (windowing.max_seq_len, windowing.doc_stride);
        let tokenizer = &windowing.tokenizer;
        let first = tokenizer
            .encode_char_offsets((question, context), true)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "the question does not leave room for the context in windows of {max_seq_len} tokens with a stride of {doc_stride} ({e}): use a shorter question or a larger max_seq_len"
                ))
            })?;
        let mut encodings = vec![first.clone()];
        encodings.extend(first.get_overflowing().iter().cloned());
        Ok(encodings
            .into_iter()
            .map(|e| Window {
                tokens: Tokenized {
                    ids: e.get_ids().to_vec(),
                    type_ids: e.get_type_ids().to_vec(),
                    tokens: e.get_tokens().to_vec(),
                    truncated: false,
                },
                sequence_ids: e.get_sequence_ids(),
                word_ids: e.get_word_ids().to_vec(),
                offsets: e.get_offsets().to_vec(),
            })
            .collect())
    }

    /// How many special tokens the tokenizer adds to one text (`pair: false`) or to a pair.
    pub fn special_tokens(&self, pair: bool) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, pair))
    }

    /// Tokenizes one input: special tokens added, truncated longest-first to `max_length`.
    ///
    /// Memory and time are bounded by what the first `max_length` tokens need, not by the
    /// text: a long text is tokenized by a prefix cut just before a whitespace, grown until
    /// it provably holds more tokens than truncation keeps (see `bounded_text`), which
    /// gives the same tokens as the whole text.
    pub fn encode<'a>(&self, input: Input<'a>) -> Result<Tokenized> {
        let pair = matches!(input, Input::Pair(..));
        let specials = self.special_tokens(pair);
        if self.max_length < specials {
            return Err(Error::InvalidInput(format!(
                "max_length {} is shorter than the {specials} special tokens {} gets",
                self.max_length,
                if pair { "a pair of texts" } else { "a text" }
            )));
        }
        // What truncation keeps of the texts, special tokens aside.
        let budget = self.max_length - specials;
        let encoding = match input {
            Input::Text(a) => {
                let a = self.bounded_text(a, budget)?;
                self.encode_texts(&a.text, None)?
            }
            Input::Pair(a, b) => {
                let (mut a, mut b) = (self.bounded_text(a, budget)?, self.bounded_text(b, budget)?);
                // Both sides cut and both over the budget: longest-first truncation gives the
                // odd token to the side that is longer in full, so the prefixes must compare
                // as the whole texts do.
                if (a.cut || b.cut) && budget % 2 == 1 {
                    let (ta, tb) = (self.tokens_of(&mut a)?, self.tokens_of(&mut b)?);
                    if ta > budget && tb > budget {
                        self.order_prefixes_like_texts(&mut a, &mut b)?;
                    }
                }
                self.encode_texts(&a.text, Some(&b.text))?
            }
        };
        Ok(Tokenized {
            truncated: !encoding.get_overflowing().is_empty(),
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            tokens: encoding.get_tokens().to_vec(),
        })
    }

    /// Tokenizes one or two (already lowercased, when asked) texts with special tokens and
    /// truncation.
    fn encode_texts(&self, a: &str, b: Option<&str>) -> Result<tokenizers::Encoding> {
        let input: EncodeInput = match b {
            None => a.into(),
            Some(b) => (a, b).into(),
        };
        self.inner
            .encode(input, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The tokens of `text` alone, without special tokens or truncation.
    fn count_tokens(&self, text: &str) -> Result<usize> {
        let encoding = self
            .untruncated()
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.len())
    }

    /// `text` (lowercased when asked), or, when it is long, a prefix that holds more than
    /// `budget` tokens: the most truncation can keep of it.
    ///
    /// The prefix ends just before a whitespace character, so it ends with a whole word: every
    /// tokenizer densa loads splits words at whitespace before its model sees them (BERT's
    /// pre-tokenizer drops the whitespace; byte-level BPE and Metaspace attach it to the next
    /// word), and its normalizers work character by character, so the prefix's tokens are the
    /// first tokens of the whole text. The prefix starts at [`PREFIX_BYTES_PER_TOKEN`] bytes
    /// per token of `max_length` and doubles until it holds more than `budget` tokens; a text
    /// with no whitespace past that point is tokenized whole.
    fn bounded_text<'a>(&self, text: &'a str, budget: usize) -> Result<BoundedText<'a>> {
        let lower = |s: &'a str| -> Cow<'a, str> {
            if self.lowercase_input {
                s.to_lowercase().into()
            } else {
                s.into()
            }
        };
        let mut bytes = (self.max_length.max(16)) * PREFIX_BYTES_PER_TOKEN;
        while bytes < text.len() {
            let Some(cut) = whitespace_at_or_after(text, bytes) else {
                break;
            };
            let prefix = lower(&text[..cut]);
            let tokens = self.count_tokens(&prefix)?;
            if tokens > budget {
                return Ok(BoundedText {
                    text: prefix,
                    tokens: Some(tokens),
                    cut: true,
                    whole: text,
                });
            }
            bytes = bytes.saturating_mul(2);
        }
        Ok(BoundedText {
            text: lower(text),
            tokens: None,
            cut: false,
            whole: text,
        })
    }

    /// Grows the prefix of the side that is longer in full (by tokens, counted piece by piece
    /// in bounded memory) until the prefixes compare the same way.
    fn order_prefixes_like_texts<'a>(
        &self,
        a: &mut BoundedText<'a>,
        b: &mut BoundedText<'a>,
    ) -> Result<()> {
        let (full_a, full_b) = (self.count_whole(a)?, self.count_whole(b)?);
        let (ta, tb) = (self.tokens_of(a)?, self.tokens_of(b)?);
        // tokenizers swaps (gives the first text the odd token) when the first is longer.
        let (grow, target, strictly) = match (full_a > full_b, ta > tb) {
            (true, false) => (a, tb, true),
            (false, true) => (b, ta, false),
            _ => return Ok(()),
        };
        let mut bytes = grow.text.len();
        loop {
            bytes = bytes.saturating_mul(2);
            let cut = whitespace_at_or_after(grow.whole, bytes).unwrap_or(grow.whole.len());
            let prefix: Cow<'_, str> = if self.lowercase_input {
                grow.whole[..cut].to_lowercase().into()
            } else {
                grow.whole[..cut].to_owned().into()
            };
            let tokens = self.count_tokens(&prefix)?;
            let enough = if strictly {
                tokens > target
            } else {
                tokens >= target
            };
            if enough || cut == grow.whole.len() {
                grow.text = Cow::Owned(prefix.into_owned());
                grow.tokens = Some(tokens);
                grow.cut = cut < grow.whole.len();
                return Ok(());
            }
        }
    }

    /// The tokens of a bounded text, counted once.
    fn tokens_of(&self, text: &mut BoundedText<'_>) -> Result<usize> {
        match text.tokens {
            Some(n) => Ok(n),
            None => {
                let n = self.count_tokens(&text.text)?;
                text.tokens = Some(n);
                Ok(n)
            }
        }
    }

    /// Where each token of `text` comes from: its byte range in `text`, in order (no special
    /// tokens, no truncation). Tokenized piece by piece (cut before whitespace), so memory stays
    /// bounded whatever the text's length. Under `do_lower_case`, a piece whose lowercase has
    /// another number of characters gives each of its words' tokens the whole word's range.
    pub fn token_byte_spans(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let piece_bytes = self.max_length.max(16) * PREFIX_BYTES_PER_TOKEN * 4;
        let (mut start, mut spans) = (0, Vec::new());
        while start < text.len() {
            let end = whitespace_at_or_after(text, start + piece_bytes).unwrap_or(text.len());
            self.piece_spans(&text[start..end], start, &mut spans)?;
            start = end;
        }
        Ok(spans)
    }

    /// [`TextTokenizer::token_byte_spans`] of one piece starting at byte `at` of the text.
    fn piece_spans(&self, piece: &str, at: usize, spans: &mut Vec<(usize, usize)>) -> Result<()> {
        let encode = |text: &str| {
            self.untruncated()
                .encode_char_offsets(text, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))
        };
        let chars: Vec<usize> = piece
            .char_indices()
            .map(|(b, _)| at + b)
            .chain([at + piece.len()])
            .collect();
        let lower = self.lowercase_input.then(|| piece.to_lowercase());
        match &lower {
            Some(lower) if lower.chars().count() != chars.len() - 1 => {
                // Lowercasing changed the characters: word by word, each word's range.
                for (word_start, word) in words_of(piece) {
                    let tokens = encode(&word.to_lowercase())?.len();
                    let range = (at + word_start, at + word_start + word.len());
                    spans.extend(std::iter::repeat_n(range, tokens));
                }
            }
            _ => {
                let encoding = encode(lower.as_deref().unwrap_or(piece))?;
                let char_byte = |c: usize| chars[c.min(chars.len() - 1)];
                spans.extend(
                    encoding
                        .get_offsets()
                        .iter()
                        .map(|&(s, e)| (char_byte(s), char_byte(e))),
                );
            }
        }
        Ok(())
    }

    /// The token count of a whole text, tokenized piece by piece (cut before whitespace, as
    /// for prefixes), so that memory stays bounded whatever its length.
    fn count_whole(&self, text: &BoundedText<'_>) -> Result<usize> {
        if !text.cut {
            return text
                .tokens
                .map_or_else(|| self.count_tokens(&text.text), Ok);
        }
        let piece_bytes = self.max_length.max(16) * PREFIX_BYTES_PER_TOKEN * 4;
        let (mut start, mut total) = (0, 0);
        while start < text.whole.len() {
            let end =
                whitespace_at_or_after(text.whole, start + piece_bytes).unwrap_or(text.whole.len());
            let piece = &text.whole[start..end];
            total += if self.lowercase_input {
                self.count_tokens(&piece.to_lowercase())?
            } else {
                self.count_tokens(piece)?
            };
            start = end;
        }
        Ok(total)
    }
}

/// Bytes of text per token of `max_length` that a first prefix holds: 64 (a 512-token model
/// reads 32 KiB before it looks further; a token is rarely more than a dozen bytes).
pub const PREFIX_BYTES_PER_TOKEN: usize = 64;

/// A text as the tokenizer gets it: whole, or a prefix holding more tokens than are kept.
struct BoundedText<'a> {
    text: Cow<'a, str>,
    /// Tokens of `text`, special tokens aside (counted for prefixes only).
    tokens: Option<usize>,
    /// Whether `text` is a strict prefix of `whole`.
    cut: bool,
    whole: &'a str,
}

/// The words of `text` (maximal runs of non-whitespace) with their byte positions.
fn words_of(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// The byte index of the first whitespace character at or after byte `from` of `text`.
fn whitespace_at_or_after(text: &str, from: usize) -> Option<usize> {
    let mut start = from.min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..]
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| start + i)
}

/// A special token's text from `tokenizer_config.json` or `special_tokens_map.json`, which
/// store it either as a string or as `{"content": ...}`.
fn special_token(configs: &[Value], key: &str, default: &str) -> String {
    configs
        .iter()
        .find_map(|c| match c.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| default.to_owned())
}

/// `vocab.txt` of a folder without `tokenizer.json`, or an error that says what the folder
/// holds instead.
fn vocab_file(dir: &Path) -> Result<std::path::PathBuf> {
    let vocab = dir.join("vocab.txt");
    if vocab.is_file() {
        return Ok(vocab);
    }
    // XLM-R / CamemBERT folders of 2019-2020 ship only a SentencePiece model.
    let sentencepiece = ["sentencepiece.bpe.model", "spiece.model", "tokenizer.model"]
        .into_iter()
        .find(|f| dir.join(f).is_file());
    Err(Error::MissingFile {
        path: vocab,
        hint: match sentencepiece {
            Some(model) => format!(" (and no tokenizer.json; {model} is a SentencePiece model, which densa does not read: write tokenizer.json with transformers' AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))"),
            None => " (and no tokenizer.json)".into(),
        },
    })
}

/// The BERT pipeline `transformers` builds from `vocab.txt` (its `BertConverter`).
fn from_vocab(dir: &Path) -> Result<Tokenizer> {
    let vocab = vocab_file(dir)?;
    let configs: Vec<Value> = [
        read_json_if_present(&dir.join("tokenizer_config.json"))?,
        read_json_if_present(&dir.join("special_tokens_map.json"))?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let flag = |key: &str| {
        configs
            .first()
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
    };
    let do_lower_case = flag("do_lower_case").unwrap_or(true);
    // Unset strip_accents follows do_lower_case (BertNormalizer does this for `None`).
    let strip_accents = flag("strip_accents");
    let tokenize_chinese_chars = flag("tokenize_chinese_chars").unwrap_or(true);
    let [unk, sep, cls, pad, mask] = [
        ("unk_token", "[UNK]"),
        ("sep_token", "[SEP]"),
        ("cls_token", "[CLS]"),
        ("pad_token", "[PAD]"),
        ("mask_token", "[MASK]"),
    ]
    .map(|(key, default)| special_token(&configs, key, default));

    let vocab_str = vocab
        .to_str()
        .ok_or_else(|| Error::Tokenizer(format!("{}: path is not UTF-8", vocab.display())))?;
    let model = WordPiece::from_file(vocab_str)
        .unk_token(unk.clone())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", vocab.display())))?;
    let id = |token: &str| {
        model_token_id(&model, token).ok_or_else(|| {
            Error::Tokenizer(format!(
                "{}: special token {token:?} is not in the vocabulary",
                vocab.display()
            ))
        })
    };
    let (sep_id, cls_id) = (id(&sep)?, id(&cls)?);
    id(&unk)?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            tokenize_chinese_chars,
            strip_accents,
            do_lower_case,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            (sep.clone(), sep_id),
            (cls.clone(), cls_id),
        )))
        .with_decoder(Some(WordPieceDecoder::default()));
    // Special tokens are matched whole in the text, as transformers does with its added tokens.
    let specials: Vec<AddedToken> = [unk, sep, pad, cls, mask]
        .into_iter()
        .filter(|t| tokenizer.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

fn model_token_id(model: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    model.token_to_id(token)
}
