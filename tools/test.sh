#!/usr/bin/env bash
# The test command (README, .ci/run): set up the env, lint, run all tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv=$(bash tools/env.sh)
export PATH="$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "[test] ruff"
ruff check .
ruff format --check .
echo "[test] pytest"
python -m pytest -q "$@"
