//! Retrieval from Python: `Index` (search a built index) and `build_index`.

use crate::{to_py, DensaError, Encoder, InvalidInputError};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;
use std::sync::Arc;

/// An id as the passages file wrote it: a `str`, or an `int` (a `float` for a fractional
/// number).
fn id_to_py<'py>(py: Python<'py>, id: &densa::retrieval::Id) -> PyResult<Bound<'py, PyAny>> {
    use densa::retrieval::Id;
    Ok(match id {
        Id::Text(text) => text.into_pyobject(py)?.into_any(),
        Id::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into_pyobject(py)?.into_any(),
            (_, Some(u), _) => u.into_pyobject(py)?.into_any(),
            (_, _, f) => f.unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
    })
}

/// A hit as a dict: `{"index", "collection_row", "id", "title", "text", "score"}` (and
/// `"doc_id"`, `"start"`, `"end"` for a passage cut from a document).
fn hit_dict<'py>(
    py: Python<'py>,
    index: &densa::Index,
    h: &densa::SearchHit,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", h.index)?;
    d.set_item("collection_row", index.collection_row(h.index))?;
    d.set_item("id", id_to_py(py, &h.passage.id)?)?;
    d.set_item("title", &h.passage.title)?;
    d.set_item("text", &h.passage.text)?;
    d.set_item("score", h.score)?;
    if let Some(origin) = &h.passage.origin {
        d.set_item("doc_id", id_to_py(py, &origin.doc_id)?)?;
        d.set_item("start", origin.start)?;
        d.set_item("end", origin.end)?;
    }
    Ok(d)
}

/// A complete index written by `densa index` / `build_index`, memory-mapped.
#[pyclass(frozen, module = "densa._densa")]
pub(crate) struct Index {
    inner: Arc<densa::Index>,
}

#[pymethods]
impl Index {
    /// `exact=True` opens the index for the exact scan alone (its HNSW graph, if any, is
    /// not read).
    #[new]
    #[pyo3(signature = (path, exact=false))]
    fn new(py: Python<'_>, path: PathBuf, exact: bool) -> PyResult<Self> {
        let open = || match exact {
            true => densa::Index::open_exact(&path),
            false => densa::Index::open(&path),
        };
        Ok(Index {
            inner: crate::load(py, open)?,
        })
    }

    /// The `k` best passages by inner product for each query vector (`(dim,)` or `(q, dim)`
    /// float32): per query a list of `{"index", "collection_row", "id", "title", "text",
    /// "score"}` (and `"doc_id"`, `"start"`, `"end"` for passages cut from documents), best
    /// first. `index` is the row in this folder, `collection_row` the row in the whole
    /// collection (the same, unless the folder is a shard): ties between equal scores go to
    /// the lower collection row, so shards' hits merge into the whole index's order.
    ///
    /// `exact`: `True` scans every vector even where there is a graph, `False` searches the
    /// graph whatever the collection's size (`None`: the graph from 20,000 vectors on); `ef`:
    /// the graph's candidates per query; `rescore`: over int8 or binary codes, candidates per
    /// result rescored against the float vectors.
    #[pyo3(signature = (query_vectors, k, exact=None, ef=None, rescore=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query_vectors: PyReadonlyArrayDyn<'py, f32>,
        k: usize,
        exact: Option<bool>,
        ef: Option<usize>,
        rescore: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let single = query_vectors.ndim() == 1;
        if query_vectors.ndim() > 2 {
            return Err(InvalidInputError::new_err(format!(
                "query_vectors has {} dimensions; pass (dim,) or (queries, dim)",
                query_vectors.ndim()
            )));
        }
        let width = query_vectors.shape().last().copied().unwrap_or(0);
        if width != self.inner.dim() {
            return Err(InvalidInputError::new_err(format!(
                "query vectors have {width} values each; the index holds {}-dimensional vectors",
                self.inner.dim()
            )));
        }
        let queries = query_vectors.as_slice().map_err(|_| {
            InvalidInputError::new_err(
                "query_vectors must be C-contiguous (numpy.ascontiguousarray)",
            )
        })?;
        let inner = &self.inner;
        let options = densa::retrieval::SearchOptions { rescore, exact, ef };
        let hits = py
            .detach(|| inner.search_with(queries, k, &options))
            .map_err(to_py)?;
        let out = PyList::empty(py);
        for query_hits in hits {
            let list = PyList::empty(py);
            for h in query_hits {
                list.append(hit_dict(py, inner, &h)?)?;
            }
            if single {
                return Ok(list);
            }
            out.append(list)?;
        }
        Ok(out)
    }

    /// bge-m3's retrieval on an index built with a bge-m3 folder: `queries` (a str or a list)
    /// encoded by `encoder` (the same folder) and searched in `mode` `"dense"`, `"sparse"` or
    /// `"hybrid"` (`weights`: dense, sparse, ColBERT; `candidates` from each of the dense and
    /// sparse searches, scored exactly), as `densa search --mode`: hits as `search` gives
    /// them, with `"scores": {"dense", "sparse", "colbert"}`.
    #[pyo3(signature = (encoder, queries, k, mode="hybrid", weights=(0.4, 0.2, 0.4), candidates=100, exact=None, ef=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_texts<'py>(
        &self,
        py: Python<'py>,
        encoder: &crate::Encoder,
        queries: &Bound<'py, PyAny>,
        k: usize,
        mode: &str,
        weights: (f64, f64, f64),
        candidates: usize,
        exact: Option<bool>,
        ef: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (texts, single) = crate::texts_of(queries)?;
        let Some(heads) = &encoder.m3 else {
            return Err(InvalidInputError::new_err(
                "search_texts needs a bge-m3 encoder (sparse_linear.safetensors and colbert_linear.safetensors beside the trunk)",
            ));
        };
        let one = |dense, sparse| (dense, sparse, 0.0);
        let (dense, sparse, colbert) = match mode {
            "dense" => one(1.0, 0.0),
            "sparse" => one(0.0, 1.0),
            "hybrid" => weights,
            other => {
                return Err(InvalidInputError::new_err(format!(
                    "mode {other:?}: use \"dense\", \"sparse\" or \"hybrid\""
                )))
            }
        };
        let weights = densa::retrieval::hybrid::HybridWeights {
            dense,
            sparse,
            colbert,
        };
        let options = densa::retrieval::SearchOptions {
            rescore: None,
            exact,
            ef,
        };
        let (inner, model) = (&self.inner, &encoder.inner);
        let hits = py
            .detach(|| {
                let inputs: Vec<densa::Input> =
                    texts.iter().map(|t| densa::Input::Text(t)).collect();
                let tokenized = model.tokenize(&inputs)?;
                heads
                    .encode_tokenized(model, &tokenized)?
                    .iter()
                    .map(|q| inner.search_hybrid(q, k, candidates, &weights, &options))
                    .collect::<densa::Result<Vec<_>>>()
            })
            .map_err(to_py)?;
        let out = PyList::empty(py);
        for query_hits in hits {
            let list = PyList::empty(py);
            for (h, scores) in query_hits {
                let d = hit_dict(py, inner, &h)?;
                let s = PyDict::new(py);
                s.set_item("dense", scores.dense)?;
                s.set_item("sparse", scores.sparse)?;
                s.set_item("colbert", scores.colbert)?;
                d.set_item("scores", s)?;
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
        let array = Array2::from_shape_vec((self.inner.len(), dim), self.inner.vectors_f32())
            .map_err(|e| DensaError::new_err(format!("internal error: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    /// `(I, N)` when the folder is shard I of N of a collection (`densa index --shard I/N`),
    /// else `None`.
    #[getter]
    fn shard(&self) -> Option<(usize, usize)> {
        self.inner.shard().map(|s| (s.index, s.count))
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
/// chunks `k % n == i`. With `documents=True` the file holds documents, cut into passages as
/// `densa index --documents` cuts them (`words`, or `max_tokens` and `overlap_tokens`);
/// `truncate=True` encodes passages longer than the model's max length truncated instead of
/// refusing them; `vectors` is how the index stores them for search (`"f32"`, `"f16"`,
/// `"int8"`, `"binary"`, as `densa index --vectors`). With `shard=(I, N)` the folder
/// becomes shard I's own index unless `encode_only` (then it only holds chunks for a merge).
/// Returns `{"passages", "chunks", "chunks_encoded", "passages_encoded", "chunks_missing",
/// "truncated", "complete", "shard"}` (`shard`: `(I, N)` when one was assembled).
#[pyfunction]
#[pyo3(signature = (encoder, passages, output, chunk_size=4096, shard=None, passage_template=None, documents=false, words=None, max_tokens=None, overlap_tokens=0, truncate=false, vectors="f32", encode_only=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_index<'py>(
    py: Python<'py>,
    encoder: &Encoder,
    passages: PathBuf,
    output: PathBuf,
    chunk_size: usize,
    shard: Option<(usize, usize)>,
    passage_template: Option<String>,
    documents: bool,
    words: Option<usize>,
    max_tokens: Option<usize>,
    overlap_tokens: usize,
    truncate: bool,
    vectors: &str,
    encode_only: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let chunking = match words {
        Some(n) => densa::retrieval::Chunking::Words(n),
        None => densa::retrieval::Chunking::Tokens {
            max_tokens,
            overlap: overlap_tokens,
        },
    };
    let options = densa::IndexOptions {
        chunk_size,
        shard,
        assemble_shard: !encode_only,
        passage_template,
        documents: documents.then_some(chunking),
        truncate,
        vectors: densa::retrieval::VectorKind::parse(vectors)
            .map_err(InvalidInputError::new_err)?,
        // The encoder's bge-m3 heads, when its folder has them.
        m3: encoder.m3.clone(),
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
    d.set_item("shard", report.shard_assembled)?;
    d.set_item("truncated", report.truncated)?;
    d.set_item("complete", report.is_complete())?;
    Ok(d)
}

/// Builds the HNSW graph of the index in `path` (as `densa ann`): `vectors` is how the graph
/// holds them (`"f32"`, `"f16"`, `"int8"`, `"binary"`), `connectivity` HNSW's M,
/// `expansion_add` its efConstruction, `expansion_search` its default ef. Returns `{"file",
/// "bytes", "vectors"}`.
#[pyfunction]
#[pyo3(signature = (path, vectors="f32", connectivity=32, expansion_add=256, expansion_search=768))]
pub(crate) fn build_ann<'py>(
    py: Python<'py>,
    path: PathBuf,
    vectors: &str,
    connectivity: usize,
    expansion_add: usize,
    expansion_search: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let options = densa::retrieval::AnnOptions {
        vectors: densa::retrieval::VectorKind::parse(vectors)
            .map_err(InvalidInputError::new_err)?,
        connectivity,
        expansion_add,
        expansion_search,
    };
    let report = py
        .detach(|| densa::retrieval::build_ann(&path, &options, &|_, _| {}))
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("file", report.file)?;
    d.set_item("bytes", report.bytes)?;
    d.set_item("vectors", report.vectors)?;
    Ok(d)
}
