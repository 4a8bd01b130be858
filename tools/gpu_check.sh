#!/usr/bin/env bash
# The GPU check: engine overhead at the papers' sizes, the D4AM step
# with a Whisper proxy, then GPIT's separator pre-trained for 4 minutes
# (tools/gpu_separator.sh), on one CUDA device, in under 10 minutes.
# Needs only the repository, .whl/ and .gpu/ (tools/gpu_prepare.sh). Run
# by the device tool (carry [".whl", ".gpu"]); figures go to $WORK
# (default results/gpu_check) and, where $OUT is set (the device), into
# two archives there: gpu_check.tar.gz and separator_weights.tar.gz (the
# tool returns 8 files at most). On a CPU, `DRY_RUN=1 bash
# tools/gpu_check.sh` runs every step at toy sizes to check the script.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${WORK:-results/gpu_check}
mkdir -p "$out"
source tools/gpu_env.sh
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
if [ -d .gpu/miniwhamr8k ]; then
    WORK="$out" bash tools/gpu_separator.sh || echo "=== separator FAILED ($?)"
fi
if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/gpu_check.tar.gz" -C "$out" --exclude=./separator/run \
        --exclude=./separator/weights .
    if [ -d "$out/separator/weights" ]; then
        tar czf "$OUT/separator_weights.tar.gz" -C "$out/separator" weights
    fi
fi
echo "figures in $out"
