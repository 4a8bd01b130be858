#!/usr/bin/env bash
# Prepare the GPU check (tools/gpu_check.sh) HERE, once per checkout: what
# the device image lacks, in two ignored folders the device call carries
# (64 MiB in all):
#   .whl/  wheels for its Python 3.12 (SpeechBrain and the few packages
#          its image does not hold), installed there with --no-deps;
#   .gpu/  the Whisper tiny.en and base configs and tokenizers WITHOUT
#          weights: the check times random weights of the real shapes;
#          miniwhamr8k/, 40 MiB of MiniWHAMR at 8 kHz as FLAC (cv 40,
#          tt 50 rows, then as many tr rows as fit) for the separator's
#          pre-training (tools/gpu_separator.sh).
# Then: device run, carry [".whl", ".gpu"], command "bash tools/gpu_check.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash tools/env.sh)
mkdir -p .whl .gpu
wheels=(speechbrain==1.1.2 HyperPyYAML==1.2.3 ruamel.yaml==0.18.17
    ruamel.yaml.clib==0.2.15 soundfile==0.14.0 cffi==2.1.1 pycparser==3.0
    jiwer==4.0.0 rapidfuzz==3.14.6)
for w in "${wheels[@]}"; do
    "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .whl "$w"
done
"$venv/bin/python" - <<'PY'
import shutil
from pathlib import Path

from robust_brain.pretrained import whisper_checkpoint

for model in ("tiny.en", "base"):
    src, dst = whisper_checkpoint(model), Path(".gpu") / f"whisper-{model}"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix not in (".safetensors", ".bin"):
            shutil.copy2(f, dst / f.name)
PY
[ -f data/MiniWHAMR/tr_max.csv ] ||
    "$venv/bin/python" -m robust_brain.data.generate --corpus miniwhamr \
        --out data
"$venv/bin/python" -m robust_brain.data.subset --out .gpu/miniwhamr8k \
    --sample_rate 8000 --budget_mib 40 \
    data/MiniWHAMR/cv_max.csv:40:mix_wav,s1_wav,s2_wav \
    data/MiniWHAMR/tt_max.csv:50 data/MiniWHAMR/tr_max.csv
du -sh .whl .gpu
