#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
#
# The venv lives OUTSIDE the checkout, keyed by a hash of the requirements,
# so fresh clones (CI) reuse it while the requirements are unchanged: pip
# keeps no download cache on these machines and a full install downloads
# ~1.8 GB. Override the location with ROBUST_BRAIN_VENV.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hash=$(cat "$root/setup.py" "$root/tools/env.sh" | sha256sum | cut -c1-12)
venv="${ROBUST_BRAIN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/robust_brain/venv-$hash}"
if [ ! -f "$venv/.complete" ]; then
    echo "[env] creating $venv (first run: ~3 min, ~1.8 GB download)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel >&2
    # install the dependencies of the package (extras included), not the
    # package itself: the checkout is put on the path below
    "$venv/bin/pip" install -q -e "$root[dev]" >&2
    touch "$venv/.complete"
fi
# point the (shared) venv at THIS checkout; cheap and offline
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$root" >&2
echo "$venv"
