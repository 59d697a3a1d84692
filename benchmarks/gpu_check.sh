#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py says what it runs): on a machine with a CUDA GPU, from anywhere in the
# repository, in under 8 minutes; writes benchmarks/results/gpu_check.json. Arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
