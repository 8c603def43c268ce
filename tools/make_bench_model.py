#!/usr/bin/env python3
"""Writes a BERT-base model folder with the Spanish DPR encoders' shape and random weights.

    pip install numpy safetensors
    python tools/make_bench_model.py /tmp/dpr-bert-base-random
    python tools/make_bench_model.py /tmp/xlmr-base-random --family xlm-roberta
    python tools/make_bench_model.py /tmp/distilbert-base-random --family distilbert

768 hidden, 12 layers, 12 heads, FFN 3072, 512 positions, vocabulary 31002 (the stand-in
vocabulary in tests/fixtures/vocab), names `ctx_encoder.bert_model.*` as DPRContextEncoder. Weights
come from tools/prng.py, the same generator the full-shape test uses. For benchmarks only
(`densa bench`, tools/bench_peers.py): 440 MB, so it is never committed.

`--family xlm-roberta` writes the same shape as XLM-RoBERTa (plain names, 514 positions from
pad + 1, one token type, xlmr-tiny's Unigram tokenizer); `--family distilbert` as DistilBERT
(`transformer.layer.N` names, no token types, the same 12 layers): for checking that the
architectures run at BERT's speed at the same shape.
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
    if family == "distilbert":
        config = {"architectures": ["DistilBertModel"], "model_type": "distilbert", "vocab_size": 31002,
                  "dim": 768, "n_layers": 12, "n_heads": 12, "hidden_dim": 3072, "activation": "gelu",
                  "max_position_embeddings": 512, "sinusoidal_pos_embds": False, "pad_token_id": 0}
        return config, "", DISTILBERT_NAMES, {}, models / "distilbert-tiny", ["tokenizer.json"]
    sys.exit(f"unknown family {family!r} (bert, xlm-roberta, distilbert)")


def main():
    args = sys.argv[1:]
    family = "bert"
    if "--family" in args:
        at = args.index("--family")
        family = args[at + 1]
        del args[at:at + 2]
    if len(args) != 1:
        sys.exit("usage: make_bench_model.py OUTPUT_DIR [--family bert|xlm-roberta|distilbert]")
    config, prefix, renames, overrides, tokenizer_from, files = family_layout(family)
    folder = Path(args[0])
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, shape in shapes():
        if family == "distilbert" and "token_type" in name:
            continue
        shape = overrides.get(name, shape)
        for old, new in renames.items():
            name = name.replace(old, new)
        full = prefix + name
        center, scale = prng.center_scale(full.replace("layer_norm", "LayerNorm"))
        tensors[full] = prng.uniform(full, int(np.prod(shape)), center, scale).reshape(shape)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    for f in files:
        shutil.copy(tokenizer_from / f, folder / f)
    print(f"{folder}: {sum(t.size for t in tensors.values())} parameters")


if __name__ == "__main__":
    main()
