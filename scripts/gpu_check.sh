#!/usr/bin/env bash
# The first thing to run on a new GPU machine or cluster node: install, run the GPU tests, then
# benchmarks/gpu_bench.py, whose last line is one JSON object (MFU, Ray overheads, packing).
# Needs no network beyond the package registries; about 8 minutes on one H100/H200.
# Usage: bash scripts/gpu_check.sh [--dry-run]   (--dry-run: the same code paths on CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCH_SPEC="${TORCH_SPEC:-torch>=2.4}"
bash scripts/setup.sh dev
venv="${ADO_RAY_VENV:-.venv}"
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
status=0
if [[ "${1:-}" != "--dry-run" ]]; then
  "$venv/bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
  # The GPU tests first; the benchmark runs even if one fails, and the script then fails.
  "$venv/bin/python" -m pytest -q -m gpu -p no:cacheprovider tests/ || status=$?
fi
"$venv/bin/python" benchmarks/gpu_bench.py "$@"
exit "$status"
