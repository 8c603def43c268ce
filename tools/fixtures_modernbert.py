"""ModernBERT fixtures and goldens (steps of tools/make_fixtures.py: `modernbert-tiny`,
`modernbert-rerank-tiny`, `full-shape-modernbert`).

- modernbert-tiny: a ModernBertModel of 6 layers (global every third: G L L G L L), a window of 16
  (8 positions each side) so that most fixture texts are longer than it, different rotary bases for
  global and local layers, no biases (as published), a byte-level BPE tokenizer trained on Spanish
  text with ModernBERT's special tokens and template. Golden: every layer's hidden state as
  transformers reports it (embeddings, each layer's residual stream, the final norm of the last).
- modernbert-rerank-tiny: ModernBertForSequenceClassification, mean pooling, one label, with every
  bias on (attention, MLP, norms, head); modernbert-cls-tiny: cls pooling, two labels, no biases.
- full-shape-modernbert: ModernBERT-base's shape (22 layers of 768, GeGLU 1152, window 128,
  vocabulary 50368) with weights from tools/prng.py; only transformers' outputs are committed.
"""
import json

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file as save_numpy



def specials():
    return ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]


def train_tokenizer(folder, corpus):
    """Byte-level BPE as ModernBERT's (OLMo's) tokenizer, `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B [SEP]`."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials(),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "mask_token": "[MASK]"}, indent=1) + "\n")
    return tok


def redraw(model, seed):
    """Random weights; every norm's weight near 1 and every bias away from 0, so a dropped or
    misplaced term fails a test."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.4 * (torch.rand(p.shape, generator=g) - 0.5))
            elif name.endswith(".bias"):
                p.copy_(0.2 * (torch.rand(p.shape, generator=g) - 0.5))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def tiny_config(tok, **extra):
    base = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=6,
        num_attention_heads=4, max_position_embeddings=512, global_attn_every_n_layers=3, local_attention=16,
        global_rope_theta=160000.0, local_rope_theta=10000.0, norm_eps=1e-5,
        pad_token_id=tok.token_to_id("[PAD]"), cls_token_id=tok.token_to_id("[CLS]"),
        sep_token_id=tok.token_to_id("[SEP]"), bos_token_id=tok.token_to_id("[CLS]"),
        eos_token_id=tok.token_to_id("[SEP]"), attn_implementation="eager")
    base.update(extra)
    return transformers.ModernBertConfig(**base)


def make_modernbert_tiny(ctx):
    folder = ctx.fresh_folder("modernbert-tiny")
    tok = train_tokenizer(folder, ctx.spanish_corpus())
    model = transformers.ModernBertModel(tiny_config(tok)).eval()
    redraw(model, 21)
    model.save_pretrained(folder)
    assert model.config.layer_types[:3] == ["full_attention", "sliding_attention", "sliding_attention"]
    ctx.golden_from_tokenizer_json("modernbert-tiny", folder, model, lambda r: r.last_hidden_state[:, 0], 512,
                                   token_types=False)


def make_modernbert_rerank_tiny(ctx):
    """Sequence classifiers on modernbert-tiny's tokenizer: mean pooling with every bias on, and cls
    pooling without biases (labels named)."""
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(ctx.MODELS / "modernbert-tiny" / "tokenizer.json"))
    cfg = tiny_config(tok, num_labels=1, classifier_pooling="mean", attention_bias=True, mlp_bias=True,
                      norm_bias=True, classifier_bias=True)
    folder, model = ctx.head_fixture("modernbert-rerank-tiny", transformers.ModernBertForSequenceClassification,
                                     cfg, 22, "modernbert-tiny", redraw=redraw)
    ctx.rerank_golden("modernbert-rerank-tiny", folder, model, token_types=False)
    labels = {0: "negativo", 1: "positivo"}
    cfg = tiny_config(tok, num_labels=2, classifier_pooling="cls", id2label=labels,
                      label2id={v: k for k, v in labels.items()})
    folder, model = ctx.head_fixture("modernbert-cls-tiny", transformers.ModernBertForSequenceClassification,
                                     cfg, 23, "modernbert-tiny", redraw=redraw)
    ctx.rerank_golden("modernbert-cls-tiny", folder, model, token_types=False)


def make_full_shape_modernbert(ctx):
    """ModernBERT-base's shape with weights from tools/prng.py; token ids from modernbert-tiny's
    tokenizer.json; sequences up to 300 tokens, so the local layers' window (64 each side) matters."""
    cfg = transformers.ModernBertConfig(
        vocab_size=50368, hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12,
        max_position_embeddings=8192, global_attn_every_n_layers=3, local_attention=128,
        global_rope_theta=160000.0, local_rope_theta=10000.0, norm_eps=1e-5, pad_token_id=50283,
        attn_implementation="eager")
    model = transformers.ModernBertModel(cfg).eval()
    ctx.fill_from_prng(model)
    inputs = [("text", ctx.TEXTS[0]), ("pair", ctx.PAIRS[0]), ("text", ctx.LONG), ("text", ctx.TEXTS[7]),
              ("pair", ctx.PAIRS[3])]
    ctx.full_shape_golden("full-shape-modernbert", model, ctx.MODELS / "modernbert-tiny" / "tokenizer.json", inputs,
                          300)
