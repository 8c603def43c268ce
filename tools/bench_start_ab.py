#!/usr/bin/env python3
"""Interleaved cold starts of two or more densa binaries: `densa embed` of one question, exec to exit.

    cp target/release/densa /tmp/densa_B        # the change
    git stash && cargo build --release && cp target/release/densa /tmp/densa_A && git stash pop
    python3 tools/bench_start_ab.py /tmp/dpr-bert-base-packed /tmp/densa_A /tmp/densa_B --runs 25

Each run starts every binary once, in turn (so that drift on a shared machine hits all alike), with the
page cache warm; prints each binary's median, minimum and quartiles of the wall time.
"""
import argparse
import statistics
import subprocess
import time

QUESTION = "¿En qué año se fundó la ciudad?\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--runs", type=int, default=25)
    args = ap.parse_args()
    times = {b: [] for b in args.binaries}
    for _ in range(args.runs):
        for binary in args.binaries:
            start = time.perf_counter()
            subprocess.run([binary, "embed", "--model", args.model], input=QUESTION.encode(),
                           stdout=subprocess.DEVNULL, check=True)
            times[binary].append((time.perf_counter() - start) * 1000)
    for binary, ms in times.items():
        q1, _, q3 = statistics.quantiles(ms, n=4)
        print(f"{binary}: median {statistics.median(ms):.1f} ms, min {min(ms):.1f}, quartiles {q1:.1f}–{q3:.1f}")


if __name__ == "__main__":
    main()
