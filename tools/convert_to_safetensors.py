#!/usr/bin/env python3
"""Converts a model folder's pytorch_model.bin into model.safetensors, which densa reads.

    pip install torch safetensors
    python tools/convert_to_safetensors.py MODEL_DIR

The Spanish DPR encoders (and many 2021-era checkpoints) are published as pytorch_model.bin
only. The pickle is loaded with weights_only=True (no code runs); tensors are written as they
are (dtype kept), shared storage is copied apart, and the file is written next to the original.
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: convert_to_safetensors.py MODEL_DIR")
    folder = Path(sys.argv[1])
    src = folder / "pytorch_model.bin"
    dst = folder / "model.safetensors"
    if not src.is_file():
        sys.exit(f"{src}: not found")
    state = torch.load(src, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    tensors = {name: t.detach().clone().contiguous() for name, t in state.items() if isinstance(t, torch.Tensor)}
    save_file(tensors, str(dst), metadata={"format": "pt"})
    print(f"{dst}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
