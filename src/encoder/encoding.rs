//! How texts become vectors around the shared forward pass: the prompt before each text, the
//! prompt tokens pooling leaves out, Matryoshka truncation and normalisation.
//!
//! An [`Encoder`] has a default [`Encoding`] (from its [`super::Options`]); another is built
//! from it with [`Encoder::encoding_builder`], each setter replacing one setting, without
//! loading the model twice. An encoding has two parts, as text-embeddings-inference splits a
//! request: what changes the forward pass and pooling ([`PassKey`]: calls that agree on it
//! share one packed pass) and what each call does to its own vectors afterwards
//! ([`VectorSettings`]: truncation and normalisation).

use super::Encoder;
use crate::error::{Error, Result};
use crate::pooling::l2_normalize;
use crate::sentence_transformers::SentenceTransformers;
use crate::tokenizer::{Input, TextTokenizer};

/// Which prompt goes before each text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Prompt {
    /// The prompt of the folder's `default_prompt_name`, if it names one.
    #[default]
    FolderDefault,
    /// No prompt.
    None,
    /// A prompt of the folder's `config_sentence_transformers.json`, by name.
    Named(String),
    /// A literal prefix (`"query: "`); an empty one is no prompt.
    Text(String),
}

impl Prompt {
    /// The prompt two optional flags ask for (the CLI's `--prompt` / `--prompt-name`, Python's
    /// and the server's `prompt` / `prompt_name`): a literal wins over a name, `""` is no
    /// prompt, neither is `None` (the caller keeps what it had).
    pub fn from_flags(text: Option<&str>, name: Option<&str>) -> Option<Prompt> {
        match (text, name) {
            (Some(""), _) => Some(Prompt::None),
            (Some(text), _) => Some(Prompt::Text(text.to_owned())),
            (None, Some(name)) => Some(Prompt::Named(name.to_owned())),
            (None, None) => None,
        }
    }
}

/// What a call's forward pass and pooling depend on beyond its tokens: calls that agree on it
/// can share one pass. (The prompt's text is already in the tokens; how many of them pooling
/// leaves out is not.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PassKey {
    /// Leading tokens (the prompt's, under `include_prompt: false`) pooling leaves out.
    pub prompt_tokens: usize,
}

/// What a call does to its vectors after the pass it shared, in sentence-transformers' order:
/// keep the first `truncate_dim` values, then L2-normalise if `normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VectorSettings {
    pub truncate_dim: Option<usize>,
    pub normalize: bool,
}

impl VectorSettings {
    /// `dst (dim)` from `vector` (the folder's modules' output): its first `dim` values,
    /// normalised when asked.
    pub fn apply(&self, vector: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(&vector[..dst.len()]);
        if self.normalize {
            l2_normalize(dst);
        }
    }
}

/// How texts become vectors on top of the model: one request's settings, checked against the
/// folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encoding {
    /// The prompt put before every text (never empty: an empty prompt is none).
    prompt: Option<String>,
    pass: PassKey,
    vectors: VectorSettings,
    /// The folder's modules end with a Normalize and no truncation follows it.
    folder_normalizes: bool,
}

impl Encoding {
    /// The prompt put before every text, if any.
    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }

    /// What its forward pass and pooling need: calls with equal keys share a pass.
    pub fn pass_key(&self) -> PassKey {
        self.pass
    }

    /// Its truncation and normalisation, applied per call after the pass.
    pub fn vector_settings(&self) -> VectorSettings {
        self.vectors
    }

    /// How many leading tokens (the prompt's) pooling leaves out.
    pub fn prompt_tokens(&self) -> usize {
        self.pass.prompt_tokens
    }

    /// The Matryoshka width, if the vectors are truncated.
    pub fn truncate_dim(&self) -> Option<usize> {
        self.vectors.truncate_dim
    }

    /// Whether an extra L2 normalisation follows the folder's modules.
    pub fn normalize(&self) -> bool {
        self.vectors.normalize
    }

    /// Whether its vectors come out L2-normalised (by the folder's Normalize module, or asked
    /// for).
    pub fn gives_unit_vectors(&self) -> bool {
        self.vectors.normalize || self.folder_normalizes
    }
}

/// The one way to make an [`Encoding`]: start from an encoder's default
/// ([`Encoder::encoding_builder`]) and replace what a call changes; [`EncodingBuilder::build`]
/// checks the result against the folder.
#[derive(Clone)]
pub struct EncodingBuilder<'a> {
    st: &'a SentenceTransformers,
    tokenizer: &'a TextTokenizer,
    /// The vector's width before truncation.
    width: usize,
    prompt: Prompt,
    truncate_dim: Option<usize>,
    normalize: Normalize,
}

/// What the builder was told about normalisation.
#[derive(Clone, Copy)]
enum Normalize {
    /// Add an L2 normalisation (or not) after truncation.
    Extra(bool),
    /// Unit vectors out (or no extra normalisation): one only where the folder's modules do
    /// not already give them.
    UnitVectors(bool),
}

impl<'a> EncodingBuilder<'a> {
    /// The folder's defaults: its `default_prompt_name`, no truncation, no extra normalisation.
    /// `width` is the vector's width before truncation.
    pub(crate) fn new(
        st: &'a SentenceTransformers,
        tokenizer: &'a TextTokenizer,
        width: usize,
    ) -> Self {
        EncodingBuilder {
            st,
            tokenizer,
            width,
            prompt: Prompt::FolderDefault,
            truncate_dim: None,
            normalize: Normalize::Extra(false),
        }
    }

    /// The prompt before each text.
    pub fn prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = prompt;
        self
    }

    /// The folder's prompt called `name`, when a request names one (`None`: this builder's
    /// prompt stays).
    pub fn prompt_named(self, name: Option<String>) -> Self {
        match name {
            Some(name) => self.prompt(Prompt::Named(name)),
            None => self,
        }
    }

    /// Keep the first `dim` values of each vector (`None`: all of them), after the folder's
    /// modules and before normalisation (sentence-transformers' `truncate_dim`).
    pub fn truncate_dim(mut self, dim: Option<usize>) -> Self {
        self.truncate_dim = dim;
        self
    }

    /// L2-normalise each vector after truncation, on top of what the folder does. Replaces
    /// what [`EncodingBuilder::unit_vectors`] said (the last of the two wins).
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = Normalize::Extra(on);
        self
    }

    /// `true`: the vectors come out L2-normalised, normalised once (not again where the
    /// folder's Normalize module, untruncated, already did: TEI's `normalize`). `false`: no
    /// extra normalisation. Replaces what [`EncodingBuilder::normalize`] said.
    pub fn unit_vectors(mut self, on: bool) -> Self {
        self.normalize = Normalize::UnitVectors(on);
        self
    }

    /// The encoding, checked against the folder: a prompt name it has, a `truncate_dim`
    /// between 1 and the vector's width.
    pub fn build(self) -> Result<Encoding> {
        let width = self.width;
        if let Some(n) = self.truncate_dim {
            if n == 0 || n > width {
                return Err(Error::InvalidInput(format!(
                    "truncate_dim {n} must be between 1 and the embedding's {width} values"
                )));
            }
        }
        let st = self.st;
        let prompt = match &self.prompt {
            Prompt::FolderDefault => match &st.default_prompt_name {
                Some(name) => Some(st.prompt(name)?.to_owned()),
                None => None,
            },
            Prompt::None => None,
            Prompt::Named(name) => Some(st.prompt(name)?.to_owned()),
            Prompt::Text(text) => Some(text.clone()),
        }
        // An empty prompt is no prompt (sentence-transformers' `if prompt:`).
        .filter(|p| !p.is_empty());
        let folder_normalizes = st.normalize && self.truncate_dim.is_none();
        let normalize = match self.normalize {
            Normalize::Extra(on) => on,
            Normalize::UnitVectors(on) => on && !folder_normalizes,
        };
        Ok(Encoding {
            pass: PassKey {
                prompt_tokens: self.prompt_tokens(prompt.as_deref())?,
            },
            prompt,
            vectors: VectorSettings {
                truncate_dim: self.truncate_dim,
                normalize,
            },
            folder_normalizes,
        })
    }

    /// sentence-transformers' prompt length under `include_prompt: false`: the prompt
    /// tokenized alone, less its trailing special token (0 when the prompt is pooled).
    fn prompt_tokens(&self, prompt: Option<&str>) -> Result<usize> {
        let Some(text) = prompt.filter(|_| !self.st.include_prompt) else {
            return Ok(0);
        };
        let alone = self.tokenizer.encode(Input::Text(text))?;
        let trailing = usize::from(self.tokenizer.special_tokens(false) >= 2);
        Ok(alone.ids.len() - trailing.min(alone.ids.len()))
    }
}

impl Encoder {
    /// This encoder's default encoding (from the [`super::Options`] it was opened with).
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// A builder that starts from this encoder's default encoding: each setter replaces one
    /// setting (its prompt, truncation, normalisation), the others stay the default's.
    pub fn encoding_builder(&self) -> EncodingBuilder<'_> {
        let default = &self.encoding;
        EncodingBuilder {
            prompt: match default.prompt() {
                Some(text) => Prompt::Text(text.to_owned()),
                None => Prompt::None,
            },
            truncate_dim: default.truncate_dim(),
            normalize: Normalize::Extra(default.normalize()),
            ..EncodingBuilder::new(&self.st, &self.tokenizer, self.modules_dim())
        }
    }

    /// Width of the vectors of `encoding`.
    pub fn dim_of(&self, encoding: &Encoding) -> usize {
        encoding.truncate_dim().unwrap_or(self.modules_dim())
    }

    /// Width after the folder's Dense modules, before truncation.
    pub(crate) fn modules_dim(&self) -> usize {
        let pooled = self.pooled_dim();
        self.st.dense.last().map_or(pooled, |d| d.out_features)
    }
}
