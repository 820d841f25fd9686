#!/usr/bin/env bash
# Install everything from scratch, lint, and run the test suite. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
venv="${ADO_RAY_VENV:-.venv}"
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Property tests on a fixed, derandomized example set (tests/conftest.py); fuzz locally with
# HYPOTHESIS_PROFILE=dev or fuzz.
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
"$venv/bin/ruff" check ado_ray tests benchmarks
"$venv/bin/python" -m pytest -q --timeout=900 "$@"
