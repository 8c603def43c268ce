"""densa: BERT-family text encoders on the CPU, with the vectors of Hugging Face transformers.

    import densa
    encoder = densa.Encoder("path/to/model")
    vectors = encoder.encode(["¿Quién escribió el Quijote?", "Cervantes"])   # (2, dim) float32

`densa.SentenceTransformer` is a drop-in for the part of sentence-transformers' class that
retrieval code uses; `densa.Reranker`, `densa.Reader`, `densa.Index` and `densa.build_index`
are the rest of the engine; `densa.ray` indexes a collection on a Ray cluster.
"""
from ._densa import (  # noqa: F401
    DensaError,
    Encoder,
    Index,
    InvalidInputError,
    ModelError,
    Reader,
    Reranker,
    __version__,
    build_index,
)
from .sentence_transformer import SentenceTransformer  # noqa: F401

__all__ = [
    "DensaError",
    "Encoder",
    "Index",
    "InvalidInputError",
    "ModelError",
    "Reader",
    "Reranker",
    "SentenceTransformer",
    "build_index",
]
