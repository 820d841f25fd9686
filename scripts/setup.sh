#!/usr/bin/env bash
# Set up ado-ray from scratch in ./.venv (or $ADO_RAY_VENV). Usage: scripts/setup.sh [dev]
#   - On machines without CUDA, installs the pinned CPU PyTorch first ($TORCH_SPEC overrides it),
#     so that no dependency pulls a multi-GB CUDA build.
#   - Then installs this package (with the test tools when "dev" is given).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ADO_RAY_VENV:-.venv}"
python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$py" -m pip install -q "${TORCH_SPEC:-torch>=2.4}"
  else
    "$py" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
extra=""
[[ "${1:-}" == "dev" ]] && extra="[dev]"
"$py" -m pip install -q -e ".${extra}"
echo "ado-ray installed in $venv"
