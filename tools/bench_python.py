#!/usr/bin/env python3
"""densa.Encoder.encode from Python against sentence-transformers with its ONNX Runtime backend,
on the same machine and model folder, interleaved in one run.

    python3 tools/make_bench_model.py /tmp/bert-st-base-random --family bert-st
    python3 -m venv --system-site-packages /tmp/onnxvenv
    /tmp/onnxvenv/bin/pip install "optimum-onnx[onnxruntime]" ./python
    /tmp/onnxvenv/bin/python tools/bench_python.py /tmp/bert-st-base-random --passages 1000 --rounds 3

Passages: `--passages` synthetic Spanish texts of 40 to 120 words (a fixed seed). Both encode
them in batches of 32 on `--threads` threads (densa's pool; ONNX Runtime's intra-op threads).
Prints one JSON line per (round, engine) with seconds, passages per second, and (first round)
the largest difference between the two engines' vectors.
"""
import argparse
import json
import random
import time

import numpy as np

WORDS = ("el museo del prado está en madrid quién escribió quijote cervantes barcelona río montaña "
         "ciudad año guerra rey agua canción señal corazón historia pintura siglo reino puerto "
         "isla norte sur universidad biblioteca catedral plaza mercado").split()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--passages", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    rng = random.Random(0)
    passages = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120))) for _ in range(args.passages)]

    import densa
    import onnxruntime
    import sentence_transformers
    import torch

    torch.set_num_threads(args.threads)
    encoder = densa.Encoder(args.model, threads=args.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    peer = sentence_transformers.SentenceTransformer(
        args.model, backend="onnx", device="cpu", model_kwargs={"session_options": options})
    engines = [
        (f"densa {densa.__version__}", lambda: encoder.encode(passages, batch_size=args.batch_size)),
        (f"sentence-transformers {sentence_transformers.__version__} onnx (onnxruntime {onnxruntime.__version__})",
         lambda: peer.encode(passages, batch_size=args.batch_size, convert_to_numpy=True)),
    ]
    # Warm-up (and the ONNX export, on first use), untimed.
    encoder.encode(passages[:8])
    peer.encode(passages[:8])
    for round_ in range(1, args.rounds + 1):
        outputs = []
        for name, run in engines:
            start = time.perf_counter()
            vectors = run()
            seconds = time.perf_counter() - start
            outputs.append(np.asarray(vectors, dtype=np.float32))
            line = {"round": round_, "engine": name, "passages": len(passages), "seconds": round(seconds, 2),
                    "passages_per_s": round(len(passages) / seconds, 1), "threads": args.threads}
            print(json.dumps(line), flush=True)
        if round_ == 1:
            diff = float(np.abs(outputs[0] - outputs[1]).max())
            print(json.dumps({"max_abs_diff_between_engines": diff}), flush=True)


if __name__ == "__main__":
    main()
