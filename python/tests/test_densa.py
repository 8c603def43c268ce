"""densa from Python against the CLI (bit for bit) and against transformers' and
sentence-transformers' committed goldens (tests/fixtures/golden/, made by tools/make_fixtures.py).

The CLI is DENSA_BIN, else target/release/densa or target/debug/densa of this repository.
"""
import json
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import densa

from cli_helpers import MODELS, REPO, bits, cli, cli_path, cli_vectors

GOLDEN = REPO / "tests" / "fixtures" / "golden"
DEMO = REPO / "examples" / "demo"
TEXTS = ["¿Quién escribió el Quijote?", "El Museo del Prado está en Madrid.", "", "hola " * 40]


def golden(name):
    """A golden safetensors file: ({tensor: array}, metadata)."""
    data = (GOLDEN / f"{name}.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    dtypes = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[key] = np.frombuffer(body[start:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors, header.get("__metadata__", {})


def test_encode_gives_the_cli_vectors_bit_for_bit():
    for model in ("st-tiny", "dpr-ctx-tiny", "bert-tiny", "xlmr-tiny", "modernbert-tiny"):
        encoder = densa.Encoder(str(MODELS / model))
        got = encoder.encode(TEXTS)
        assert got.dtype == np.float32 and got.shape == (len(TEXTS), encoder.dim)
        np.testing.assert_array_equal(bits(got), bits(cli_vectors(MODELS / model, TEXTS)))
        one = encoder.encode(TEXTS[0])
        assert one.shape == (encoder.dim,)
        np.testing.assert_array_equal(bits(one), bits(got[0]))
    # Per-call settings are the CLI's flags.
    encoder = densa.Encoder(str(MODELS / "st-tiny"))
    for kwargs, flags in [
        (dict(prompt_name="passage"), ["--prompt-name", "passage"]),
        (dict(prompt="consulta: "), ["--prompt", "consulta: "]),
        (dict(truncate_dim=8, normalize=True), ["--truncate-dim", "8", "--normalize"]),
    ]:
        got = encoder.encode(TEXTS, batch_size=3, **kwargs)
        np.testing.assert_array_equal(bits(got), bits(cli_vectors(MODELS / "st-tiny", TEXTS, *flags)))


def test_encode_pairs_gives_the_cli_vectors(tmp_path):
    pairs = [("El Prado", "Un museo de Madrid."), ("Cervantes", "Escribió el Quijote.")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"title": a, "text": b}) + "\n" for a, b in pairs), encoding="utf-8")
    want = np.array(cli("embed", "--model", MODELS / "dpr-ctx-tiny", "--input", path), dtype=np.float32)
    got = densa.Encoder(str(MODELS / "dpr-ctx-tiny")).encode_pairs(pairs)
    np.testing.assert_array_equal(bits(got), bits(want))


def test_st_tiny_matches_sentence_transformers_golden():
    tensors, metadata = golden("st-tiny")
    texts = json.loads(metadata["texts"])
    model = densa.SentenceTransformer(str(MODELS / "st-tiny"))
    cases = {
        "default": model.encode(texts),
        "passage": model.encode(texts, prompt_name="passage"),
        "none": model.encode(texts, prompt=""),
        "truncated": model.encode(texts, truncate_dim=8),
        "truncated_normalized": model.encode(texts, truncate_dim=8, normalize_embeddings=True),
    }
    for label, got in cases.items():
        want = tensors[label]
        assert got.shape == want.shape, label
        # As tests/sentence_transformers.rs: float rounding of a different engine.
        assert np.abs(got - want).max() <= 2e-6, (label, np.abs(got - want).max())


def test_all_minilm_l6_v2_matches_sentence_transformers():
    folder = os.environ.get("DENSA_MINILM_DIR")
    if not folder or not os.path.isdir(folder):
        if os.environ.get("DENSA_REQUIRE_MINILM"):
            pytest.fail("DENSA_REQUIRE_MINILM is set but DENSA_MINILM_DIR is not a folder")
        pytest.skip("DENSA_MINILM_DIR not set (.ci/run sets it)")
    reference = json.loads((GOLDEN / "all-minilm-l6-v2.json").read_text(encoding="utf-8"))
    model = densa.SentenceTransformer(folder)
    got = model.encode(reference["texts"])
    want = np.array(reference["embeddings"], dtype=np.float32)
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosines.min() >= 0.99999, cosines.min()
    assert model.get_sentence_embedding_dimension() == 384
    assert model.max_seq_length == 256


def test_the_sentence_transformers_shaped_api():
    model = densa.SentenceTransformer(str(MODELS / "st-tiny"))
    encoder = densa.Encoder(str(MODELS / "st-tiny"))
    assert model.get_sentence_embedding_dimension() == encoder.dim == 16
    assert model.prompts == {"document": "", "passage": "passage: ", "query": "query: "}
    assert model.default_prompt_name == "query"
    queries = model.encode_query(TEXTS[:2])
    np.testing.assert_array_equal(bits(queries), bits(encoder.encode(TEXTS[:2], prompt_name="query")))
    documents = model.encode_document(TEXTS[:2])
    np.testing.assert_array_equal(bits(documents), bits(encoder.encode(TEXTS[:2], prompt="")))
    scores = model.similarity(queries, documents)
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(scores, norm(queries) @ norm(documents).T, rtol=1e-6, atol=1e-6)
    listed = model.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 2
    tokens = model.tokenize(["hola", "hola mundo"])
    lengths = [len(t["ids"]) for t in encoder.tokenize(["hola", "hola mundo"])]
    assert tokens["input_ids"].shape == (2, max(lengths))
    assert tokens["attention_mask"].sum(1).tolist() == lengths
    assert encoder.pooling == "mean" and encoder.normalizes


def test_tokenize_gives_the_cli_tokens():
    encoder = densa.Encoder(str(MODELS / "bert-tiny"))
    want = cli("tokenize", "--model", MODELS / "bert-tiny", "--input", "-", stdin="".join(t + "\n" for t in TEXTS))
    assert encoder.tokenize(TEXTS) == want


def test_threads_share_one_encoder():
    encoder = densa.Encoder(str(MODELS / "bert-tiny"), threads=1)
    texts = [f"texto número {i} " * (1 + i % 7) for i in range(64)]
    serial = encoder.encode(texts)
    results = [None] * 4

    def work(k):
        results[k] = encoder.encode(texts[k::4])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(bits(results[k]), bits(serial[k::4]))


def test_bad_input_raises_the_right_exception():
    encoder = densa.Encoder(str(MODELS / "bert-tiny"))
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.encode(["a", 1])
    with pytest.raises(TypeError):
        encoder.encode(None)
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        encoder.encode([None])
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        encoder.encode_pairs(["not a pair"])
    with pytest.raises(FileNotFoundError, match="file not found"):
        densa.Encoder("/nonexistent/model")
    with pytest.raises(FileNotFoundError):
        densa.SentenceTransformer("/nonexistent/model")
    with pytest.raises(ValueError, match="precision"):
        densa.Encoder(str(MODELS / "bert-tiny"), precision="fp4")
    with pytest.raises(densa.InvalidInputError, match="batch_size"):
        encoder.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="truncate_dim"):
        encoder.encode(["a"], truncate_dim=10_000)
    with pytest.raises(ValueError, match="nope"):
        densa.Encoder(str(MODELS / "st-tiny")).encode(["a"], prompt_name="nope")
    with pytest.raises(densa.ModelError, match="names no question-answering head"):
        densa.Reader(str(MODELS / "bert-rerank-tiny"))
    with pytest.raises(ValueError):
        densa.Reader(str(MODELS / "bert-qa-tiny")).read("q", "c", max_seq_len=0)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_modernbert_classifiers_match_transformers_golden():
    # ModernBertForSequenceClassification with mean pooling (every bias on) and with cls pooling.
    for name in ("modernbert-rerank-tiny", "modernbert-cls-tiny"):
        tensors, metadata = golden(name)
        pairs = [tuple(p) for p in json.loads(metadata["pairs"])]
        logits = densa.Reranker(str(MODELS / name)).predict(pairs, raw=True)
        want = np.stack([tensors[f"pair{i}.logits"] for i in range(len(pairs))])
        np.testing.assert_allclose(np.asarray(logits).reshape(want.shape), want, atol=1e-5, rtol=0)


def test_reranker_and_reader_give_the_cli_outputs(tmp_path):
    pairs = [("¿Dónde está el Prado?", "El Prado está en Madrid."), ("¿Dónde está el Prado?", "Hola")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"query": q, "text": t}) + "\n" for q, t in pairs), encoding="utf-8")
    want = cli("rerank", "--model", MODELS / "bert-rerank-tiny", "--input", path)
    reranker = densa.Reranker(str(MODELS / "bert-rerank-tiny"))
    scores = reranker.predict(pairs)
    assert scores.shape == (2,)
    assert scores.tolist() == [np.float32(w["score"]).item() for w in want]
    logits = reranker.predict(pairs, raw=True)
    assert logits.tolist() == [np.float32(w["logit"]).item() for w in want]
    assert reranker.labels == ["LABEL_0"]

    question = "¿Quién escribió el Quijote?"
    context = "Miguel de Cervantes escribió el Quijote en Madrid. " * 30
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": question, "context": context}) + "\n", encoding="utf-8")
    want = cli("read", "--model", MODELS / "bert-qa-tiny", "--input", path, "--top-k", "3")
    reader = densa.Reader(str(MODELS / "bert-qa-tiny"))
    answers = reader.read(question, context, top_k=3)
    assert answers == want[0]["answers"]
    best = reader.read(question, context)
    assert best == want[0]["answers"][0]
    assert context[best["start"]:best["end"]] == best["answer"]


def test_build_index_and_search_give_densa_index_s(tmp_path):
    model = MODELS / "dpr-ctx-tiny"
    passages = DEMO / "pasajes.jsonl"
    cli_index = tmp_path / "cli"
    subprocess.run([cli_path(), "index", "--model", model, "--passages", passages, "--output", cli_index],
                   check=True, capture_output=True)
    encoder = densa.Encoder(str(model))
    report = densa.build_index(encoder, str(passages), str(tmp_path / "py"), chunk_size=4096)
    assert report["complete"] and report["passages"] == report["passages_encoded"]
    for name in ("vectors.npy", "passages.jsonl", "passages.offsets"):
        assert (tmp_path / "py" / name).read_bytes() == (cli_index / name).read_bytes(), name
    index = densa.Index(str(tmp_path / "py"))
    assert len(index) == report["passages"] and index.dim == encoder.dim
    question = "¿En qué ciudad está la Sagrada Familia?"
    want = cli("search", "--model", model, "--index", cli_index, "--top-k", "3", "--json", question)
    hits = index.search(encoder.encode(question), 3)
    assert [h["id"] for h in hits] == [w["id"] for w in want[0]["hits"]]
    assert [h["score"] for h in hits] == [np.float32(w["score"]).item() for w in want[0]["hits"]]
    many = index.search(encoder.encode([question, question]), 2)
    assert len(many) == 2 and [h["id"] for h in many[1]] == [w["id"] for w in want[0]["hits"][:2]]
    vectors = index.vectors()
    assert vectors.shape == (len(index), index.dim)
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.zeros((1, 1, encoder.dim), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="values each"):
        index.search(np.zeros((2, encoder.dim // 2), dtype=np.float32), 1)


def test_ray_indexing_writes_densa_index_s_bytes(tmp_path):
    ray = pytest.importorskip("ray")
    import densa.ray

    model = MODELS / "dpr-ctx-tiny"
    passages = DEMO / "pasajes.jsonl"
    cli_index = tmp_path / "cli"
    subprocess.run([cli_path(), "index", "--model", model, "--passages", passages, "--output", cli_index,
                    "--chunk-size", "4"], check=True, capture_output=True)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        report = densa.ray.build_index(str(model), str(passages), str(tmp_path / "ray"), workers=2,
                                       shards=3, chunk_size=4)
    finally:
        ray.shutdown()
    assert report["complete"] and report["passages_encoded"] == 0
    for name in ("vectors.npy", "passages.jsonl", "passages.offsets"):
        assert (tmp_path / "ray" / name).read_bytes() == (cli_index / name).read_bytes(), name
    assert not (tmp_path / "ray.shards").exists()
    shutil.rmtree(tmp_path / "ray")


def test_ray_serve_shards_answer_as_the_whole_index_hit_for_hit(tmp_path):
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    import densa.ray

    model = MODELS / "dpr-ctx-tiny"
    passages = DEMO / "pasajes.jsonl"
    # Two shards as two machines would build them, and the whole collection's index.
    shards = []
    for i in range(2):
        shards.append(tmp_path / f"shard-{i}")
        subprocess.run([cli_path(), "index", "--model", model, "--passages", passages, "--output",
                        shards[-1], "--chunk-size", "3", "--shard", f"{i}/2"],
                       check=True, capture_output=True)
    whole = tmp_path / "whole"
    subprocess.run([cli_path(), "index", "--model", model, "--passages", passages, "--output",
                    whole, "--chunk-size", "3"], check=True, capture_output=True)
    assert densa.Index(str(shards[1])).shard == (1, 2) and densa.Index(str(whole)).shard is None
    questions = [q for q in (DEMO / "preguntas.txt").read_text(encoding="utf-8").splitlines() if q]
    encoder = densa.Encoder(str(model))
    want = densa.Index(str(whole)).search(encoder.encode(questions), 5, exact=True)

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        router = densa.ray.serve_index([str(s) for s in shards], model=str(model), exact=True,
                                       shard_cpus=0.5, router_cpus=0.5, route_prefix=None)
        got = router.search.remote(questions, 5).result()
        by_vectors = router.search.remote(encoder.encode(questions[:2]), 5).result()
        with pytest.raises(Exception, match="at least 1"):
            router.search.remote(questions, 0).result()
    finally:
        serve.shutdown()
        ray.shutdown()
    assert len(got) == len(questions)
    for g, w in zip(got, want):
        assert [(h["id"], h["score"], h["collection_row"]) for h in g] == \
            [(h["id"], h["score"], h["index"]) for h in w]
    assert by_vectors == got[:2]
    with pytest.raises(ValueError, match="not the 2 shards"):
        densa.ray.serve_index([str(shards[0]), str(whole)])


def test_bge_m3_sparse_and_colbert_outputs_are_the_cli_s():
    """A bge-m3 folder (its sparse and ColBERT heads beside the trunk): encode(output_kind=...)
    gives `densa embed --output-kind`'s outputs bit for bit (those are checked against
    FlagEmbedding's definitions in tests/m3.rs)."""
    model = MODELS / "m3-tiny"
    m3 = densa.Encoder(model, threads=2)
    texts = ["¿Quién escribió Don Quijote?", "Cervantes, Cervantes y Cervantes.", "hola"]
    stdin = "".join(t + "\n" for t in texts)
    sparse = m3.encode(texts, output_kind="sparse")
    rows = cli("embed", "--model", model, "--output-kind", "sparse", "--input", "-", stdin=stdin)
    for got, row in zip(sparse, rows):
        assert sorted(got) == [entry["index"] for entry in row]
        for entry in row:
            assert np.float32(got[entry["index"]]) == np.float32(entry["value"])
    colbert = m3.encode(texts, output_kind="colbert")
    rows = cli("embed", "--model", model, "--output-kind", "colbert", "--input", "-", stdin=stdin)
    for got, row in zip(colbert, rows):
        assert got.dtype == np.float32 and got.shape == (len(row), len(row[0]))
        assert (bits(got) == bits(np.array(row, dtype=np.float32))).all()
    assert m3.encode(texts[0], output_kind="sparse") == sparse[0]
    with pytest.raises(densa.InvalidInputError, match="bge-m3"):
        densa.Encoder(MODELS / "st-tiny").encode("hola", output_kind="sparse")
    with pytest.raises(densa.InvalidInputError, match="output_kind"):
        m3.encode("hola", output_kind="splade")
    with pytest.raises(densa.InvalidInputError, match="dense vectors"):
        m3.encode("hola", output_kind="colbert", normalize=True)


def test_bge_m3_index_searched_by_mode_as_the_cli(tmp_path):
    """An index built with a bge-m3 folder, searched from Python with Index.search_texts in
    each mode: `densa search --mode --json`'s hits and scores."""
    model = MODELS / "m3-tiny"
    index_dir = tmp_path / "index"
    subprocess.run([cli_path(), "index", "--model", str(model), "--passages",
                    str(DEMO / "pasajes.jsonl"), "--output", str(index_dir)],
                   check=True, capture_output=True)
    index = densa.Index(index_dir)
    encoder = densa.Encoder(model, threads=2)
    question = "¿Quién pintó Las Meninas?"
    for mode in ("dense", "sparse", "hybrid"):
        rows = cli("search", "--model", model, "--index", index_dir, "--mode", mode, "--top-k", "4",
                   "--json", question)
        hits = index.search_texts(encoder, question, 4, mode=mode)
        assert [h["id"] for h in hits] == [h["id"] for h in rows[0]["hits"]]
        for got, want in zip(hits, rows[0]["hits"]):
            assert np.float32(got["score"]) == np.float32(want["score"])
            assert got["scores"]["sparse"] == want["scores"]["sparse"]
    with pytest.raises(densa.InvalidInputError, match="bge-m3"):
        index.search_texts(densa.Encoder(MODELS / "st-tiny"), question, 3)
