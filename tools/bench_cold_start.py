#!/usr/bin/env python3
"""Cold start: a fresh process's first embedding of one short question, densa against ONNX Runtime.

    pip install torch transformers onnxruntime onnxscript onnx
    python tools/make_bench_model.py /tmp/dpr-bert-base-random
    target/release/densa quantize --model /tmp/dpr-bert-base-random --output /tmp/dpr-bert-base-q
    target/release/densa pack --model /tmp/dpr-bert-base-random --output /tmp/dpr-bert-base-packed
    python tools/bench_cold_start.py /tmp/dpr-bert-base-random --quantized /tmp/dpr-bert-base-q \
        --packed /tmp/dpr-bert-base-packed --rounds 3

Each round runs, one after the other (interleaved, so that drift on a shared machine shows):
- densa f32 from the model folder as published (and from a `densa pack` folder of it, whose f32 weights
  are used in place), and int8 from a `densa quantize` folder: the wall time
  of `densa embed` from exec to exit (config, tokenizer, weights, the one embedding, writing it), and
  the process's peak resident memory (from wait4);
- ONNX Runtime f32, and int8 (`quantize_dynamic`, per channel): InferenceSession creation plus the
  first run on 1 x 16 ids, timed inside Python (the interpreter's start and imports are not counted,
  in ONNX Runtime's favour), and the Python process's peak resident memory.
Prints one JSON line per measurement, then a summary line per round with the ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "¿En qué año se fundó la ciudad donde nació el autor de la novela?"

ORT_CHILD = r"""
import json, resource, sys, time
import numpy as np
import onnxruntime as ort
path, threads = sys.argv[1], int(sys.argv[2])
ids = np.random.default_rng(0).integers(100, 31002, size=(1, 16), dtype=np.int64)
ids[:, 0], ids[:, -1] = 4, 5
start = time.perf_counter()
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
session.run(None, {"input_ids": ids})
ms = (time.perf_counter() - start) * 1e3
print(json.dumps({"ms": ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_densa(densa, model, threads, tmp):
    question = Path(tmp) / "question.txt"
    question.write_text(QUESTION + "\n")
    start = time.perf_counter()
    child = subprocess.Popen([densa, "embed", "--model", str(model), "--input", str(question), "--output",
                              os.devnull, "--threads", str(threads)], stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    ms = (time.perf_counter() - start) * 1e3
    if status != 0:
        sys.exit(f"densa failed: {child.stderr.read().decode()}")
    return {"ms": ms, "peak_rss_mb": usage.ru_maxrss / 1024}


def run_ort(path, threads):
    out = subprocess.run([sys.executable, "-c", ORT_CHILD, str(path), str(threads)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


EXPORT_CHILD = r"""
import sys, torch, transformers
from onnxruntime.quantization import QuantType, quantize_dynamic
model_dir, path, qpath = sys.argv[1:4]
model = transformers.DPRContextEncoder.from_pretrained(model_dir).eval()
x = torch.randint(100, 31002, (1, 16))
batch_dim, seq_dim = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input_ids"], output_names=["pooled"],
                  dynamic_shapes={"input_ids": {0: batch_dim, 1: seq_dim}})
quantize_dynamic(path, qpath, per_channel=True, weight_type=QuantType.QInt8)
"""


def export_onnx(model_dir, tmp):
    # In a child process: a forked child starts with its parent's peak RSS (Linux keeps
    # ru_maxrss across fork and exec), so this process must never hold torch.
    path, qpath = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model-int8.onnx")
    subprocess.run([sys.executable, "-c", EXPORT_CHILD, str(model_dir), path, qpath], check=True,
                   capture_output=True)
    return path, qpath


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--quantized", help="a densa quantize folder of the same model")
    ap.add_argument("--packed", help="a densa pack folder of the same model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--densa", default="target/release/densa")
    args = ap.parse_args()
    weights_mb = (Path(args.model) / "model.safetensors").stat().st_size / 2**20
    qweights_mb = (Path(args.quantized) / "model.safetensors").stat().st_size / 2**20 if args.quantized else None
    with tempfile.TemporaryDirectory() as tmp:
        onnx_f32, onnx_int8 = export_onnx(args.model, tmp)
        for rnd in range(1, args.rounds + 1):
            results = {}
            results["densa f32"] = run_densa(args.densa, args.model, args.threads, tmp)
            results["onnxruntime f32"] = run_ort(onnx_f32, args.threads)
            if args.packed:
                results["densa f32 packed"] = run_densa(args.densa, args.packed, args.threads, tmp)
            if args.quantized:
                results["densa int8"] = run_densa(args.densa, args.quantized, args.threads, tmp)
            results["onnxruntime int8"] = run_ort(onnx_int8, args.threads)
            for name, r in results.items():
                print(json.dumps({"round": rnd, "what": name, "threads": args.threads,
                                  "ms": round(r["ms"], 1), "peak_rss_mb": round(r["peak_rss_mb"], 1)}), flush=True)
            summary = {"round": rnd, "weights_mb": round(weights_mb, 1),
                       "f32_time_ratio": round(results["densa f32"]["ms"] / results["onnxruntime f32"]["ms"], 3),
                       "f32_rss_over_weights": round(results["densa f32"]["peak_rss_mb"] / weights_mb, 3)}
            if args.packed:
                packed = results["densa f32 packed"]
                summary.update({"packed_time_ratio": round(packed["ms"] / results["onnxruntime f32"]["ms"], 3),
                                "packed_rss_over_weights": round(packed["peak_rss_mb"] / weights_mb, 3)})
            if args.quantized:
                summary.update({"quantized_weights_mb": round(qweights_mb, 1),
                                "int8_time_ratio": round(results["densa int8"]["ms"] / results["onnxruntime int8"]["ms"], 3),
                                "int8_rss_over_weights": round(results["densa int8"]["peak_rss_mb"] / qweights_mb, 3)})
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
