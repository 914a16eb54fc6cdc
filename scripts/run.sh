#!/usr/bin/env bash
# Set up (if needed) and start the main job: the trainer in the background on the built-in
# corpus, then the live dashboard in the foreground (Ctrl-C stops the dashboard, not the run).
# Extra arguments go to ebm-train (e.g. --set batch_size=8); EBM_PORT picks the dashboard port.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ebm-train --detach "$@"
echo
echo "Stop the run: kill <pid above> (it saves a checkpoint). Resume it: ebm-train --resume"
exec ebm-dashboard --logs logs --checkpoints checkpoints --port "${EBM_PORT:-8501}"
