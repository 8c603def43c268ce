"""The client libraries RAG frameworks call, unchanged, against a `densa serve` started here:
huggingface_hub's InferenceClient (TEI's routes), openai (OpenAI's embeddings and models),
cohere (Cohere's rerank, v1 and v2), LlamaIndex's TextEmbeddingsInference and LangChain's
OpenAIEmbeddings (LangChain's HuggingFaceEndpointEmbeddings no longer takes a server's URL,
only Hub repo ids). Each answer is compared
with the CLI's vectors and scores. A client library that is not installed is skipped with a
message naming it (`.ci/run` installs them all)."""
import json
import subprocess

import numpy as np
import pytest

from cli_helpers import MODELS, bits, cli, cli_path, cli_vectors

TEXTS = ["¿Quién escribió el Quijote?", "El Museo del Prado está en Madrid.", "hola mundo"]
QUESTION = "¿En qué ciudad está el Prado?"


def client(name, package=None):
    package = package or name
    return pytest.importorskip(name, reason=f"the {name} client library is not installed "
                                            f"(pip install {package}); .ci/run installs it")


def serve(*flags):
    """`densa serve` on st-tiny with FLAGS, on a free port: its base URL, then stopped."""
    process = subprocess.Popen(
        [cli_path(), "serve", "--model", str(MODELS / "st-tiny"), *flags, "--port", "0",
         "--threads", "2"],
        stderr=subprocess.PIPE, text=True)
    url = None
    for line in process.stderr:
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
            break
    if url is None:
        process.kill()
        pytest.fail("densa serve did not start: " + (process.stderr.read() or ""))
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    """With a cross-encoder (one label): /rerank and /v1/rerank."""
    yield from serve("--reranker", str(MODELS / "bert-rerank-tiny"))


@pytest.fixture(scope="module")
def classifier_server():
    """With a three-label classifier answering TEI's root route, as TEI serves one."""
    yield from serve("--classifier", str(MODELS / "xlmr-rerank-tiny"), "--root", "predict")


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def embeds_as_the_cli(embed_documents, embed_query):
    """A framework's document and query embedders give the CLI's vectors bit for bit."""
    want = cli_vectors(MODELS / "st-tiny", TEXTS)
    assert (bits(np.array(embed_documents(TEXTS), dtype=np.float32)) == bits(want)).all()
    assert (bits(np.array(embed_query(TEXTS[0]), dtype=np.float32)) == bits(want[0])).all()


def test_huggingface_hub_feature_extraction_and_sentence_similarity(server):
    hub = client("huggingface_hub")
    inference = hub.InferenceClient(base_url=server)
    want = cli_vectors(MODELS / "st-tiny", TEXTS)
    one = inference.feature_extraction(TEXTS[0])
    assert (bits(one) == bits(want[:1])).all()
    many = inference.feature_extraction(TEXTS)
    assert (bits(many) == bits(want)).all()
    scores = inference.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
    assert len(scores) == len(TEXTS) - 1
    for score, vector in zip(scores, want[1:]):
        assert abs(score - cosine(want[0], vector)) <= 1e-6


def test_huggingface_hub_text_classification(classifier_server):
    hub = client("huggingface_hub")
    inference = hub.InferenceClient(base_url=classifier_server)
    rows = cli("classify", "--model", MODELS / "xlmr-rerank-tiny", "--input", "-",
               stdin="".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    for text, row in zip(TEXTS, rows):
        best = int(np.argmax(row["logits"]))
        # TEI answers one text with a flat list of {label, score}, best first; the hub
        # client reads its first element: the best label with its softmax probability.
        top = inference.text_classification(text)
        assert top.label == row["label"]
        assert np.float32(top.score) == np.float32(row["scores"][best])
        # function_to_apply="none": the logit itself.
        raw = inference.text_classification(text, function_to_apply="none", top_k=1)
        assert raw.label == row["label"]
        assert np.float32(raw.score) == np.float32(row["logits"][best])


def test_openai_embeddings_models_and_token_ids(server):
    openai = client("openai")
    api = openai.OpenAI(base_url=server + "/v1", api_key="unused")
    want = cli_vectors(MODELS / "st-tiny", TEXTS)
    # The client asks for base64 unless told otherwise, and decodes it.
    default = api.embeddings.create(input=TEXTS, model="st-tiny")
    got = np.array([d.embedding for d in default.data], dtype=np.float32)
    assert (bits(got) == bits(want)).all()
    floats = api.embeddings.create(input=TEXTS, model="st-tiny", encoding_format="float")
    assert (bits(np.array([d.embedding for d in floats.data])) == bits(want)).all()
    short = api.embeddings.create(input=TEXTS, model="st-tiny", dimensions=8)
    want_short = cli_vectors(MODELS / "st-tiny", TEXTS, "--truncate-dim", "8", "--normalize")
    assert (bits(np.array([d.embedding for d in short.data])) == bits(want_short)).all()
    # Token ids, as LangChain's OpenAIEmbeddings sends them: the CLI tokenizer's ids (its
    # default prompt included) give the texts' vectors.
    ids = [row["ids"] for row in cli("tokenize", "--model", MODELS / "st-tiny", "--input", "-",
                                     stdin="".join(t + "\n" for t in TEXTS))]
    by_ids = api.embeddings.create(input=ids, model="st-tiny")
    assert (bits(np.array([d.embedding for d in by_ids.data])) == bits(want)).all()
    assert by_ids.usage.total_tokens == sum(len(i) for i in ids)
    with pytest.raises(openai.UnprocessableEntityError) as error:
        api.embeddings.create(input=[[0, 10**6]], model="st-tiny")
    assert "token id 1000000" in str(error.value)
    models = api.models.list()
    assert [m.id for m in models.data] == ["st-tiny"]


def test_cohere_rerank_v1_and_v2(server):
    cohere = client("cohere")
    pairs = "".join(json.dumps({"query": QUESTION, "text": t}) + "\n" for t in TEXTS)
    scores = [row["score"] for row in cli("rerank", "--model", MODELS / "bert-rerank-tiny",
                                          "--input", "-", stdin=pairs)]
    best = sorted(range(len(TEXTS)), key=lambda i: -scores[i])
    for api in (cohere.Client(base_url=server, api_key="unused"),
                cohere.ClientV2(base_url=server, api_key="unused")):
        reply = api.rerank(model="rr", query=QUESTION, documents=TEXTS, top_n=2)
        assert [r.index for r in reply.results] == best[:2]
        for r in reply.results:
            assert np.float32(r.relevance_score) == np.float32(scores[r.index])


def test_llama_index_text_embeddings_inference(server):
    tei = client("llama_index.embeddings.text_embeddings_inference",
                 "llama-index-embeddings-text-embeddings-inference")
    embeddings = tei.TextEmbeddingsInference(model_name="st-tiny", base_url=server, timeout=60)
    embeds_as_the_cli(embeddings.get_text_embedding_batch, embeddings.get_query_embedding)


def test_langchain_openai_embeddings(server):
    langchain_openai = client("langchain_openai", "langchain-openai")
    # check_embedding_ctx_length=False: texts, not tiktoken's ids (tiktoken fetches its
    # encoding from the internet, which CI machines do not reach).
    embeddings = langchain_openai.OpenAIEmbeddings(base_url=server + "/v1", api_key="unused",
                                                   model="st-tiny", check_embedding_ctx_length=False)
    embeds_as_the_cli(embeddings.embed_documents, embeddings.embed_query)


def test_errors_reach_each_client_as_its_own_exception(server):
    hub = client("huggingface_hub")
    with pytest.raises(hub.errors.HfHubHTTPError) as error:
        hub.InferenceClient(base_url=server).sentence_similarity("a", other_sentences=[])
    assert "empty" in str(error.value)
    openai = client("openai")
    api = openai.OpenAI(base_url=server + "/v1", api_key="unused")
    with pytest.raises(openai.UnprocessableEntityError):
        api.embeddings.create(input=[], model="st-tiny")
