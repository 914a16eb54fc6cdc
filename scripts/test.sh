#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
bash scripts/vulkan-setup.sh || echo "[setup] Vulkan backend not installed: its tests will be skipped"
. .venv/bin/activate
# the optional extras the suite exercises (the core install, scripts/setup.sh, stays without them)
python -c "import wandb, mlflow, sqlalchemy, alembic, lm_eval" 2>/dev/null || python -m pip install -q -e ".[dev,wandb,mlflow,lm-eval]"
ruff check .
ruff format --check .
mypy
python -m pytest -q "$@"
