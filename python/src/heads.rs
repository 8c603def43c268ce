//! The heads from Python: `Reranker` (cross-encoder), `Reader` (extractive QA), and bge-m3's
//! sparse and ColBERT outputs (`Encoder.encode(output_kind=...)`).

use crate::{load, pairs_of, to_matrix, to_py, InvalidInputError};
use numpy::ndarray::Array1;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;
use std::sync::Arc;

/// A cross-encoder (`*ForSequenceClassification`): scores (query, passage) pairs.
#[pyclass(frozen, module = "densa._densa")]
pub(crate) struct Reranker {
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
            precision: crate::precision(precision)?,
            max_length,
            ..densa::Options::default()
        };
        Ok(Reranker {
            inner: load(py, || densa::Reranker::from_dir(&path, options))?,
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
pub(crate) struct Reader {
    inner: Arc<densa::Reader>,
}

#[pymethods]
impl Reader {
    #[new]
    #[pyo3(signature = (path, threads=0, precision="auto"))]
    fn new(py: Python<'_>, path: PathBuf, threads: usize, precision: &str) -> PyResult<Self> {
        let options = densa::Options {
            threads,
            precision: crate::precision(precision)?,
            ..densa::Options::default()
        };
        Ok(Reader {
            inner: load(py, || densa::Reader::from_dir(&path, options))?,
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

/// bge-m3's sparse or ColBERT output of `texts` (see `Encoder.encode`), `batch_size` texts a
/// pass, the GIL released while computing.
pub(crate) fn m3_encode<'py>(
    py: Python<'py>,
    encoder: &crate::Encoder,
    texts: &[String],
    single: bool,
    output_kind: &str,
    batch_size: usize,
) -> PyResult<Bound<'py, PyAny>> {
    use densa::heads::m3::OutputKind;
    let kind = OutputKind::from_name(output_kind).ok_or_else(|| {
        InvalidInputError::new_err(format!(
            "output_kind {output_kind:?}: use one of {}",
            OutputKind::NAMES.join(", ")
        ))
    })?;
    let Some(heads) = &encoder.m3 else {
        return Err(InvalidInputError::new_err(format!(
            "output_kind={output_kind:?} needs a bge-m3 folder (sparse_linear.safetensors and colbert_linear.safetensors beside the trunk; tools/convert_to_safetensors.py converts the published .pt files)"
        )));
    };
    if batch_size == 0 {
        return Err(InvalidInputError::new_err("batch_size must be at least 1"));
    }
    let inner = &encoder.inner;
    let outputs = py
        .detach(|| {
            let mut outputs = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(batch_size) {
                let inputs: Vec<densa::Input> =
                    chunk.iter().map(|t| densa::Input::Text(t)).collect();
                let tokenized = inner.tokenize(&inputs)?;
                outputs.extend(heads.encode_tokenized(inner, &tokenized)?);
            }
            Ok(outputs)
        })
        .map_err(to_py)?;
    let list = PyList::empty(py);
    for output in outputs {
        let item = match kind {
            OutputKind::Sparse => {
                let weights = PyDict::new(py);
                for (id, weight) in &output.sparse {
                    weights.set_item(id, weight)?;
                }
                weights.into_any()
            }
            OutputKind::Colbert => to_matrix(py, output.colbert, output.colbert_dim)?,
            OutputKind::Dense => Array1::from_vec(output.dense).into_pyarray(py).into_any(),
        };
        list.append(item)?;
    }
    if single {
        return list.get_item(0);
    }
    Ok(list.into_any())
}
