#!/usr/bin/env bash
# The main job (README): the offline reproduction on the embedded default.
# Sets up the environment, then runs tools/reproduce.py, which trains what
# each landed method needs and prints its table. Uses a GPU when present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv=$(bash tools/env.sh)
export PATH="$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python tools/reproduce.py "$@"
