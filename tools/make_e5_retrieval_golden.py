#!/usr/bin/env python3
"""Writes tests/fixtures/golden/e5-retrieval.json: multilingual-e5-small's ranking of the Spanish
QA set (tests/fixtures/accuracy/) computed by transformers, for tests/e5_retrieval.rs.

    bash ../shared/models/multilingual-e5-small/build.sh /tmp/me5
    python tools/make_e5_retrieval_golden.py /tmp/me5

e5 as its model card prescribes: "passage: " before each passage (here "{title}. {text}"),
"query: " before each question, mean pooling over the real tokens, L2 normalisation, inner
product. Token ids come from the `tokenizers` library reading the folder's tokenizer.json (the
authority on what it means), truncated to 512.
"""
import json
import sys
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
ACC = ROOT / "tests" / "fixtures" / "accuracy"
OUT = ROOT / "tests" / "fixtures" / "golden" / "e5-retrieval.json"


def embed(model, tok, texts):
    vectors = []
    for text in texts:
        ids = torch.tensor([tok.encode(text).ids])
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           token_type_ids=torch.zeros_like(ids)).last_hidden_state[0]
        v = hidden.double().mean(0)
        vectors.append((v / v.norm()).numpy())
    return np.stack(vectors)


def main(model_dir):
    model_dir = Path(model_dir)
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(512)
    model = transformers.BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    passages = [json.loads(line) for line in (ACC / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    questions = [json.loads(line) for line in (ACC / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    p = embed(model, tok, [f"passage: {x['title']}. {x['text']}" for x in passages])
    q = embed(model, tok, [f"query: {x['question']}" for x in questions])
    scores = q @ p.T
    ids = [x["id"] for x in passages]
    ranks, top = [], []
    for j, question in enumerate(questions):
        gold = ids.index(question["passage_id"])
        ranks.append(1 + int((scores[j] > scores[j, gold]).sum()))
        order = np.argsort(-scores[j], kind="stable")[:10]
        top.append([{"id": ids[i], "score": float(scores[j, i])} for i in order])
    ranks = np.array(ranks)
    metrics = {"recall@1": float((ranks <= 1).mean()), "recall@5": float((ranks <= 5).mean()),
               "recall@20": float((ranks <= 20).mean()), "mrr": float((1.0 / ranks).mean()),
               "questions": len(questions)}
    OUT.write_text(json.dumps({
        "model": "multilingual-e5-small (../shared/models/multilingual-e5-small/build.sh)",
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
        "metrics": metrics, "gold_ranks": ranks.tolist(), "top10": top,
    }, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main(sys.argv[1])
