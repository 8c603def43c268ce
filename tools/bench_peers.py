#!/usr/bin/env python3
"""Times the peers a densa user could pick instead, on the same model and shapes as `densa bench`.

    pip install torch transformers onnxruntime onnxscript onnx
    python tools/make_bench_model.py /tmp/dpr-bert-base-random
    python tools/bench_peers.py /tmp/dpr-bert-base-random --threads 2 --shapes 1x16 1x128 8x128
    python tools/bench_peers.py /tmp/bert-rerank-base-random --head rerank --shapes 20x128
    python tools/bench_peers.py /tmp/bert-read-base-random --head read --shapes 1x384

Prints one JSON line per (peer, shape) with the same fields as `densa bench`: median_ms, min_ms,
max_ms, tokens_per_s. Inputs are synthetic ids of exactly `seq` tokens, no padding.
Peers: PyTorch eager (transformers), ONNX Runtime f32 with its full graph optimisations
(exported with torch.onnx.export(dynamo=True); the old exporter gives wrong outputs).
`--head rerank` loads the folder as AutoModelForSequenceClassification (the output timed is the
pairs' logits), `--head read` as AutoModelForQuestionAnswering (start and end logits per token),
as `densa bench --head` does.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def timed(run, iters, warmup=2):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times), max(times)


def report(peer, batch, seq, threads, stats):
    median, lo, hi = stats
    print(json.dumps({"peer": peer, "batch": batch, "seq": seq, "threads": threads, "median_ms": round(median, 3),
                      "min_ms": round(lo, 3), "max_ms": round(hi, 3), "tokens_per_s": round(batch * seq / (median / 1e3), 1)}),
          flush=True)


class FirstToken:
    """`AutoModel` of a folder, returning the first token's last hidden state as `pooler_output`."""

    @staticmethod
    def from_pretrained(folder):
        import torch
        import transformers

        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.trunk = transformers.AutoModel.from_pretrained(folder)

            def forward(self, input_ids):
                hidden = self.trunk(input_ids=input_ids).last_hidden_state
                return transformers.modeling_outputs.BaseModelOutputWithPooling(pooler_output=hidden[:, 0])

        return Module()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--shapes", nargs="+", default=["1x16", "1x128", "8x128"])
    ap.add_argument("--head", choices=["rerank", "read"], help="time a task head instead of the DPR encoder")
    ap.add_argument("--peers", nargs="+", default=["torch", "onnxruntime"],
                    help="torch, onnxruntime, onnxruntime-int8 (dynamic quantization, per channel)")
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    encoder_class, longest = transformers.DPRContextEncoder, 512
    if json.loads((Path(args.model) / "config.json").read_text()).get("model_type") == "modernbert":
        # ModernBERT: its [CLS] vector, as densa bench pools it, up to its 8192 positions.
        encoder_class, longest = FirstToken, 8192
    model_class, first_output, output_names = {
        None: (encoder_class, lambda out: out.pooler_output, ["pooled"]),
        "rerank": (transformers.AutoModelForSequenceClassification, lambda out: out.logits, ["logits"]),
        "read": (transformers.AutoModelForQuestionAnswering, lambda out: out.start_logits,
                 ["start_logits", "end_logits"]),
    }[args.head]
    model = model_class.from_pretrained(args.model).eval()
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes]
    rng = np.random.default_rng(0)

    def ids(batch, seq):
        x = rng.integers(100, 31002, size=(batch, seq), dtype=np.int64)
        x[:, 0], x[:, -1] = 4, 5
        return x

    def peer_name(name):
        return f"{name} {args.head}" if args.head else name

    if "torch" in args.peers:
        for batch, seq in shapes:
            x = torch.from_numpy(ids(batch, seq))
            with torch.inference_mode():
                report(peer_name(f"pytorch {torch.__version__}"), batch, seq, args.threads, timed(lambda: model(input_ids=x), args.iters))

    if "onnxruntime" in args.peers or "onnxruntime-int8" in args.peers:
        import onnxruntime as ort
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            x = torch.from_numpy(ids(1, 16))
            batch_dim, seq_dim = torch.export.Dim("batch"), torch.export.Dim("seq", max=longest)
            torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input_ids"], output_names=output_names,
                              dynamic_shapes={"input_ids": {0: batch_dim, 1: seq_dim}})
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            check = ids(2, 16)
            with torch.inference_mode():
                want = first_output(model(input_ids=torch.from_numpy(check))).numpy()
            got = session.run(None, {"input_ids": check})[0]
            assert np.abs(got - want).max() < 1e-3, f"ONNX export disagrees with PyTorch: {np.abs(got - want).max()}"
            if "onnxruntime" in args.peers:
                for batch, seq in shapes:
                    feed = {"input_ids": ids(batch, seq)}
                    report(peer_name(f"onnxruntime {ort.__version__}"), batch, seq, args.threads, timed(lambda: session.run(None, feed), args.iters))
            if "onnxruntime-int8" in args.peers:
                from onnxruntime.quantization import QuantType, quantize_dynamic
                qpath = os.path.join(tmp, "model-int8.onnx")
                quantize_dynamic(path, qpath, per_channel=True, weight_type=QuantType.QInt8)
                qsession = ort.InferenceSession(qpath, opts, providers=["CPUExecutionProvider"])
                for batch, seq in shapes:
                    feed = {"input_ids": ids(batch, seq)}
                    report(peer_name(f"onnxruntime {ort.__version__} int8"), batch, seq, args.threads, timed(lambda: qsession.run(None, feed), args.iters))


if __name__ == "__main__":
    main()
