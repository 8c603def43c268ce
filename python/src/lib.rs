//! `densa._densa`: the native half of the Python package. Every call that computes releases the
//! GIL (threads sharing one `Encoder` run in parallel), outputs move into numpy arrays without a
//! copy, and densa's errors become Python exceptions carrying densa's messages.

// Functions stay short enough to read at once (clippy.toml: 80 lines).
#![warn(clippy::too_many_lines)]

mod heads;
mod retrieval;

use densa::{Error, Input};
use numpy::ndarray::{Array1, Array2};
use numpy::IntoPyArray;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use std::path::PathBuf;
use std::sync::Arc;

pyo3::create_exception!(_densa, DensaError, PyException, "An error densa reports.");
pyo3::create_exception!(
    _densa,
    InvalidInputError,
    PyValueError,
    "A bad argument or input (a ValueError)."
);
pyo3::create_exception!(
    _densa,
    ModelError,
    DensaError,
    "A model folder densa cannot load: config, tensors, tokenizer, files."
);

/// densa's error as the Python exception of its kind, with densa's message.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::MissingFile { .. } => PyFileNotFoundError::new_err(message),
        Error::InvalidInput(_)
        | Error::Tokenizer(_)
        | Error::NonFiniteOutput { .. }
        | Error::WouldOverwrite { .. } => InvalidInputError::new_err(message),
        Error::Io { .. } | Error::Internal(_) => DensaError::new_err(message),
        _ => ModelError::new_err(message),
    }
}

pub(crate) fn precision(name: &str) -> PyResult<densa::Precision> {
    densa::Precision::parse(name).map_err(InvalidInputError::new_err)
}

/// Texts from a `str` (`single`) or any iterable of `str`; an item of another type is a
/// TypeError naming its position.
pub(crate) fn texts_of(texts: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, bool)> {
    if let Ok(text) = texts.cast::<PyString>() {
        return Ok((vec![text.extract::<String>()?], true));
    }
    let mut out = Vec::new();
    for (i, item) in texts.try_iter()?.enumerate() {
        let item = item?;
        match item.cast::<PyString>() {
            Ok(text) => out.push(text.extract::<String>()?),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "texts[{i}] is {}, not a str",
                    item.get_type().name()?
                )))
            }
        }
    }
    Ok((out, false))
}

/// `(a, b)` pairs from an iterable of 2-item sequences of `str`.
pub(crate) fn pairs_of(pairs: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, item) in pairs.try_iter()?.enumerate() {
        let pair: (String, String) = item?
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("pairs[{i}] is not a pair of str (a, b)")))?;
        out.push(pair);
    }
    Ok(out)
}

/// A text encoder (BERT, DPR, RoBERTa / XLM-R, DistilBERT, sentence-transformers folders).
#[pyclass(frozen, module = "densa._densa")]
pub(crate) struct Encoder {
    pub(crate) inner: Arc<densa::Encoder>,
    /// bge-m3's sparse and ColBERT heads, when the folder holds them.
    pub(crate) m3: Option<Arc<densa::heads::M3Heads>>,
}

#[pymethods]
impl Encoder {
    #[new]
    #[pyo3(signature = (path, threads=0, precision="auto", max_length=None, max_batch_tokens=8192, pooling="auto", normalize=false, prompt=None, prompt_name=None, truncate_dim=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: usize,
        precision: &str,
        max_length: Option<usize>,
        max_batch_tokens: usize,
        pooling: &str,
        normalize: bool,
        prompt: Option<String>,
        prompt_name: Option<String>,
        truncate_dim: Option<usize>,
    ) -> PyResult<Self> {
        let pooling = densa::Pooling::parse(pooling).map_err(InvalidInputError::new_err)?;
        let options = densa::Options {
            threads,
            precision: self::precision(precision)?,
            max_length,
            max_batch_tokens,
            pooling,
            normalize,
            prompt: densa::Prompt::from_flags(prompt.as_deref(), prompt_name.as_deref())
                .unwrap_or_default(),
            truncate_dim,
            ..densa::Options::default()
        };
        let inner = load(py, || densa::Encoder::from_dir(&path, options))?;
        let m3 = match densa::heads::M3Heads::present(&path) {
            true => Some(load(py, || densa::heads::M3Heads::from_dir(&path, &inner))?),
            false => None,
        };
        Ok(Encoder { inner, m3 })
    }

    /// Embeddings of `texts` (a str gives one vector `(dim,)`, a list `(n, dim)` float32).
    /// `normalize`, `prompt_name`, `prompt` and `truncate_dim` override the encoder's own for
    /// this call (None: the encoder's); `batch_size` texts go through each call to the engine.
    /// A bge-m3 folder also gives `output_kind="sparse"` (per text a dict token id → weight,
    /// FlagEmbedding's lexical weights) and `"colbert"` (per text a `(tokens - 1, C)` float32
    /// array); `"dense"` is the default.
    #[pyo3(signature = (texts, batch_size=32, normalize=None, prompt_name=None, prompt=None, truncate_dim=None, show_progress_bar=false, output_kind="dense"))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        batch_size: usize,
        normalize: Option<bool>,
        prompt_name: Option<&str>,
        prompt: Option<&str>,
        truncate_dim: Option<usize>,
        show_progress_bar: bool,
        output_kind: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(texts)?;
        if output_kind != "dense" {
            if (prompt, prompt_name, truncate_dim, normalize) != (None, None, None, None) {
                return Err(InvalidInputError::new_err(
                    "normalize, prompt_name, prompt and truncate_dim apply to dense vectors",
                ));
            }
            return heads::m3_encode(py, self, &texts, single, output_kind, batch_size);
        }
        let encoding = self.encoding(prompt, prompt_name, truncate_dim, normalize)?;
        let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
        let (data, dim) = self.run(py, &inputs, &encoding, batch_size, show_progress_bar)?;
        if single {
            return Ok(Array1::from_vec(data).into_pyarray(py).into_any());
        }
        to_matrix(py, data, dim)
    }

    /// Embeddings of `(a, b)` pairs (DPR passages: `(title, text)`), `(n, dim)` float32.
    #[pyo3(signature = (pairs, batch_size=32, normalize=None, truncate_dim=None))]
    fn encode_pairs<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        batch_size: usize,
        normalize: Option<bool>,
        truncate_dim: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pairs = pairs_of(pairs)?;
        let encoding = self.encoding(None, None, truncate_dim, normalize)?;
        let inputs: Vec<Input> = pairs.iter().map(|(a, b)| Input::Pair(a, b)).collect();
        let (data, dim) = self.run(py, &inputs, &encoding, batch_size, false)?;
        to_matrix(py, data, dim)
    }

    /// The tokens of each text as the model sees them (the encoder's prompt included):
    /// `[{"ids", "tokens", "type_ids", "truncated"}]`.
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (texts, _) = texts_of(texts)?;
        let inner = &self.inner;
        let tokenized = py
            .detach(|| {
                let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t)).collect();
                inner.tokenize(&inputs)
            })
            .map_err(to_py)?;
        let list = PyList::empty(py);
        for t in tokenized {
            let item = PyDict::new(py);
            item.set_item("ids", t.ids)?;
            item.set_item("tokens", t.tokens)?;
            item.set_item("type_ids", t.type_ids)?;
            item.set_item("truncated", t.truncated)?;
            list.append(item)?;
        }
        Ok(list)
    }

    /// Width of the vectors.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The pooling in use (`cls`, `mean`, `pooler`, `dpr`, …).
    #[getter]
    fn pooling(&self) -> &'static str {
        self.inner.pooling().name()
    }

    /// The folder's prompts by name (config_sentence_transformers.json).
    #[getter]
    fn prompts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, text) in &self.inner.sentence_transformers().prompts {
            dict.set_item(name, text)?;
        }
        Ok(dict)
    }

    /// The folder's `default_prompt_name`, if any.
    #[getter]
    fn default_prompt_name(&self) -> Option<String> {
        self.inner
            .sentence_transformers()
            .default_prompt_name
            .clone()
    }

    /// Whether the vectors come out L2-normalised.
    #[getter]
    fn normalizes(&self) -> bool {
        self.inner.normalizes()
    }

    /// Truncation length in tokens.
    #[getter]
    fn max_length(&self) -> usize {
        self.inner.tokenizer().max_length()
    }

    /// `f32` or `int8`.
    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.model().precision.name()
    }

    fn __repr__(&self) -> String {
        format!(
            "densa.Encoder({:?}, dim={}, pooling={:?}, precision={:?})",
            self.inner.dir().display().to_string(),
            self.inner.dim(),
            self.inner.pooling().name(),
            self.inner.model().precision.name()
        )
    }
}

impl Encoder {
    /// The encoder's encoding with this call's overrides.
    fn encoding(
        &self,
        prompt: Option<&str>,
        prompt_name: Option<&str>,
        truncate_dim: Option<usize>,
        normalize: Option<bool>,
    ) -> PyResult<densa::Encoding> {
        if (prompt, prompt_name, truncate_dim, normalize) == (None, None, None, None) {
            return Ok(self.inner.encoding().clone());
        }
        let mut builder = self.inner.encoding_builder();
        if let Some(prompt) = densa::Prompt::from_flags(prompt, prompt_name) {
            builder = builder.prompt(prompt);
        }
        if let Some(dim) = truncate_dim {
            builder = builder.truncate_dim(Some(dim));
        }
        if let Some(on) = normalize {
            builder = builder.normalize(on);
        }
        builder.build().map_err(to_py)
    }

    /// Embeds `inputs` `batch_size` at a time with the GIL released: `(n · dim values, dim)`.
    fn run(
        &self,
        py: Python<'_>,
        inputs: &[Input<'_>],
        encoding: &densa::Encoding,
        batch_size: usize,
        show_progress_bar: bool,
    ) -> PyResult<(Vec<f32>, usize)> {
        if batch_size == 0 {
            return Err(InvalidInputError::new_err("batch_size must be at least 1"));
        }
        let inner = &self.inner;
        let dim = inner.dim_of(encoding);
        py.detach(|| {
            let bar = if show_progress_bar {
                indicatif::ProgressBar::new(inputs.len() as u64)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let mut data = Vec::with_capacity(inputs.len() * dim);
            for chunk in inputs.chunks(batch_size) {
                let embeddings = inner.embed_inputs_with(chunk, encoding)?;
                data.extend_from_slice(&embeddings.data);
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            Ok((data, dim))
        })
        .map_err(to_py)
    }
}

/// A model loaded with the GIL released, shared.
pub(crate) fn load<T: Send>(
    py: Python<'_>,
    open: impl FnOnce() -> densa::Result<T> + Send,
) -> PyResult<Arc<T>> {
    py.detach(open).map(Arc::new).map_err(to_py)
}

/// `(n, dim)` from row-major values, moved into numpy without a copy.
pub(crate) fn to_matrix(py: Python<'_>, data: Vec<f32>, dim: usize) -> PyResult<Bound<'_, PyAny>> {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    let array = Array2::from_shape_vec((rows, dim), data)
        .map_err(|e| DensaError::new_err(format!("internal error: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}

#[pymodule]
fn _densa(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Encoder>()?;
    m.add_class::<heads::Reranker>()?;
    m.add_class::<heads::Reader>()?;
    m.add_class::<retrieval::Index>()?;
    m.add_function(wrap_pyfunction!(retrieval::build_index, m)?)?;
    m.add_function(wrap_pyfunction!(retrieval::build_ann, m)?)?;
    let py = m.py();
    m.add("DensaError", py.get_type::<DensaError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
