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
# The sweep's output goes to the terminal and to a temporary copy, whose last line is the results
# dir. (Not `tee /dev/stderr`: that reopens stderr, so a run logged with `> log 2>&1` truncated
# the log and left NUL bytes in it.)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$venv/bin/ado-ray" sweep "$study" "${extra[@]}" | tee "$out"
results=$(tail -n 1 "$out")
"$venv/bin/ado-ray" analyze "$results"
echo "results: $results"
echo "report:  $results/analysis/report.md"
