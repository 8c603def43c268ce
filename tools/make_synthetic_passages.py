#!/usr/bin/env python3
"""Writes a synthetic passage collection for index and search benchmarks: N passages (default
100000) of 30 to 80 Spanish words drawn from tests/fixtures/vocab/es-wordpiece-31002.txt, with a
2-word title and an id, as JSON lines. Deterministic (seeded); meaningless text, realistic
lengths and tokenization.

    python3 tools/make_synthetic_passages.py /tmp/synthetic-100k.jsonl [N] [QA_OUT]
    python3 tools/make_synthetic_passages.py --spread /tmp/spread-300.jsonl 300

`--spread` draws lengths the way a real collection spreads them instead (documents of 1 to 5
passages, from a one-line stub to a long section: 14 to 440 words, log-uniform, about 20 to 450
tokens as (title, text) pairs), for throughput benchmarks where padding matters
(tools/bench_collection.py).

With QA_OUT it also writes 200 questions for `densa eval`: the first 8 words of 200 passages
drawn at random (seeded), each with its passage id as the gold answer.
"""
import json
import math
import random
import sys
from pathlib import Path

VOCAB = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vocab" / "es-wordpiece-31002.txt"


def spread_word_counts(rng, n):
    """Word counts of n passages: documents of 1 to 5 passages; a document's first passage is
    drawn log-uniform over 14..440 words, its later ones near the document's own length."""
    counts = []
    while len(counts) < n:
        base = math.exp(rng.uniform(math.log(14), math.log(440)))
        for _ in range(rng.randint(1, 5)):
            counts.append(int(min(440, max(14, base * rng.uniform(0.6, 1.4)))))
    return counts[:n]


def main():
    args = sys.argv[1:]
    spread = "--spread" in args
    args = [a for a in args if a != "--spread"]
    out = Path(args[0])
    n = int(args[1]) if len(args) > 1 else 100_000
    words = [w for w in VOCAB.read_text(encoding="utf-8").split("\n") if w.isalpha() and len(w) > 2]
    rng = random.Random(20261126)
    counts = spread_word_counts(rng, n) if spread else [rng.randint(30, 80) for _ in range(n)]
    with out.open("w", encoding="utf-8") as f:
        for i, count in enumerate(counts):
            title = " ".join(rng.choice(words).capitalize() for _ in range(2))
            text = " ".join(rng.choice(words) for _ in range(count)) + "."
            f.write(json.dumps({"id": f"s{i:06}", "title": title, "text": text}, ensure_ascii=False) + "\n")
    print(f"wrote {n} passages to {out}")
    if len(args) > 2:
        qa = Path(args[2])
        lines = out.read_text(encoding="utf-8").splitlines()
        pick = random.Random(7)
        with qa.open("w", encoding="utf-8") as f:
            for i in pick.sample(range(len(lines)), 200):
                p = json.loads(lines[i])
                question = " ".join(p["text"].split()[:8]) + "?"
                f.write(json.dumps({"question": question, "passage_id": p["id"]}, ensure_ascii=False) + "\n")
        print(f"wrote 200 questions to {qa}")


if __name__ == "__main__":
    main()
