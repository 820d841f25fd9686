#!/usr/bin/env bash
# Install ado-ray from scratch and run the quickstart study: a local Ray Tune + Optuna sweep of
# ADO against the baselines on the built-in synthetic domains, then the analysis report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${ADO_RAY_VENV:-.venv}"
results=$("$venv/bin/ado-ray" sweep "${1:-studies/quickstart.yaml}" | tail -n 1)
"$venv/bin/ado-ray" analyze "$results"
echo "results: $results"
echo "report:  $results/analysis/report.md"
