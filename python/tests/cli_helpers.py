"""The densa CLI as the Python tests call it: its path, its JSON lines, its vectors."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"


def cli_path():
    if os.environ.get("DENSA_BIN"):
        return os.environ["DENSA_BIN"]
    for profile in ("release", "debug"):
        path = REPO / "target" / profile / "densa"
        if path.exists():
            return str(path)
    pytest.fail("no densa binary: build it (cargo build) or set DENSA_BIN")


def cli(*args, stdin=None):
    out = subprocess.run([cli_path(), *map(str, args)], input=stdin, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def cli_vectors(model, texts, *flags):
    rows = cli("embed", "--model", model, "--input", "-", *flags, stdin="".join(t + "\n" for t in texts))
    return np.array(rows, dtype=np.float32)


def bits(array):
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
