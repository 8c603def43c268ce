"""The subset of sentence-transformers' `SentenceTransformer` that retrieval code uses, on densa.

    from densa import SentenceTransformer          # instead of: from sentence_transformers import ...
    model = SentenceTransformer("path/to/model")
    embeddings = model.encode(["a sentence", "another"], normalize_embeddings=True)
    scores = model.similarity(embeddings, embeddings)

Only local folders (densa never downloads); the vectors are densa's (transformers' within
float rounding). Arguments that only make sense for torch (`device`, `convert_to_tensor`) are
accepted for compatibility; `convert_to_tensor=True` needs torch and returns a CPU tensor.
"""
import json
import os

import numpy as np

from ._densa import Encoder


class SentenceTransformer:
    def __init__(self, model_name_or_path, device=None, prompts=None, default_prompt_name=None,
                 truncate_dim=None, threads=0, precision="auto", **_ignored):
        if not os.path.isdir(model_name_or_path):
            raise FileNotFoundError(
                f"{model_name_or_path}: file not found (densa loads local model folders only)")
        self._encoder = Encoder(model_name_or_path, threads=threads, precision=precision)
        self.truncate_dim = truncate_dim
        self.prompts = dict(self._encoder.prompts)
        if prompts:
            self.prompts.update(prompts)
        self.default_prompt_name = default_prompt_name or self._encoder.default_prompt_name
        self.similarity_fn_name = _similarity_name(model_name_or_path)
        self.device = device or "cpu"

    @property
    def max_seq_length(self):
        return self._encoder.max_length

    def get_sentence_embedding_dimension(self):
        return self.truncate_dim or self._encoder.dim

    def encode(self, sentences, prompt_name=None, prompt=None, batch_size=32, show_progress_bar=None,
               output_value="sentence_embedding", precision="float32", convert_to_numpy=True,
               convert_to_tensor=False, device=None, normalize_embeddings=False, truncate_dim=None,
               **_ignored):
        if output_value != "sentence_embedding":
            raise ValueError(f"output_value={output_value!r}: densa returns sentence embeddings only")
        if precision != "float32":
            raise ValueError(f"precision={precision!r}: densa returns float32 embeddings")
        if prompt is None:
            name = prompt_name if prompt_name is not None else self.default_prompt_name
            if name is not None:
                if name not in self.prompts:
                    raise ValueError(f"prompt name {name!r} not found; the model has {sorted(self.prompts)}")
                prompt = self.prompts[name]
        embeddings = self._encoder.encode(
            sentences, batch_size=batch_size, prompt=prompt if prompt is not None else "",
            truncate_dim=truncate_dim or self.truncate_dim, normalize=bool(normalize_embeddings),
            show_progress_bar=bool(show_progress_bar))
        if convert_to_tensor:
            import torch
            return torch.from_numpy(embeddings)
        if not convert_to_numpy:
            return list(embeddings) if embeddings.ndim == 2 else embeddings
        return embeddings

    def encode_query(self, sentences, **kwargs):
        """`encode` with the folder's "query" prompt (sentence-transformers 5)."""
        if "prompt_name" not in kwargs and "prompt" not in kwargs and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        """`encode` with the folder's "document" (or "passage") prompt (sentence-transformers 5)."""
        if "prompt_name" not in kwargs and "prompt" not in kwargs:
            for name in ("document", "passage"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(sentences, **kwargs)

    def similarity(self, embeddings1, embeddings2):
        """Pairwise scores `(n, m)` by the folder's similarity function (cosine by default;
        `dot`, `euclidean` and `manhattan` as sentence-transformers defines them)."""
        a = np.atleast_2d(np.asarray(embeddings1, dtype=np.float32))
        b = np.atleast_2d(np.asarray(embeddings2, dtype=np.float32))
        name = self.similarity_fn_name
        if name == "cosine":
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
            b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
            return a @ b.T
        if name == "dot":
            return a @ b.T
        if name == "euclidean":
            return -np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        if name == "manhattan":
            return -np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)
        raise ValueError(f"similarity function {name!r} is not supported")

    def tokenize(self, texts):
        """`{"input_ids", "attention_mask", "token_type_ids"}` as padded int64 numpy arrays."""
        tokens = self._encoder.tokenize(texts)
        width = max((len(t["ids"]) for t in tokens), default=0)
        out = {k: np.zeros((len(tokens), width), dtype=np.int64)
               for k in ("input_ids", "attention_mask", "token_type_ids")}
        for i, t in enumerate(tokens):
            n = len(t["ids"])
            out["input_ids"][i, :n] = t["ids"]
            out["attention_mask"][i, :n] = 1
            out["token_type_ids"][i, :n] = t["type_ids"]
        return out

    def __repr__(self):
        return f"densa.SentenceTransformer({self._encoder!r})"


def _similarity_name(folder):
    path = os.path.join(folder, "config_sentence_transformers.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("similarity_fn_name") or "cosine"
    except (OSError, ValueError):
        return "cosine"
