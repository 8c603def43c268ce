#!/usr/bin/env bash
# densa against its peers on one machine, in one run: densa bench, then PyTorch and ONNX
# Runtime (tools/bench_peers.py) on the same random BERT-base DPR folder and shapes, twice over
# so that drift on a shared machine shows. Prints JSON lines.
#
#   python tools/make_bench_model.py /tmp/dpr-bert-base-random
#   cargo build --release
#   bash tools/bench_compare.sh /tmp/dpr-bert-base-random [THREADS] [ROUNDS]
# PRECISIONS (default "f32") and PEERS (default "torch onnxruntime") choose what runs, e.g.
#   PRECISIONS="f32 int8" PEERS="onnxruntime onnxruntime-int8" bash tools/bench_compare.sh ...
# ITERS (default 20) sets the timed passes per shape. SHAPES (default "1x16 1x128 8x128") and HEAD (rerank or read: a task head on the folder made by
# tools/make_bench_model.py --head) time the heads instead, e.g.
#   HEAD=rerank SHAPES=20x128 PEERS=onnxruntime bash tools/bench_compare.sh /tmp/bert-rerank-base-random 2 3
set -euo pipefail
model=${1:?model folder}
threads=${2:-2}
rounds=${3:-2}
densa=${DENSA:-target/release/densa}
lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/^/# /'
date -u +"# %Y-%m-%dT%H:%MZ"
shapes=${SHAPES:-1x16 1x128 8x128}
head_flag=()
if [ -n "${HEAD:-}" ]; then head_flag=(--head "$HEAD"); fi
for round in $(seq "$rounds"); do
  for precision in ${PRECISIONS:-f32}; do
    for shape in $shapes; do
      "$densa" bench --model "$model" --batch "${shape%x*}" --seq "${shape#*x}" --iters "${ITERS:-20}" --threads "$threads" --precision "$precision" "${head_flag[@]}"
    done
  done
  python3 tools/bench_peers.py "$model" --threads "$threads" --iters "${ITERS:-20}" --shapes $shapes "${head_flag[@]}" \
    --peers ${PEERS:-torch onnxruntime} 2>/dev/null | grep '^{'
done
