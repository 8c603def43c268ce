#!/usr/bin/env python3
"""Writes a large collection straight into densa's index layout, as a user with vectors
computed elsewhere would: vectors.npy, passages.jsonl, passages.offsets, manifest.json.

    pip install numpy
    python tools/make_synthetic_index.py --base /tmp/es-e5 --rows 1000000 --output /tmp/syn-1m

The collection has real structure, not uniform noise (which no approximate index is built
for): it starts with the real passages of the `--base` index (a densa index of real text, e.g.
the Spanish QA set's 600 passages encoded with multilingual-e5-small), and every synthetic
vector is a mixture around them: `a·p + (1-a)·p' + σ·n` for two real passage vectors p, p'
drawn at random, `a` uniform in [0.6, 1], and Gaussian noise `n` with the real vectors'
covariance (a random combination of the centred real vectors: the noise lies where real
passages differ, as real neighbours do, instead of filling all 384 dimensions), normalised when
the base's vectors are.

`σ` (`--noise`) is calibrated, not chosen: by default (`auto`) it is the value for which a
synthetic collection of the base's size is as crowded as the base, its vectors' median cosine
to their nearest neighbour the base's own (0.945 for multilingual-e5-small's Spanish passages:
its space is crowded), found by bisection. Every real passage keeps its row, id and text, so the
QA set's questions and gold ids (tests/fixtures/accuracy/questions.jsonl) work on the big
collection; the synthetic passages are "s<row>", each naming the real passage it is drawn
around.

Written block by block (100,000 rows), so 10M x 384 (15 GB of float32) needs about 200 MB of
memory; deterministic for a given --seed.
"""
import argparse
import json
import os
import sys

import numpy as np


def mixtures(base, centred, noise, first, second, rng, normalized):
    """`a·p + (1-a)·p' + noise·n` for the rows `first`, `second` of `base`."""
    rows = len(first)
    a = rng.uniform(0.6, 1.0, (rows, 1)).astype(np.float32)
    block = a * base[first] + (1 - a) * base[second]
    block += noise * (rng.standard_normal((rows, len(base)), dtype=np.float32) @ centred)
    if normalized:
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return block


def median_nearest_cosine(x):
    """The median over the rows of their largest cosine to another row."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return float(np.median(sims.max(axis=1)))


def calibrate(base, centred, normalized):
    """σ for which a synthetic collection of the base's size is as crowded as the base (the
    same median cosine to the nearest neighbour), averaged over 4 draws, by bisection."""
    target = median_nearest_cosine(base)
    n = len(base)

    def crowding(noise):
        draws = []
        for seed in range(4):
            rng = np.random.default_rng(1000 + seed)
            first, second = rng.integers(0, n, n), rng.integers(0, n, n)
            draws.append(median_nearest_cosine(mixtures(base, centred, noise, first, second, rng, normalized)))
        return float(np.mean(draws))

    low, high = 0.0, 4.0
    for _ in range(24):
        mid = (low + high) / 2
        if crowding(mid) > target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a densa index of real passages")
    parser.add_argument("--rows", type=int, required=True, help="rows of the collection, the base's included")
    parser.add_argument("--output", required=True, help="index folder to write (must not exist)")
    parser.add_argument("--noise", default="auto", help="σ, or 'auto' (calibrated on the base)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=100_000)
    args = parser.parse_args()

    manifest = json.load(open(os.path.join(args.base, "manifest.json")))
    base = np.load(os.path.join(args.base, "vectors.npy"), mmap_mode="r").astype(np.float32)
    with open(os.path.join(args.base, "passages.jsonl"), "rb") as f:
        base_lines = f.read().splitlines(keepends=True)
    n_base, dim = base.shape
    if args.rows < n_base:
        sys.exit(f"--rows {args.rows} is fewer than the base's {n_base} passages")
    normalized = bool(manifest.get("normalized"))
    # Noise with the real vectors' covariance: z (n, n_base) @ centred (n_base, dim).
    centred = (base - base.mean(axis=0)) / np.sqrt(n_base)
    noise = calibrate(base, centred, normalized) if args.noise == "auto" else float(args.noise)
    print(f"noise {noise:.4f}", file=sys.stderr)
    base_ids = [json.loads(line)["id"] for line in base_lines]

    os.makedirs(args.output)
    vectors = np.lib.format.open_memmap(
        os.path.join(args.output, "vectors.npy"), mode="w+", dtype="<f4", shape=(args.rows, dim))
    vectors[:n_base] = base
    rng = np.random.default_rng(args.seed)
    offsets = [0]
    with open(os.path.join(args.output, "passages.jsonl"), "wb") as passages:
        for line in base_lines:
            passages.write(line)
            offsets.append(offsets[-1] + len(line))
        for start in range(n_base, args.rows, args.block):
            rows = min(args.block, args.rows - start)
            first = rng.integers(0, n_base, rows)
            second = rng.integers(0, n_base, rows)
            block = mixtures(base, centred, noise, first, second, rng, normalized)
            vectors[start:start + rows] = block
            for r in range(rows):
                text = f"synthetic passage {start + r}, drawn around {base_ids[first[r]]}"
                line = (json.dumps({"id": f"s{start + r}", "title": None, "text": text}) + "\n").encode()
                passages.write(line)
                offsets.append(offsets[-1] + len(line))
            print(f"{start + rows} / {args.rows}", file=sys.stderr, end="\r")
    vectors.flush()
    del vectors
    np.asarray(offsets, dtype="<u8").tofile(os.path.join(args.output, "passages.offsets"))
    out = {key: manifest[key] for key in ("pooling", "normalized", "prompt", "max_length") if key in manifest}
    out.update({
        "format": "densa-index",
        "version": manifest["version"],
        "dim": dim,
        "passages": args.rows,
        "vectors": "f32",
        "complete": True,
        "generator": {"tool": "tools/make_synthetic_index.py", "base": os.path.abspath(args.base),
                      "noise": noise, "seed": args.seed},
    })
    with open(os.path.join(args.output, "manifest.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(f"\n{args.output}: {args.rows} x {dim}", file=sys.stderr)


if __name__ == "__main__":
    main()
