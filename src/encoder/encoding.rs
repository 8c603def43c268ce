//! What a call does around the shared forward pass: the prompt before each text, the prompt
//! tokens pooling leaves out, Matryoshka truncation and normalisation. An [`Encoder`] has a
//! default [`Encoding`] (from its [`super::Options`]); a server asks for another per request
//! with [`Encoder::encoding_for`] without loading the model twice.

use super::Encoder;
use crate::error::{Error, Result};
use crate::sentence_transformers::SentenceTransformers;
use crate::tokenizer::{Input, TextTokenizer};

/// How texts become vectors on top of the model: one request's settings, checked against the
/// folder. Calls with equal `Encoding`s can share one forward pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encoding {
    /// The prompt put before every text (never empty: an empty prompt is none).
    prompt: Option<String>,
    /// How many leading tokens (the prompt's, under `include_prompt: false`) pooling leaves out.
    prompt_tokens: usize,
    /// Keep the first N values (after the folder's modules, before `normalize`).
    truncate_dim: Option<usize>,
    /// L2-normalise on top of what the folder asks for.
    normalize: bool,
}

impl Encoding {
    /// Checks and resolves a request against the folder, as [`super::Options`] are at load:
    /// `prompt` (a literal; `Some("")` for none) wins over `prompt_name`, and neither means the
    /// folder's `default_prompt_name`. `width` is the vector's width before truncation.
    pub(crate) fn resolve(
        st: &SentenceTransformers,
        tokenizer: &TextTokenizer,
        width: usize,
        prompt: Option<&str>,
        prompt_name: Option<&str>,
        truncate_dim: Option<usize>,
        normalize: bool,
    ) -> Result<Encoding> {
        if let Some(n) = truncate_dim {
            if n == 0 || n > width {
                return Err(Error::InvalidInput(format!(
                    "truncate_dim {n} must be between 1 and the embedding's {width} values"
                )));
            }
        }
        let prompt = match (prompt, prompt_name, &st.default_prompt_name) {
            (Some(text), _, _) => Some(text.to_owned()),
            (None, Some(name), _) => Some(st.prompt(name)?.to_owned()),
            (None, None, Some(name)) => Some(st.prompt(name)?.to_owned()),
            (None, None, None) => None,
        }
        // An empty prompt is no prompt (sentence-transformers' `if prompt:`).
        .filter(|p| !p.is_empty());
        // sentence-transformers' prompt length: the prompt tokenized alone, less its trailing
        // special token.
        let prompt_tokens = match &prompt {
            Some(text) if !st.include_prompt => {
                let alone = tokenizer.encode(Input::Text(text))?;
                let trailing = usize::from(tokenizer.special_tokens(false) >= 2);
                alone.ids.len() - trailing.min(alone.ids.len())
            }
            _ => 0,
        };
        Ok(Encoding {
            prompt,
            prompt_tokens,
            truncate_dim,
            normalize,
        })
    }

    /// The prompt put before every text, if any.
    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }

    /// How many leading tokens (the prompt's) pooling leaves out.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// The Matryoshka width, if the vectors are truncated.
    pub fn truncate_dim(&self) -> Option<usize> {
        self.truncate_dim
    }

    /// Whether an extra L2 normalisation follows the folder's modules.
    pub fn normalize(&self) -> bool {
        self.normalize
    }
}

impl Encoder {
    /// This encoder's default encoding (from the [`super::Options`] it was opened with).
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// Another encoding on the same model, checked against the folder: see
    /// [`super::Options::prompt`], `prompt_name`, `truncate_dim` and `normalize`.
    pub fn encoding_for(
        &self,
        prompt: Option<&str>,
        prompt_name: Option<&str>,
        truncate_dim: Option<usize>,
        normalize: bool,
    ) -> Result<Encoding> {
        Encoding::resolve(
            &self.st,
            &self.tokenizer,
            self.modules_dim(),
            prompt,
            prompt_name,
            truncate_dim,
            normalize,
        )
    }

    /// This encoder's default encoding with a call's overrides: a `prompt` (literal; `""` for
    /// none) or `prompt_name` replaces the default's prompt, `truncate_dim` and `normalize`
    /// replace its own; `None` keeps what the default has.
    pub fn encoding_with(
        &self,
        prompt: Option<&str>,
        prompt_name: Option<&str>,
        truncate_dim: Option<usize>,
        normalize: Option<bool>,
    ) -> Result<Encoding> {
        let default = &self.encoding;
        if (prompt, prompt_name, truncate_dim, normalize) == (None, None, None, None) {
            return Ok(default.clone());
        }
        let prompt = match (prompt, prompt_name) {
            (None, None) => Some(default.prompt().unwrap_or("")),
            (prompt, _) => prompt,
        };
        self.encoding_for(
            prompt,
            prompt_name,
            truncate_dim.or(default.truncate_dim),
            normalize.unwrap_or(default.normalize),
        )
    }

    /// Width of the vectors of `encoding`.
    pub fn dim_of(&self, encoding: &Encoding) -> usize {
        encoding.truncate_dim.unwrap_or(self.modules_dim())
    }

    /// Whether the vectors of `encoding` are L2-normalised (by the folder's Normalize module,
    /// or asked for).
    pub fn normalizes_with(&self, encoding: &Encoding) -> bool {
        encoding.normalize || (self.st.normalize && encoding.truncate_dim.is_none())
    }

    /// Width after the folder's Dense modules, before truncation.
    pub(crate) fn modules_dim(&self) -> usize {
        let pooled = self.pooled_dim();
        self.st.dense.last().map_or(pooled, |d| d.out_features)
    }
}
