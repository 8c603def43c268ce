#!/usr/bin/env python3
"""Writes tests/fixtures/golden/hostile-texts.json: the token ids that transformers gives for
hostile texts (right-to-left scripts, emoji sequences, combining accents, control characters,
odd whitespace, a 1 MB line), with the tokenizers of two fixture models.

Run by hand (never by CI), from the repository root:
    pip install transformers tokenizers
    python tools/make_hostile_golden.py

A text is stored as is, or (for the 1 MB line) as a recipe {"repeat": s, "times": n} that the
Rust test expands the same way, so the fixture stays small.
"""
import json
from pathlib import Path

import transformers

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"

TEXTS = [
    # Right-to-left scripts and bidirectional controls.
    "مرحبا بالعالم، هذه جملة عربية.",
    "שלום עולם, זה משפט בעברית.",
    "El árabe سلام y el hebreo שלום en una frase.",
    "\u202eesrever ni txet\u202c y \u200fmarca RTL\u200f",
    # Emoji sequences: ZWJ family, skin tone, flags, keycap, variation selector.
    "Familia 👨\u200d👩\u200d👧\u200d👦 y pulgar 👍🏽, banderas 🇪🇸🇲🇽, tecla 1️⃣, corazón ❤️.",
    "😀😃😄😁😆😅😂🤣",
    # Combining accents: NFD vs NFC, several marks on one letter, a lone mark.
    "Begon\u0303a y Begoña",
    "a\u0301rbol, árbol, A\u0301RBOL",
    "e\u0301\u0302\u0303 tres marcas",
    "\u0301 marca sola",
    # Control characters and odd whitespace.
    "NUL\x00en\x00medio",
    "\x01\x02\x03\x1b[31mrojo\x1b[0m\x7f",
    "no\u00a0rompible, ideográfico\u3000espacio, ancho\u200bcero, BOM\ufeffaquí",
    "línea\r\nnueva\ry\u2028separador\u2029párrafo",
    "\t\n\r ",
    "\x00",
    # CJK, Hangul, mixed scripts, full-width forms.
    "日本語のテキストと한국어 텍스트",
    "ＦＵＬＬ－ＷＩＤＴＨ　ｔｅｘｔ　１２３",
    "Ελληνικά και Русский текст",
    # Unicode edge code points (valid UTF-8): noncharacters, private use, the last code point.
    "\ufffe\uffff\ue000\U0010fffd fin",
    # Special-token look-alikes are plain text.
    "[CLS] [SEP] [PAD] [UNK] [MASK]",
    # The 1 MB line (expanded by the test from the recipe).
    {"repeat": "año ñandú 😀 ", "times": 65536},
]


def expand(text):
    return text["repeat"] * text["times"] if isinstance(text, dict) else text


def main():
    out = {"transformers": transformers.__version__, "texts": TEXTS, "models": {}}
    for name in ["bert-tiny", "dpr-ctx-tiny"]:
        folder = FIX / "models" / name
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        # What densa truncates to by default: min(512, max_position_embeddings).
        config = json.loads((folder / "config.json").read_text())
        max_length = min(512, config["max_position_embeddings"])
        ids = [tok(expand(t), truncation=True, max_length=max_length)["input_ids"] for t in TEXTS]
        out["models"][name] = {"tokenizer": type(tok).__name__, "max_length": max_length, "ids": ids}
    path = FIX / "golden" / "hostile-texts.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
