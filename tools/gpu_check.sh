#!/usr/bin/env bash
# The GPU check: engine overhead at the papers' sizes and the D4AM step
# with a Whisper proxy, on one CUDA device, in well under 10 minutes.
# Needs only the repository, .whl/ and .gpu/ (tools/gpu_prepare.sh). Run
# by the device tool (carry [".whl", ".gpu"]); figures go to $OUT (or
# results/gpu_check). On a CPU, `DRY_RUN=1 bash tools/gpu_check.sh` runs
# every step at toy sizes to check the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu_check}
mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import speechbrain" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
py=${PYTHON:-python3}
bench() {  # name, then benchmark arguments
    local name=$1
    shift
    echo "=== $name: $*"
    if [ -n "${DRY_RUN:-}" ]; then
        set -- "$@" --device cpu --batch_size 1 --seconds 1 --steps 1 \
            --warmup 0 --no-memory
    else
        set -- "$@" --device cuda
    fi
    "$py" benchmarks/surgery_overhead.py "$@" --json "$out/$name.json" \
        2>&1 | tee "$out/$name.txt"
}
"$py" -c "import torch; print(torch.__version__, torch.cuda.is_available() \
and torch.cuda.get_device_name(0))" | tee "$out/device.txt"
# the engine at the D4AM paper's sizes: bf16, 8 x 4 s, then 32 x 4 s
bench frozen_b8 --scenario frozen --precision bf16 --batch_size 8 --seconds 4
bench frozen_b32 --scenario frozen --precision bf16 --batch_size 32 \
    --seconds 4
bench gr_b8 --scenario gr --precision bf16 --batch_size 8 --seconds 4
# D4AM with DEMUCS dns48 in front of Whisper (real shapes, random weights)
for model in tiny.en base; do
    bench "whisper_${model}_b8" --scenario whisper --whisper \
        ".gpu/whisper-$model" --precision bf16 --batch_size 8 --seconds 4
done
echo "figures in $out"
