"""densa on a Ray cluster: indexing with Ray Data, serving a sharded index with Ray Serve.

Indexing: Ray Data runs one `densa.Encoder` per actor, each actor encodes a shard of the
collection's chunks (`densa index --shard I/N`), and the chunks are assembled into the same
index layout `densa index` writes (so `densa search` and `densa.Index` read it; the vectors are
byte for byte those of one `densa index` run), or left as N shard folders, each its shard's
own index, for a collection too large for one machine:

    import ray, densa.ray
    ray.init()
    report = densa.ray.build_index("models/dpr-ctx", "passages.jsonl", "index", workers=8)
    shards = densa.ray.build_shards("models/dpr-ctx", "passages.jsonl", "shards", shards=4)

Serving: one Ray Serve deployment per shard folder (one replica each, the shard's vectors and
graph memory-mapped on its node) and a router that encodes each question once, fans it out to
every shard and merges their top-k into the whole collection's (by score, ties to the lower
row of the collection, as one index orders them):

    router = densa.ray.serve_index(shards, model="models/dpr-question")
    hits = router.search.remote(["¿Quién escribió el Quijote?"], 10).result()

The distribution is Ray's: densa adds no scheduler. Every worker must see `model`, `passages`
and the folders at the same paths (a shared filesystem), as with `--shard` on several machines.
"""
import asyncio
import heapq
import os
import shutil

import numpy as np

from ._densa import Encoder, Index
from ._densa import build_index as _build_index


class _ShardIndexer:
    """A Ray Data actor: loads the encoder once, then builds the shards it is given."""

    def __init__(self, model, passages, folder, shards, chunk_size, threads, precision,
                 passage_template, encode_only, options):
        self.encoder = Encoder(model, threads=threads, precision=precision)
        self.passages = passages
        self.folder = folder
        self.shards = shards
        self.chunk_size = chunk_size
        self.passage_template = passage_template
        self.encode_only = encode_only
        self.options = options

    def __call__(self, batch):
        encoded = []
        for shard in batch["shard"]:
            shard = int(shard)
            report = _build_index(self.encoder, self.passages, _shard_dir(self.folder, shard),
                                  chunk_size=self.chunk_size, shard=(shard, self.shards),
                                  passage_template=self.passage_template,
                                  encode_only=self.encode_only, **self.options)
            encoded.append(report["passages_encoded"])
        return {"shard": np.asarray(batch["shard"]), "passages_encoded": np.asarray(encoded)}


def _shard_dir(folder, shard):
    return os.path.join(folder, f"shard-{shard:05d}")


def _encode_shards(model, passages, folder, workers, shards, chunk_size, threads_per_worker,
                   precision, passage_template, encode_only, options=None):
    """Runs `densa index --shard I/N` for every I on `workers` Ray Data actors, into
    `folder/shard-0000I`."""
    import ray.data

    if workers < 1 or shards < 1:
        raise ValueError("workers and shards must be at least 1")
    dataset = ray.data.from_items([{"shard": i} for i in range(shards)])
    dataset = dataset.map_batches(
        _ShardIndexer,
        fn_constructor_kwargs=dict(model=os.path.abspath(model), passages=os.path.abspath(passages),
                                   folder=folder, shards=shards, chunk_size=chunk_size,
                                   threads=threads_per_worker, precision=precision,
                                   passage_template=passage_template, encode_only=encode_only,
                                   options=options or {}),
        concurrency=workers, batch_size=1, num_cpus=threads_per_worker)
    dataset.materialize()


def build_index(model, passages, output, workers=2, shards=None, chunk_size=4096,
                threads_per_worker=1, precision="auto", passage_template=None):
    """Builds the index of `passages` (JSON lines `{"id", "title", "text"}`) with the encoder
    folder `model` into `output` on the current Ray cluster (`ray.init()` first), with
    `workers` actors of `threads_per_worker` threads each, the collection's chunks dealt into
    `shards` (default: `workers`) shards. Returns the assembling build's report
    (`densa.build_index`'s: `passages_encoded` 0 when the shards covered every chunk).
    """
    shards = shards or workers
    output = os.path.abspath(output)
    staging = output + ".shards"
    _encode_shards(model, passages, staging, workers, shards, chunk_size, threads_per_worker,
                   precision, passage_template, encode_only=True)
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


def build_shards(model, passages, output, shards, workers=None, chunk_size=4096,
                 threads_per_worker=1, precision="auto", passage_template=None, vectors="f32",
                 keep_chunks=False):
    """Builds the index of `passages` as `shards` shard folders `output/shard-0000I`, each
    shard I's own index (`densa index --shard I/N`: the chunks `k` with `k % N == I`), on
    `workers` (default: `shards`) Ray Data actors. `keep_chunks` keeps each shard's encoded
    chunks, so that copying them all into one folder can later assemble the whole index.
    Returns the shard folders, in order, for `serve_index`.
    """
    output = os.path.abspath(output)
    _encode_shards(model, passages, output, workers or shards, shards, chunk_size,
                   threads_per_worker, precision, passage_template, encode_only=False,
                   options={"vectors": vectors})
    folders = [_shard_dir(output, i) for i in range(shards)]
    for folder in folders:
        if Index(folder, exact=True).shard is None:
            raise RuntimeError(f"{folder} is not a complete shard after building")
        if not keep_chunks:
            shutil.rmtree(os.path.join(folder, "chunks"), ignore_errors=True)
    return folders


class ShardSearcher:
    """One shard folder, searched: a Ray Serve deployment's class (`serve_index` makes one
    deployment of one replica per shard)."""

    def __init__(self, path, exact=None, ef=None, rescore=None):
        self.index = Index(path, exact=exact is True)
        self.path = path
        self.options = dict(exact=exact, ef=ef, rescore=rescore)

    def search(self, query_vectors, k):
        vectors = np.ascontiguousarray(query_vectors, dtype=np.float32)
        return self.index.search(vectors, k, **self.options)

    def describe(self):
        return {"path": self.path, "passages": len(self.index), "dim": self.index.dim,
                "shard": self.index.shard}


def merge_hits(per_shard, k):
    """The best `k` of the shards' hit lists for one query: by score, ties to the lower row of
    the whole collection (`collection_row`), the order one index of the collection gives."""
    hits = (hit for shard_hits in per_shard for hit in shard_hits)
    return heapq.nsmallest(k, hits, key=lambda h: (-h["score"], h["collection_row"]))


class Router:
    """Encodes questions once (with the question encoder `model`, if given), fans them out to
    every shard and merges their top-k: a Ray Serve deployment's class. Over HTTP: POST
    `{"questions": [...], "k": 10}` (or `"question": "..."`) returns `{"results": [hits per
    question]}`."""

    def __init__(self, shards, model=None, encoder_options=None):
        self.shards = list(shards)
        self.encoder = Encoder(model, **(encoder_options or {})) if model else None

    def _vectors(self, queries):
        if isinstance(queries, str) or (isinstance(queries, (list, tuple)) and queries
                                        and all(isinstance(q, str) for q in queries)):
            if self.encoder is None:
                raise ValueError("this router has no question encoder (model=None): send query vectors")
            texts = [queries] if isinstance(queries, str) else list(queries)
            return self.encoder.encode(texts)
        vectors = np.asarray(queries, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if vectors.ndim != 2:
            raise ValueError(f"query vectors of shape {vectors.shape}: pass (dim,) or (queries, dim)")
        return vectors

    async def search(self, queries, k=10):
        """Per query, the collection's `k` best passages (the hits of `densa.Index.search`)."""
        if k < 1:
            raise ValueError("k must be at least 1")
        vectors = self._vectors(queries)
        answers = await asyncio.gather(*(shard.search.remote(vectors, k) for shard in self.shards))
        return [merge_hits([answer[j] for answer in answers], k) for j in range(len(vectors))]

    async def __call__(self, request):
        body = await request.json()
        questions = body.get("questions", body.get("question"))
        if questions is None:
            raise ValueError('send {"questions": [...], "k": 10} or {"question": "..."}')
        return {"results": await self.search(questions, int(body.get("k", 10)))}


def serve_index(shards, model=None, encoder_options=None, exact=None, ef=None, rescore=None,
                name="densa", route_prefix="/search", shard_cpus=1.0, router_cpus=1.0):
    """Serves the shard folders `shards` (from `build_shards` or `densa index --shard I/N`) on
    the current Ray cluster with Ray Serve: one deployment of one replica per shard and a
    router (the question encoder `model`, if given, with `encoder_options` such as
    `{"prompt_name": "query"}`). `exact`, `ef` and `rescore` are `densa.Index.search`'s.
    Returns the router's handle: `handle.search.remote(questions_or_vectors, k).result()`;
    HTTP on `route_prefix` (`None`: handles only, and Serve, if this starts it, runs no HTTP
    proxy).
    """
    from ray import serve

    if route_prefix is None:
        serve.start(proxy_location="Disabled")
    folders = [os.path.abspath(s) for s in shards]
    if not folders:
        raise ValueError("no shard folders")
    described = [Index(f, exact=True) for f in folders]
    dims = {index.dim for index in described}
    if len(dims) != 1:
        raise ValueError(f"the shards hold vectors of different dimensions: {sorted(dims)}")
    marks = [index.shard for index in described]
    if len(folders) > 1 and (None in marks or sorted(m[0] for m in marks) != list(range(len(folders)))
                             or {m[1] for m in marks} != {len(folders)}):
        raise ValueError(f"not the {len(folders)} shards of one collection: {marks}")
    shard_deployment = serve.deployment(ShardSearcher, num_replicas=1,
                                        ray_actor_options={"num_cpus": shard_cpus})
    bound = [shard_deployment.options(name=f"{name}-shard-{i}").bind(f, exact, ef, rescore)
             for i, f in enumerate(folders)]
    router = serve.deployment(Router, name=f"{name}-router",
                              ray_actor_options={"num_cpus": router_cpus})
    return serve.run(router.bind(bound, model, encoder_options), name=name,
                     route_prefix=route_prefix)
