#!/usr/bin/env bash
# Side-by-side training throughput of the largest `micro` subnet: burn (the project's fused ops on
# flex) and PyTorch on the CPU (NCHW and channels_last), run alternately ROUNDS times so that the
# host's slow and fast phases hit both alike. Needs a Python with torch (see
# scripts/pytorch_throughput.py); PyTorch is only used for this comparison.
#
#   PYTHON=/tmp/torch/bin/python bash scripts/compare_throughput.sh 5
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
python="${PYTHON:-python3}"
cargo bench -p bitfusion-models --bench train_throughput --no-run >/dev/null 2>&1
bench=$(ls -t target/release/deps/train_throughput-* | grep -v '\.d$' | head -1)
for i in $(seq 1 "$rounds"); do
  echo "# round $i"
  "$bench"
  "$python" scripts/pytorch_throughput.py 2>/dev/null
  "$python" scripts/pytorch_throughput.py --channels-last 2>/dev/null
done
