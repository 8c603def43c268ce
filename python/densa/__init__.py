"""densa: BERT-family text encoders on the CPU, with the vectors of Hugging Face transformers.

    import densa
    encoder = densa.Encoder("path/to/model")
    vectors = encoder.encode(["¿Quién escribió el Quijote?", "Cervantes"])   # (2, dim) float32

`densa.SentenceTransformer` is a drop-in for the part of sentence-transformers' class that
retrieval code uses; `densa.Reranker`, `densa.Reader`, `densa.Index`, `densa.build_index` and
`densa.build_ann` are the rest of the engine; `densa.ray` indexes a collection on a Ray cluster
and serves one too large for one machine as shards.
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
    build_ann,
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
    "build_ann",
    "build_index",
]
