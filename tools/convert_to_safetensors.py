#!/usr/bin/env python3
"""Converts a model folder's PyTorch pickles into safetensors files, which densa reads.

    pip install torch safetensors
    python tools/convert_to_safetensors.py MODEL_DIR

- `pytorch_model.bin` becomes `model.safetensors` (the Spanish DPR encoders, and many 2021-era
  checkpoints, are published as pytorch_model.bin only);
- BAAI/bge-m3's heads beside the trunk, `sparse_linear.pt` and `colbert_linear.pt` (state dicts of
  `torch.nn.Linear`), become `sparse_linear.safetensors` and `colbert_linear.safetensors` with the
  same tensor names (`weight`, `bias`).

Each pickle is loaded with weights_only=True (no code runs); tensors are written as they are (dtype
kept), shared storage is copied apart, and each file is written next to its original. A folder
whose model.safetensors already exists keeps it (only the pickles present are converted).
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

# (pickle, safetensors file) pairs this script converts when the pickle is present.
CONVERSIONS = [
    ("pytorch_model.bin", "model.safetensors"),
    ("sparse_linear.pt", "sparse_linear.safetensors"),
    ("colbert_linear.pt", "colbert_linear.safetensors"),
]


def convert(src: Path, dst: Path):
    state = torch.load(src, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    tensors = {name: t.detach().clone().contiguous() for name, t in state.items() if isinstance(t, torch.Tensor)}
    save_file(tensors, str(dst), metadata={"format": "pt"})
    print(f"{dst}: {len(tensors)} tensors")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: convert_to_safetensors.py MODEL_DIR")
    folder = Path(sys.argv[1])
    converted = 0
    for pickle, safetensors in CONVERSIONS:
        src, dst = folder / pickle, folder / safetensors
        if src.is_file() and not (pickle == "pytorch_model.bin" and dst.is_file()):
            convert(src, dst)
            converted += 1
    if converted == 0:
        names = ", ".join(p for p, _ in CONVERSIONS)
        sys.exit(f"{folder}: nothing to convert (none of {names}, or model.safetensors already there)")


if __name__ == "__main__":
    main()
