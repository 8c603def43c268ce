#!/usr/bin/env python3
"""Writes a BERT-base model folder with the Spanish DPR encoders' shape and random weights.

    pip install numpy safetensors
    python tools/make_bench_model.py /tmp/dpr-bert-base-random
    python tools/make_bench_model.py /tmp/xlmr-base-random --family xlm-roberta
    python tools/make_bench_model.py /tmp/distilbert-base-random --family distilbert
    python tools/make_bench_model.py /tmp/bert-st-base-random --family bert-st
    python tools/make_bench_model.py /tmp/bert-rerank-base-random --head rerank
    python tools/make_bench_model.py /tmp/bert-qa-base-random --head read

768 hidden, 12 layers, 12 heads, FFN 3072, 512 positions, vocabulary 31002 (the stand-in
vocabulary in tests/fixtures/vocab), names `ctx_encoder.bert_model.*` as DPRContextEncoder. Weights
come from tools/prng.py, the same generator the full-shape test uses. For benchmarks only
(`densa bench`, tools/bench_peers.py): 440 MB, so it is never committed.

`--family xlm-roberta` writes the same shape as XLM-RoBERTa (plain names, 514 positions from
pad + 1, one token type, xlmr-tiny's Unigram tokenizer); `--family distilbert` as DistilBERT
(`transformer.layer.N` names, no token types, the same 12 layers): for checking that the
architectures run at BERT's speed at the same shape.

`--family modernbert` writes ModernBERT-base's shape instead (answerdotai/ModernBERT-base's
config.json: 22 layers of 768, 12 heads, GeGLU 1152, every third layer global and the others within
a window of 128, rotary bases 160000 / 10000, no biases, vocabulary 50368, plain `ModernBertModel`
names) with modernbert-tiny's byte-level BPE tokenizer: what `densa bench` and
tools/bench_peers.py time for issue 26.

`--family bert-st` writes the same BERT as a sentence-transformers folder (plain `BertModel` names,
modules.json with [CLS] pooling, as DPR pools): what embedding servers (densa serve, infinity,
sentence-transformers behind FastAPI) load alike, for tools/bench_serve.py.

`--head rerank` writes BERT-base as BertForSequenceClassification (`bert.*`, the tanh pooler,
`classifier` with one label: a cross-encoder); `--head read` as BertForQuestionAnswering
(`bert.*` without a pooler, `qa_outputs` of 2): the shapes `densa bench --head` and
`tools/bench_peers.py --head` time.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).parent))
import prng  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_FROM = ROOT / "tests" / "fixtures" / "models" / "dpr-ctx-tiny"

CONFIG = {
    "architectures": ["DPRContextEncoder"], "model_type": "dpr", "vocab_size": 31002, "hidden_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
    "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 1,
    "projection_dim": 0, "position_embedding_type": "absolute", "initializer_range": 0.02,
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
}


def shapes():
    h, f = CONFIG["hidden_size"], CONFIG["intermediate_size"]
    out = [("embeddings.word_embeddings.weight", (CONFIG["vocab_size"], h)),
           ("embeddings.position_embeddings.weight", (CONFIG["max_position_embeddings"], h)),
           ("embeddings.token_type_embeddings.weight", (CONFIG["type_vocab_size"], h)),
           ("embeddings.LayerNorm.weight", (h,)), ("embeddings.LayerNorm.bias", (h,))]
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name, o, n in [("attention.self.query", h, h), ("attention.self.key", h, h), ("attention.self.value", h, h),
                           ("attention.output.dense", h, h), ("intermediate.dense", f, h), ("output.dense", h, f)]:
            out += [(f"{p}.{name}.weight", (o, n)), (f"{p}.{name}.bias", (o,))]
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"]:
            out += [(f"{p}.{ln}.weight", (h,)), (f"{p}.{ln}.bias", (h,))]
    return out


DISTILBERT_NAMES = {
    "encoder.layer": "transformer.layer", "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin", "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin", "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1", "output.dense": "ffn.lin2", "output.LayerNorm": "output_layer_norm",
}


MODERNBERT_CONFIG = {
    "architectures": ["ModernBertModel"], "model_type": "modernbert", "vocab_size": 50368, "hidden_size": 768,
    "num_hidden_layers": 22, "num_attention_heads": 12, "intermediate_size": 1152, "hidden_activation": "gelu",
    "max_position_embeddings": 8192, "global_attn_every_n_layers": 3, "local_attention": 128,
    "global_rope_theta": 160000.0, "local_rope_theta": 10000.0, "norm_eps": 1e-5, "norm_bias": False,
    "attention_bias": False, "mlp_bias": False, "pad_token_id": 50283, "bos_token_id": 50281,
    "eos_token_id": 50282, "cls_token_id": 50281, "sep_token_id": 50282, "classifier_pooling": "mean",
}


def modernbert_shapes():
    h, f = MODERNBERT_CONFIG["hidden_size"], MODERNBERT_CONFIG["intermediate_size"]
    out = [("embeddings.tok_embeddings.weight", (MODERNBERT_CONFIG["vocab_size"], h)), ("embeddings.norm.weight", (h,))]
    for i in range(MODERNBERT_CONFIG["num_hidden_layers"]):
        p = f"layers.{i}"
        if i > 0:
            out.append((f"{p}.attn_norm.weight", (h,)))
        out += [(f"{p}.attn.Wqkv.weight", (3 * h, h)), (f"{p}.attn.Wo.weight", (h, h)), (f"{p}.mlp_norm.weight", (h,)),
                (f"{p}.mlp.Wi.weight", (2 * f, h)), (f"{p}.mlp.Wo.weight", (h, f))]
    return out + [("final_norm.weight", (h,))]


def family_layout(family):
    """(config, tensor-name prefix, name mapping, shape overrides, tokenizer fixture, files)."""
    if family == "bert":
        return CONFIG, "ctx_encoder.bert_model.", {}, {}, TOKENIZER_FROM, [
            "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
    models = ROOT / "tests" / "fixtures" / "models"
    if family == "xlm-roberta":
        config = dict(CONFIG, architectures=["XLMRobertaModel"], model_type="xlm-roberta",
                      max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
        overrides = {"embeddings.position_embeddings.weight": (514, 768),
                     "embeddings.token_type_embeddings.weight": (1, 768)}
        return config, "", {}, overrides, models / "xlmr-tiny", ["tokenizer.json"]
    if family == "bert-st":
        config = dict(CONFIG, architectures=["BertModel"], model_type="bert")
        return config, "", {}, {}, TOKENIZER_FROM, ["vocab.txt", "tokenizer_config.json",
                                                    "special_tokens_map.json"]
    if family == "modernbert":
        return MODERNBERT_CONFIG, "", {}, {}, models / "modernbert-tiny", ["tokenizer.json", "special_tokens_map.json"]
    if family == "distilbert":
        config = {"architectures": ["DistilBertModel"], "model_type": "distilbert", "vocab_size": 31002,
                  "dim": 768, "n_layers": 12, "n_heads": 12, "hidden_dim": 3072, "activation": "gelu",
                  "max_position_embeddings": 512, "sinusoidal_pos_embds": False, "pad_token_id": 0}
        return config, "", DISTILBERT_NAMES, {}, models / "distilbert-tiny", ["tokenizer.json"]
    sys.exit(f"unknown family {family!r} (bert, bert-st, xlm-roberta, distilbert, modernbert)")


def head_layout(head, config):
    """BERT-base with a task head: (config, prefix, extra tensors' names and shapes)."""
    h = config["hidden_size"]
    if head == "rerank":
        config = dict(config, architectures=["BertForSequenceClassification"], model_type="bert",
                      num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
        return config, "bert.", [("bert.pooler.dense.weight", (h, h)), ("bert.pooler.dense.bias", (h,)),
                                 ("classifier.weight", (1, h)), ("classifier.bias", (1,))]
    if head == "read":
        config = dict(config, architectures=["BertForQuestionAnswering"], model_type="bert")
        return config, "bert.", [("qa_outputs.weight", (2, h)), ("qa_outputs.bias", (2,))]
    sys.exit(f"unknown head {head!r} (rerank, read)")


def take_flag(args, flag, default):
    if flag not in args:
        return default
    at = args.index(flag)
    value = args[at + 1]
    del args[at:at + 2]
    return value


def main():
    args = sys.argv[1:]
    family = take_flag(args, "--family", "bert")
    head = take_flag(args, "--head", None)
    if len(args) != 1 or (head and family != "bert"):
        sys.exit("usage: make_bench_model.py OUTPUT_DIR [--family bert|bert-st|xlm-roberta|distilbert|modernbert | --head rerank|read]")
    config, prefix, renames, overrides, tokenizer_from, files = family_layout(family)
    extra = []
    if head:
        config, prefix, extra = head_layout(head, config)
    folder = Path(args[0])
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, shape in modernbert_shapes() if family == "modernbert" else shapes():
        if family == "distilbert" and "token_type" in name:
            continue
        shape = overrides.get(name, shape)
        for old, new in renames.items():
            name = name.replace(old, new)
        names.append((prefix + name, shape))
    tensors = {}
    for full, shape in names + extra:
        center, scale = prng.center_scale(full.replace("layer_norm", "LayerNorm"))
        tensors[full] = prng.uniform(full, int(np.prod(shape)), center, scale).reshape(shape)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    for f in files:
        shutil.copy(tokenizer_from / f, folder / f)
    if family == "bert-st":
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        (folder / "modules.json").write_text(json.dumps(modules, indent=1) + "\n")
        (folder / "1_Pooling").mkdir(exist_ok=True)
        pooling = {"word_embedding_dimension": 768, "pooling_mode_cls_token": True,
                   "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False}
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=1) + "\n")
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}) + "\n")
    print(f"{folder}: {sum(t.size for t in tensors.values())} parameters")


if __name__ == "__main__":
    main()
