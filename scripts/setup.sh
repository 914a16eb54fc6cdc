#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with torch (CPU build) and the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.ebm-lab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing dependencies (first run takes a few minutes)"
  python -m pip install -q --upgrade pip
  # The CPU build of torch; a bare `pip install torch` may pull a multi-GB CUDA build.
  python -m pip install -q "torch==2.13.0" || python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
