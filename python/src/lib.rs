//! `densa._densa`: the native half of the Python package. Every call that computes releases the
//! GIL (threads sharing one `Encoder` run in parallel), outputs move into numpy arrays without a
//! copy, and densa's errors become Python exceptions carrying densa's messages.

use densa::{Error, Input};
use numpy::ndarray::{Array1, Array2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
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
fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::MissingFile { .. } => PyFileNotFoundError::new_err(message),
        Error::InvalidInput(_)
        | Error::Tokenizer(_)
        | Error::NonFiniteOutput { .. }
        | Error::WouldOverwrite { .. } => InvalidInputError::new_err(message),
        Error::Io { .. } => DensaError::new_err(message),
        _ => ModelError::new_err(message),
    }
}

fn precision(name: &str) -> PyResult<densa::Precision> {
    match name {
        "auto" => Ok(densa::Precision::Auto),
        "f32" | "float32" => Ok(densa::Precision::F32),
        "int8" => Ok(densa::Precision::Int8),
        other => Err(InvalidInputError::new_err(format!(
            "precision {other:?}: use \"auto\", \"f32\" or \"int8\""
        ))),
    }
}

/// Texts from a `str` (`single`) or any iterable of `str`; an item of another type is a
/// TypeError naming its position.
fn texts_of(texts: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, bool)> {
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
fn pairs_of(pairs: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
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
struct Encoder {
    inner: Arc<densa::Encoder>,
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
        let pooling = densa::Pooling::from_name(&pooling.replace('-', "_")).ok_or_else(|| {
            let names: Vec<&str> = densa::Pooling::ALL.iter().map(|p| p.name()).collect();
            InvalidInputError::new_err(format!(
                "pooling {pooling:?}: use one of {}",
                names.join(", ")
            ))
        })?;
        let options = densa::Options {
            threads,
            precision: self::precision(precision)?,
            max_length,
            max_batch_tokens,
            pooling,
            normalize,
            prompt,
            prompt_name,
            truncate_dim,
            ..densa::Options::default()
        };
        let inner = py
            .detach(|| densa::Encoder::from_dir(&path, options))
            .map_err(to_py)?;
        Ok(Encoder {
            inner: Arc::new(inner),
        })
    }

    /// Embeddings of `texts` (a str gives one vector `(dim,)`, a list `(n, dim)` float32).
    /// `normalize`, `prompt_name`, `prompt` and `truncate_dim` override the encoder's own for
    /// this call (None: the encoder's); `batch_size` texts go through each call to the engine.
    #[pyo3(signature = (texts, batch_size=32, normalize=None, prompt_name=None, prompt=None, truncate_dim=None, show_progress_bar=false))]
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(texts)?;
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
        let default = self.inner.encoding();
        if prompt.is_none()
            && prompt_name.is_none()
            && truncate_dim.is_none()
            && normalize.is_none()
        {
            return Ok(default.clone());
        }
        // Unless this call names a prompt, the encoder's own prompt stays.
        let own_prompt = default.prompt().unwrap_or("");
        let prompt = match (prompt, prompt_name) {
            (None, None) => Some(own_prompt),
            (p, _) => p,
        };
        self.inner
            .encoding_for(
                prompt,
                prompt_name,
                truncate_dim.or(default.truncate_dim()),
                normalize.unwrap_or(default.normalize()),
            )
            .map_err(to_py)
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

/// `(n, dim)` from row-major values, moved into numpy without a copy.
fn to_matrix(py: Python<'_>, data: Vec<f32>, dim: usize) -> PyResult<Bound<'_, PyAny>> {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    let array = Array2::from_shape_vec((rows, dim), data)
        .map_err(|e| DensaError::new_err(format!("internal error: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}

/// A cross-encoder (`*ForSequenceClassification`): scores (query, passage) pairs.
#[pyclass(frozen, module = "densa._densa")]
struct Reranker {
    inner: Arc<densa::Reranker>,
}

#[pymethods]
impl Reranker {
    #[new]
    #[pyo3(signature = (path, threads=0, precision="auto", max_length=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: usize,
        precision: &str,
        max_length: Option<usize>,
    ) -> PyResult<Self> {
        let options = densa::Options {
            threads,
            precision: self::precision(precision)?,
            max_length,
            ..densa::Options::default()
        };
        let inner = py
            .detach(|| densa::Reranker::from_dir(&path, options))
            .map_err(to_py)?;
        Ok(Reranker {
            inner: Arc::new(inner),
        })
    }

    /// Scores of `(query, passage)` pairs, as sentence-transformers' `CrossEncoder.predict`:
    /// one label gives `(n,)` sigmoids (logits with `raw=True`), several `(n, labels)`
    /// softmax probabilities (logits with `raw=True`).
    #[pyo3(signature = (pairs, raw=false))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pairs = pairs_of(pairs)?;
        let inner = &self.inner;
        let scores = py
            .detach(|| {
                let refs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                inner.score(&refs)
            })
            .map_err(to_py)?;
        let labels = self.inner.labels().len();
        let data: Vec<f32> = scores
            .iter()
            .flat_map(|s| {
                if raw {
                    s.logits.clone()
                } else {
                    s.scores.clone()
                }
            })
            .collect();
        if labels == 1 {
            return Ok(PyArray1::from_vec(py, data).into_any());
        }
        to_matrix(py, data, labels)
    }

    /// `id2label`, in label order.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }
}

/// An extractive reader (`*ForQuestionAnswering`), decoding as transformers 4's pipeline.
#[pyclass(frozen, module = "densa._densa")]
struct Reader {
    inner: Arc<densa::Reader>,
}

#[pymethods]
impl Reader {
    #[new]
    #[pyo3(signature = (path, threads=0, precision="auto"))]
    fn new(py: Python<'_>, path: PathBuf, threads: usize, precision: &str) -> PyResult<Self> {
        let options = densa::Options {
            threads,
            precision: self::precision(precision)?,
            ..densa::Options::default()
        };
        let inner = py
            .detach(|| densa::Reader::from_dir(&path, options))
            .map_err(to_py)?;
        Ok(Reader {
            inner: Arc::new(inner),
        })
    }

    /// The best answers to `question` in `context`: `top_k=1` gives one dict
    /// `{"answer", "score", "start", "end"}` (character offsets into `context`) or None, more
    /// a list of them, best first.
    #[pyo3(signature = (question, context, top_k=1, max_seq_len=384, doc_stride=128, max_answer_len=15))]
    #[allow(clippy::too_many_arguments)]
    fn read<'py>(
        &self,
        py: Python<'py>,
        question: &str,
        context: &str,
        top_k: usize,
        max_seq_len: usize,
        doc_stride: usize,
        max_answer_len: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = densa::ReadOptions {
            max_seq_len,
            doc_stride,
            max_answer_len,
            top_k,
        };
        let inner = &self.inner;
        let answers = py
            .detach(|| inner.read(question, context, &options))
            .map_err(to_py)?;
        let dicts = answers
            .iter()
            .map(|a| {
                let d = PyDict::new(py);
                d.set_item("answer", &a.answer)?;
                d.set_item("score", a.score)?;
                d.set_item("start", a.start)?;
                d.set_item("end", a.end)?;
                Ok(d.into_any())
            })
            .collect::<PyResult<Vec<_>>>()?;
        if top_k == 1 {
            return Ok(match dicts.into_iter().next() {
                Some(d) => d,
                None => py.None().into_bound(py),
            });
        }
        Ok(PyList::new(py, dicts)?.into_any())
    }
}

/// A complete index written by `densa index` / `build_index`, memory-mapped.
#[pyclass(frozen, module = "densa._densa")]
struct Index {
    inner: Arc<densa::Index>,
}

#[pymethods]
impl Index {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| densa::Index::open(&path)).map_err(to_py)?;
        Ok(Index {
            inner: Arc::new(inner),
        })
    }

    /// The `k` best passages by inner product for each query vector (`(dim,)` or `(q, dim)`
    /// float32): per query a list of `{"index", "id", "title", "text", "score"}`, best first.
    fn search<'py>(
        &self,
        py: Python<'py>,
        query_vectors: PyReadonlyArrayDyn<'py, f32>,
        k: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let single = query_vectors.ndim() == 1;
        if query_vectors.ndim() > 2 {
            return Err(InvalidInputError::new_err(format!(
                "query_vectors has {} dimensions; pass (dim,) or (queries, dim)",
                query_vectors.ndim()
            )));
        }
        let queries = query_vectors.as_slice().map_err(|_| {
            InvalidInputError::new_err(
                "query_vectors must be C-contiguous (numpy.ascontiguousarray)",
            )
        })?;
        let inner = &self.inner;
        let hits = py.detach(|| inner.search(queries, k)).map_err(to_py)?;
        let out = PyList::empty(py);
        for query_hits in hits {
            let list = PyList::empty(py);
            for h in query_hits {
                let d = PyDict::new(py);
                d.set_item("index", h.index)?;
                d.set_item("id", &h.passage.id)?;
                d.set_item("title", &h.passage.title)?;
                d.set_item("text", &h.passage.text)?;
                d.set_item("score", h.score)?;
                list.append(d)?;
            }
            if single {
                return Ok(list);
            }
            out.append(list)?;
        }
        Ok(out)
    }

    /// The stored vectors `(passages, dim)` (a copy).
    fn vectors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let dim = self.inner.dim();
        let array = Array2::from_shape_vec((self.inner.len(), dim), self.inner.vectors().to_vec())
            .map_err(|e| DensaError::new_err(format!("internal error: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// Builds (or resumes) an index of the passages in `passages` (JSON lines `{"id", "title",
/// "text"}`) with `encoder` into `output`, as `densa index`; `shard=(i, n)` encodes only the
/// chunks `k % n == i`. Returns `{"passages", "chunks", "chunks_encoded", "passages_encoded",
/// "chunks_missing", "complete"}`.
#[pyfunction]
#[pyo3(signature = (encoder, passages, output, chunk_size=4096, shard=None, passage_template=None))]
fn build_index<'py>(
    py: Python<'py>,
    encoder: &Encoder,
    passages: PathBuf,
    output: PathBuf,
    chunk_size: usize,
    shard: Option<(usize, usize)>,
    passage_template: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = densa::IndexOptions {
        chunk_size,
        shard,
        passage_template,
    };
    let inner = &encoder.inner;
    let report = py
        .detach(|| densa::build_index(inner, &passages, &output, &options, &mut |_, _| {}))
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("passages", report.passages)?;
    d.set_item("chunks", report.chunks)?;
    d.set_item("chunks_encoded", report.chunks_encoded)?;
    d.set_item("passages_encoded", report.passages_encoded)?;
    d.set_item("chunks_missing", report.chunks_missing)?;
    d.set_item("complete", report.is_complete())?;
    Ok(d)
}

#[pymodule]
fn _densa(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Encoder>()?;
    m.add_class::<Reranker>()?;
    m.add_class::<Reader>()?;
    m.add_class::<Index>()?;
    m.add_function(wrap_pyfunction!(build_index, m)?)?;
    let py = m.py();
    m.add("DensaError", py.get_type::<DensaError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
