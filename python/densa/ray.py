"""Index a collection on a Ray cluster: Ray Data runs one `densa.Encoder` per actor, each actor
encodes a shard of the collection's chunks (`densa index --shard I/N`), and the chunks are
assembled into the same index layout `densa index` writes (so `densa search` and
`densa.Index` read it; the vectors are byte for byte those of one `densa index` run).

    import ray, densa.ray
    ray.init()
    report = densa.ray.build_index("models/dpr-ctx", "passages.jsonl", "index", workers=8)

The distribution is Ray's: densa adds no scheduler. Every worker must see `model`, `passages`
and `output` at the same paths (a shared filesystem), as with `--shard` on several machines.
"""
import os
import shutil

import numpy as np

from ._densa import Encoder
from ._densa import build_index as _build_index


class _ShardIndexer:
    """A Ray Data actor: loads the encoder once, then builds the shards it is given."""

    def __init__(self, model, passages, staging, shards, chunk_size, threads, precision,
                 passage_template):
        self.encoder = Encoder(model, threads=threads, precision=precision)
        self.passages = passages
        self.staging = staging
        self.shards = shards
        self.chunk_size = chunk_size
        self.passage_template = passage_template

    def __call__(self, batch):
        encoded = []
        for shard in batch["shard"]:
            shard = int(shard)
            report = _build_index(self.encoder, self.passages, _shard_dir(self.staging, shard),
                                  chunk_size=self.chunk_size, shard=(shard, self.shards),
                                  passage_template=self.passage_template)
            encoded.append(report["passages_encoded"])
        return {"shard": np.asarray(batch["shard"]), "passages_encoded": np.asarray(encoded)}


def _shard_dir(staging, shard):
    return os.path.join(staging, f"shard-{shard:05d}")


def build_index(model, passages, output, workers=2, shards=None, chunk_size=4096,
                threads_per_worker=1, precision="auto", passage_template=None):
    """Builds the index of `passages` (JSON lines `{"id", "title", "text"}`) with the encoder
    folder `model` into `output` on the current Ray cluster (`ray.init()` first), with
    `workers` actors of `threads_per_worker` threads each, the collection's chunks dealt into
    `shards` (default: `workers`) shards. Returns the assembling build's report
    (`densa.build_index`'s: `passages_encoded` 0 when the shards covered every chunk).
    """
    import ray.data

    shards = shards or workers
    if workers < 1 or shards < 1:
        raise ValueError("workers and shards must be at least 1")
    output = os.path.abspath(output)
    staging = output + ".shards"
    dataset = ray.data.from_items([{"shard": i} for i in range(shards)])
    dataset = dataset.map_batches(
        _ShardIndexer,
        fn_constructor_kwargs=dict(model=os.path.abspath(model), passages=os.path.abspath(passages),
                                   staging=staging, shards=shards, chunk_size=chunk_size,
                                   threads=threads_per_worker, precision=precision,
                                   passage_template=passage_template),
        concurrency=workers, batch_size=1, num_cpus=threads_per_worker)
    dataset.materialize()
    # Merging is copying every shard's chunks into one folder (as with --shard by hand); the
    # last build finds them all and only assembles.
    chunks = os.path.join(output, "chunks")
    os.makedirs(chunks, exist_ok=True)
    for shard in range(shards):
        shard_chunks = os.path.join(_shard_dir(staging, shard), "chunks")
        if os.path.isdir(shard_chunks):
            for name in sorted(os.listdir(shard_chunks)):
                os.replace(os.path.join(shard_chunks, name), os.path.join(chunks, name))
    encoder = Encoder(model, threads=threads_per_worker, precision=precision)
    report = _build_index(encoder, passages, output, chunk_size=chunk_size,
                          passage_template=passage_template)
    if not report["complete"]:
        raise RuntimeError(f"the index is not complete after assembling the shards: {report}")
    shutil.rmtree(staging, ignore_errors=True)
    return report
