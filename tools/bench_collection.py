#!/usr/bin/env python3
"""Indexing throughput on a collection with a real spread of lengths: densa against ONNX Runtime.

    pip install torch transformers onnxruntime onnxscript onnx
    python tools/make_bench_model.py /tmp/dpr-bert-base-random
    python tools/make_synthetic_passages.py --spread /tmp/spread-300.jsonl 300
    python tools/bench_collection.py /tmp/dpr-bert-base-random /tmp/spread-300.jsonl --rounds 3

Every passage is encoded as the pair (title, text), truncated to 512 tokens, as `densa index`
does. Each round runs, interleaved, in both precisions:
- densa: `densa index` over the whole file (its own batching: sorted by length, packed, no
  padding), timed from exec to exit (loading included, to densa's cost);
- ONNX Runtime fed as sentence-transformers feeds it: batches of 32 sorted by length, each padded
  to its longest ("sorted"), and batches of 32 in file order, padded ("unsorted"); tokenization
  (the fast tokenizer) is not timed, to ONNX Runtime's favour. int8 is `quantize_dynamic`, per
  channel; densa int8 is `--precision int8` on the same folder.
Prints a JSON line per run with passages/s, then a summary per round: densa over ORT sorted.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

EXPORT_CHILD = r"""
import sys, torch, transformers
from onnxruntime.quantization import QuantType, quantize_dynamic
model_dir, path, qpath = sys.argv[1:4]
model = transformers.DPRContextEncoder.from_pretrained(model_dir).eval()
x = torch.randint(100, 31002, (2, 16))
args = (x, torch.ones_like(x), torch.zeros_like(x))
batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
names = ["input_ids", "attention_mask", "token_type_ids"]
torch.onnx.export(model, args, path, dynamo=True, input_names=names, output_names=["pooled"],
                  dynamic_shapes={n: {0: batch, 1: seq} for n in names})
quantize_dynamic(path, qpath, per_channel=True, weight_type=QuantType.QInt8)
"""


def batches(encodings, order, size=32):
    for start in range(0, len(order), size):
        chosen = [encodings[i] for i in order[start:start + size]]
        width = max(len(ids) for ids, _ in chosen)
        ids = np.zeros((len(chosen), width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, (i, t) in enumerate(chosen):
            ids[row, :len(i)], types[row, :len(t)], mask[row, :len(i)] = i, t, 1
        yield {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def run_ort(session, encodings, sort):
    order = list(range(len(encodings)))
    if sort:
        order.sort(key=lambda i: len(encodings[i][0]))
    feeds = list(batches(encodings, order))
    start = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    return time.perf_counter() - start


def run_densa(densa, model, passages, threads, precision, tmp):
    out = os.path.join(tmp, f"index-{precision}")
    subprocess.run(["rm", "-rf", out], check=True)
    start = time.perf_counter()
    subprocess.run([densa, "index", "--model", model, "--passages", passages, "--output", out, "--threads",
                    str(threads), "--precision", precision], check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("passages")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", nargs="+", default=["f32", "int8"])
    ap.add_argument("--densa", default="target/release/densa")
    args = ap.parse_args()

    import onnxruntime as ort
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    passages = [json.loads(line) for line in open(args.passages, encoding="utf-8")]
    enc = tokenizer([p.get("title", "") for p in passages], [p["text"] for p in passages], truncation=True,
                    max_length=512)
    encodings = list(zip(enc["input_ids"], enc["token_type_ids"]))
    tokens = sum(len(ids) for ids, _ in encodings)
    n = len(passages)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = {"f32": os.path.join(tmp, "model.onnx"), "int8": os.path.join(tmp, "model-int8.onnx")}
        subprocess.run([sys.executable, "-c", EXPORT_CHILD, args.model, onnx["f32"], onnx["int8"]], check=True,
                       capture_output=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions = {p: ort.InferenceSession(onnx[p], opts, providers=["CPUExecutionProvider"])
                    for p in args.precisions}
        for rnd in range(1, args.rounds + 1):
            for precision in args.precisions:
                times = {
                    "densa": run_densa(args.densa, args.model, args.passages, args.threads, precision, tmp),
                    "onnxruntime sorted": run_ort(sessions[precision], encodings, True),
                    "onnxruntime unsorted": run_ort(sessions[precision], encodings, False),
                }
                for what, seconds in times.items():
                    print(json.dumps({"round": rnd, "precision": precision, "what": what, "passages": n,
                                      "tokens": tokens, "seconds": round(seconds, 2),
                                      "passages_per_s": round(n / seconds, 2)}), flush=True)
                print(json.dumps({"round": rnd, "precision": precision,
                                  "densa_over_ort_sorted": round(times["onnxruntime sorted"] / times["densa"], 3),
                                  "densa_over_ort_unsorted": round(times["onnxruntime unsorted"] / times["densa"], 3)}),
                      flush=True)


if __name__ == "__main__":
    main()
