#!/usr/bin/env python3
"""Writes a BERT-base model folder with the Spanish DPR encoders' shape and random weights.

    pip install numpy safetensors
    python tools/make_bench_model.py /tmp/dpr-bert-base-random

768 hidden, 12 layers, 12 heads, FFN 3072, 512 positions, vocabulary 31002 (the stand-in
vocabulary in tests/fixtures/vocab), names `ctx_encoder.bert_model.*` as DPRContextEncoder. Weights
come from tools/prng.py, the same generator the full-shape test uses. For benchmarks only
(`densa bench`, tools/bench_peers.py): 440 MB, so it is never committed.
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


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_bench_model.py OUTPUT_DIR")
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, shape in shapes():
        full = "ctx_encoder.bert_model." + name
        center, scale = prng.center_scale(full)
        tensors[full] = prng.uniform(full, int(np.prod(shape)), center, scale).reshape(shape)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=1) + "\n")
    for f in ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(TOKENIZER_FROM / f, folder / f)
    print(f"{folder}: {sum(t.size for t in tensors.values())} parameters")


if __name__ == "__main__":
    main()
