#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 120 s each) and prints what it
# found. Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
#   bash tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Seeds: the lying-checkpoint corpus of tests/hostile_checkpoints.rs (written through
# DENSA_WRITE_CORPUS), the fixture checkpoint and config, and the golden texts. A crash leaves
# its input in fuzz/artifacts/<target>/; turn it into a regression test (tests/fuzz_findings.rs)
# before fixing it. Corpora and artifacts are not committed (fuzz/.gitignore).
set -euo pipefail
seconds=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(checkpoint_header config_json text_path)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

corpus=fuzz/corpus
mkdir -p "$corpus"/{checkpoint_header,config_json,text_path}
DENSA_WRITE_CORPUS="$root/$corpus/checkpoint_header" cargo test --release -q --test hostile_checkpoints >/dev/null
cp tests/fixtures/models/bert-tiny/model.safetensors "$corpus/checkpoint_header/bert-tiny.safetensors"
for m in tests/fixtures/models/*/config.json; do cp "$m" "$corpus/config_json/$(basename "$(dirname "$m")").json"; done
python3 - "$corpus/text_path" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
texts = json.load(open("tests/fixtures/texts.json"))["texts"]
texts += [t for t in json.load(open("tests/fixtures/golden/hostile-texts.json"))["texts"] if isinstance(t, str)]
for i, t in enumerate(texts):
    (out / f"text{i:02}").write_text(t[:4000], encoding="utf-8")
PY

for target in "${targets[@]}"; do
  echo "== $target: ${seconds} s"
  # Checkpoints need room for a header and data; texts are tokenized and embedded whole, so
  # shorter inputs give many more executions (the 1 MB line is in the test suite).
  max_len=65536
  [ "$target" = text_path ] && max_len=4096
  # -rss_limit_mb: a lying header must not make the loader allocate without bound.
  cargo +nightly fuzz run "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 2>&1 \
    | grep -E "^(stat::|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|panicked|artifact_prefix|Test unit written)" || true
done
if ls fuzz/artifacts/*/* >/dev/null 2>&1; then
  echo "findings:"; ls -l fuzz/artifacts/*/*
  exit 1
fi
echo "no findings"
