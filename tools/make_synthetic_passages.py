#!/usr/bin/env python3
"""Writes a synthetic passage collection for index and search benchmarks: N passages (default
100000) of 30 to 80 Spanish words drawn from tests/fixtures/vocab/es-wordpiece-31002.txt, with a
2-word title and an id, as JSON lines. Deterministic (seeded); meaningless text, realistic
lengths and tokenization.

    python3 tools/make_synthetic_passages.py /tmp/synthetic-100k.jsonl [N] [QA_OUT]

With QA_OUT it also writes 200 questions for `densa eval`: the first 8 words of 200 passages
drawn at random (seeded), each with its passage id as the gold answer.
"""
import json
import random
import sys
from pathlib import Path

VOCAB = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vocab" / "es-wordpiece-31002.txt"


def main():
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    words = [w for w in VOCAB.read_text(encoding="utf-8").split("\n") if w.isalpha() and len(w) > 2]
    rng = random.Random(20261126)
    with out.open("w", encoding="utf-8") as f:
        for i in range(n):
            title = " ".join(rng.choice(words).capitalize() for _ in range(2))
            text = " ".join(rng.choice(words) for _ in range(rng.randint(30, 80))) + "."
            f.write(json.dumps({"id": f"s{i:06}", "title": title, "text": text}, ensure_ascii=False) + "\n")
    print(f"wrote {n} passages to {out}")
    if len(sys.argv) > 3:
        qa = Path(sys.argv[3])
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
