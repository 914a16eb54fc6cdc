#!/usr/bin/env bash
# Set up (if needed) and start the main job: the trainer in the background on the built-in corpus.
# Extra arguments go to ebm-train (e.g. --set batch_size=8).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ebm-train --detach "$@"
echo
echo "Follow the run with: tail -f logs/ebm/*.jsonl"
