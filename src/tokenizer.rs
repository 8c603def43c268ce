//! Text to token ids, with Hugging Face's `tokenizers`.
//!
//! A folder with `tokenizer.json` uses it as is (its stored padding and truncation switched
//! off: densa packs sequences and truncates by its own rule). A folder from before fast
//! tokenizers (`vocab.txt` + `tokenizer_config.json`, as the Spanish DPR pair ships) gets the
//! BERT WordPiece pipeline that `transformers` would build from the same files.

use crate::error::{Error, Result};
use serde_json::Value;
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
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    /// sentence-transformers' `do_lower_case`: lowercase text before the tokenizer sees it.
    lowercase_input: bool,
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
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(TextTokenizer {
            inner,
            max_length,
            lowercase_input: false,
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
        self.inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1)
    }

    /// The id of a token, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenizes one input: special tokens added, truncated longest-first to `max_length`.
    pub fn encode<'a>(&self, input: Input<'a>) -> Result<Tokenized> {
        // Borrowed as is, or lowercased (sentence-transformers' do_lower_case).
        let text = |s: &'a str| -> std::borrow::Cow<'a, str> {
            if self.lowercase_input {
                s.to_lowercase().into()
            } else {
                s.into()
            }
        };
        let encode_input: EncodeInput = match input {
            Input::Text(a) => text(a).into(),
            Input::Pair(a, b) => (text(a), text(b)).into(),
        };
        let encoding = self
            .inner
            .encode(encode_input, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Tokenized {
            truncated: !encoding.get_overflowing().is_empty(),
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            tokens: encoding.get_tokens().to_vec(),
        })
    }
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

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config {
            path: path.to_owned(),
            message: format!("not valid JSON: {e}"),
        })
}

/// The BERT pipeline `transformers` builds from `vocab.txt` (its `BertConverter`).
fn from_vocab(dir: &Path) -> Result<Tokenizer> {
    let vocab = dir.join("vocab.txt");
    if !vocab.is_file() {
        return Err(Error::MissingFile {
            path: vocab,
            hint: " (and no tokenizer.json)".into(),
        });
    }
    let configs: Vec<Value> = [
        read_json(&dir.join("tokenizer_config.json"))?,
        read_json(&dir.join("special_tokens_map.json"))?,
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
