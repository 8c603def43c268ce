#!/usr/bin/env python3
"""densa's HNSW against FAISS (HNSW32 and IVF-PQ) on the same index folder, in one run.

    python tools/bench_ann.py --index /tmp/syn-1m --queries /tmp/q-e5.npy --densa target/release/densa \
        --out /tmp/bench-ann [--rounds 3] [--ef 256 512] [--nprobe 16 64]

Builds each FAISS index once (saved under --out, build time and bytes recorded), then times the
searches in fresh processes, interleaved, for --rounds rounds: `densa bench-search` (its graph
as built, at each --ef; exact scan timed in the same process), FAISS HNSW32 (efSearch = each
--ef), FAISS IVF-PQ (each --nprobe). Every method answers the same queries one at a time
(latency per question: p50/p99), and recall@10 is against the exact inner-product top 10
computed here in NumPy from vectors.npy. Peak resident memory is each search process's own
(ru_maxrss). Prints one JSON line per measurement and a Markdown table at the end.

Needs `pip install faiss-cpu numpy`. Threads: FAISS and densa both get --threads (default 2).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

K = 10


def exact_top_k(vectors, queries, k=K, block=262144):
    """The exact inner-product top k of each query (ties to the lower row), in blocks."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), block):
        scores = queries @ np.asarray(vectors[start:start + block], dtype=np.float32).T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate([best_rows, rows], axis=1)
        order = np.lexsort((all_rows, -all_scores), axis=1)[:, :k]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_rows = np.take_along_axis(all_rows, order, axis=1)
    return best_rows


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def faiss_build(kind, index_dir, out, threads):
    """Builds one FAISS index over index_dir/vectors.npy, saves it; prints its report."""
    import faiss

    faiss.omp_set_num_threads(threads)
    vectors = np.load(os.path.join(index_dir, "vectors.npy"), mmap_mode="r")
    n, dim = vectors.shape
    start = time.perf_counter()
    if kind == "hnsw32":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 256
    else:
        lists = max(1, min(65536, int(4 * np.sqrt(n))))
        index = faiss.index_factory(dim, f"IVF{lists},PQ{dim // 8}", faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 100 * lists), replace=False)
        index.train(np.asarray(vectors[np.sort(sample)], dtype=np.float32))
    for s in range(0, n, 100_000):
        index.add(np.ascontiguousarray(vectors[s:s + 100_000], dtype=np.float32))
    seconds = time.perf_counter() - start
    path = os.path.join(out, f"faiss-{kind}.index")
    faiss.write_index(index, path)
    print(json.dumps({"method": f"faiss-{kind}", "build_s": seconds, "bytes": os.path.getsize(path),
                      "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def faiss_search(kind, out, queries_path, truth_path, param, threads):
    """Times one FAISS index answering each query alone; prints latency, recall, peak RSS."""
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.read_index(os.path.join(out, f"faiss-{kind}.index"), faiss.IO_FLAG_MMAP)
    if kind == "hnsw32":
        index.hnsw.efSearch = param
    else:
        index.nprobe = param
    queries = np.load(queries_path).astype(np.float32)
    truth = np.load(truth_path)
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        _, rows = index.search(q[None, :], K)
        times.append(time.perf_counter() - start)
        found.append(rows[0])
    times_ms = np.array(times) * 1e3
    print(json.dumps({"method": f"faiss-{kind}", "param": param, "recall_at_k": recall(found, truth),
                      "p50_ms": float(np.percentile(times_ms, 50)),
                      "p99_ms": float(np.percentile(times_ms, 99)),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_json(command):
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--densa", default="target/release/densa")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ef", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--methods", nargs="+", default=["densa", "hnsw32", "ivfpq"])
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        step, kind, *rest = args.worker
        if step == "build":
            faiss_build(kind, args.index, args.out, args.threads)
        else:
            faiss_search(kind, args.out, args.queries, rest[0], int(rest[1]), args.threads)
        return

    os.makedirs(args.out, exist_ok=True)
    vectors = np.load(os.path.join(args.index, "vectors.npy"), mmap_mode="r")
    queries = np.load(args.queries).astype(np.float32)
    truth_path = os.path.join(args.out, "truth.npy")
    if not os.path.exists(truth_path):
        np.save(truth_path, exact_top_k(vectors, queries))
    me = [sys.executable, os.path.abspath(__file__), "--index", args.index, "--queries", args.queries,
          "--out", args.out, "--threads", str(args.threads)]
    rows = []
    for kind in ("hnsw32", "ivfpq"):
        if kind in args.methods and not os.path.exists(os.path.join(args.out, f"faiss-{kind}.index")):
            report = run_json(me + ["--worker", "build", kind])
            print(json.dumps(report), flush=True)
            rows.append(report)
    for round_ in range(args.rounds):
        for ef, nprobe in zip(args.ef, args.nprobe):
            measures = []
            if "densa" in args.methods:
                report = run_json([args.densa, "bench-search", "--index", args.index, "--queries",
                                   args.queries, "--ef", str(ef), "--threads", str(args.threads)])
                report["method"], report["param"] = "densa-hnsw", ef
                measures.append(report)
            if "hnsw32" in args.methods:
                measures.append(run_json(me + ["--worker", "search", "hnsw32", truth_path, str(ef)]))
            if "ivfpq" in args.methods:
                measures.append(run_json(me + ["--worker", "search", "ivfpq", truth_path, str(nprobe)]))
            for m in measures:
                m["round"] = round_
                print(json.dumps(m), flush=True)
            rows.extend(measures)
    print("\n| method | param | recall@10 | p50 ms | p99 ms | peak RSS MB | round |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "p50_ms" in r:
            print(f"| {r['method']} | {r['param']} | {r['recall_at_k']:.3f} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['peak_rss_mb']:.0f} | {r['round']} |")


if __name__ == "__main__":
    main()
