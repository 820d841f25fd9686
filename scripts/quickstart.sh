#!/usr/bin/env bash
# Install ado-ray from scratch and run the quickstart study: a local Ray Tune + Optuna sweep of
# ADO against the baselines on the built-in synthetic domains, then the analysis report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${ADO_RAY_VENV:-.venv}"
study="${1:-studies/quickstart.yaml}"
extra=("${@:2}")
# A second run continues (or just re-analyses) the study instead of refusing to overwrite it.
[[ -d "ado_results/$(basename "$study" .yaml)" ]] && extra+=(--resume)
# Progress (Ray's trial table) goes to the terminal; the sweep's last line is the results dir.
results=$("$venv/bin/ado-ray" sweep "$study" "${extra[@]}" | tee /dev/stderr | tail -n 1)
"$venv/bin/ado-ray" analyze "$results"
echo "results: $results"
echo "report:  $results/analysis/report.md"
