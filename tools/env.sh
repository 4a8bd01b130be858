#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
#
# The venv lives OUTSIDE the checkout, keyed by a hash of the requirements,
# so fresh clones (CI) reuse it while the requirements are unchanged: pip
# keeps no download cache on these machines and a full install downloads
# ~1.8 GB. Override the location with ROBUST_BRAIN_VENV.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hash=$(sha256sum <"$root/setup.py" | cut -c1-12)
# Debian packages of the offline corpora (TTS voices, real prompts, G.722
# decoding): installed when missing and apt is usable (root); without them
# the generator uses the voices it finds and says so
apt_packages="espeak-ng festival festvox-us-slt-hts festvox-kallpc16k \
festvox-kdlpc16k asterisk-core-sounds-en asterisk-core-sounds-en-g722 ffmpeg"
missing=""
for pkg in $apt_packages; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[env] apt-get install$missing" >&2
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $missing; } \
            >/tmp/robust_brain_apt.log 2>&1 ||
            echo "[env] WARNING: apt install failed, see" \
                "/tmp/robust_brain_apt.log" >&2
    else
        echo "[env] WARNING: missing Debian packages:$missing" >&2
    fi
fi
venv="${ROBUST_BRAIN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/robust_brain/venv-$hash}"
if [ ! -f "$venv/.complete" ]; then
    echo "[env] creating $venv (first run: ~3-5 min, ~1.8 GB download)" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    log="$venv.install.log"
    if ! {
        python3 -m venv "$venv" &&
            "$venv/bin/pip" install --upgrade pip setuptools wheel &&
            "$venv/bin/pip" install -e "$root[all]"
    } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "[env] installation failed; full log: $log" >&2
        exit 1
    fi
    touch "$venv/.complete"
fi
# point the (shared) venv at THIS checkout; cheap and offline
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$root" \
    >"$venv.editable.log" 2>&1 || {
    cat "$venv.editable.log" >&2
    exit 1
}
echo "$venv"
