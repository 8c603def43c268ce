"""The documented weight generator shared by tools/make_fixtures.py and the Rust tests.

Counter-based splitmix64: element i of a tensor whose name hashes (FNV-1a, 64-bit) to s is
    z = s + (i + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9        (mod 2^64)
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB        (mod 2^64)
    z =  z ^ (z >> 31)
    u = (z >> 40) / 2^24                             (in [0, 1), exact in f32)
    value = f32(center + scale * (2u - 1))            (computed in f64, rounded once)
The Rust twin is `tests/common/prng.rs`; docs/FIDELITY.md describes it.
"""
import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def fnv1a64(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def uniform(name: str, count: int, center: float, scale: float) -> np.ndarray:
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + i * GAMMA
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (center + scale * (2.0 * u - 1.0)).astype(np.float32)


def center_scale(name: str):
    """(center, scale) of the uniform draw for a tensor, by its role."""
    # BERT's `LayerNorm.weight`; ModernBERT's `norm`, `attn_norm`, `mlp_norm`, `final_norm`.
    if name.endswith(("LayerNorm.weight", "norm.weight")):
        return 1.0, 0.2
    if name.endswith("LayerNorm.bias"):
        return 0.0, 0.1
    if name.endswith(".bias"):
        return 0.0, 0.05
    return 0.0, 0.05
