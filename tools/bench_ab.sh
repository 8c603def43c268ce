#!/usr/bin/env bash
# Interleaved A/B of two densa binaries on one model folder: `densa bench` for each shape and
# precision, before then after, three rounds (median ms of 10 timed runs each, 2 threads).
#
#   git worktree add /tmp/base <commit> && CARGO_TARGET_DIR=/tmp/base-target cargo build --release --manifest-path /tmp/base/Cargo.toml
#   bash tools/bench_ab.sh /tmp/base-target/release/densa target/release/densa /tmp/dpr-bert-base-random
set -euo pipefail
BEFORE=$1 AFTER=$2 MODEL=$3
ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2}
SHAPES=${SHAPES:-"1x16 1x128 8x128"} PRECISIONS=${PRECISIONS:-"f32 int8"}
echo "round precision shape binary median_ms"
for round in $(seq 1 "$ROUNDS"); do
  for precision in $PRECISIONS; do
    for shape in $SHAPES; do
      batch=${shape%x*} seq=${shape#*x}
      for side in before after; do
        bin=$BEFORE
        [ "$side" = after ] && bin=$AFTER
        line=$("$bin" bench --model "$MODEL" --batch "$batch" --seq "$seq" --iters 10 \
          --threads "$THREADS" --precision "$precision" 2>/dev/null)
        ms=$(printf '%s' "$line" | python3 -c "import json, sys; print(round(json.load(sys.stdin)['median_ms'], 2))")
        echo "$round $precision $shape $side $ms"
      done
    done
  done
done
