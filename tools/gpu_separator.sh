#!/usr/bin/env bash
# GPIT's 8 kHz Conv-TasNet pre-trained on a GPU within a time budget: the
# recipe's pretrain stage (SI-SDR uPIT; a short clean dynamic-mixing
# stage, then WHAMR!-task mixtures made on the fly) on the MiniWHAMR
# subset that tools/gpu_prepare.sh packs into .gpu/miniwhamr8k (40 MiB of
# FLAC). Training stops at SEPARATOR_SECONDS (default 240); the last
# finished epoch is written as a SpeechBrain separator folder (encoder,
# masknet, decoder .ckpt + hyperparams.yaml: --pretrained_separator=<it>)
# and scored per WHAMR! condition on the subset's tt rows. Called by
# tools/gpu_check.sh; alone: `WORK=<folder> bash tools/gpu_separator.sh`.
# On a CPU, `DRY_RUN=1 bash tools/gpu_separator.sh` runs it at toy size
# (SEPARATOR_DATA: another packed corpus; SEPARATOR_PRE_EPOCHS: an end
# before the budget, as the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/gpu_env.sh
work=${WORK:-results/gpu_check}/separator
data=${SEPARATOR_DATA:-.gpu/miniwhamr8k}
budget=${SEPARATOR_SECONDS:-240}
[ -f "$data/tr_max.csv" ] || {
    echo "no $data/tr_max.csv: run tools/gpu_prepare.sh first" >&2
    exit 1
}
mkdir -p "$work"
run=$work/run
# the pretrain stage needs no ASR encoder: none is built
args=(hparams/gpit_whisper_mini.yaml --data_folder="$data"
    --output_folder="$run" --stages=[pretrain] --pretrain_dynamic_mixing=True
    --ae_encoder_source=none --ae_encoder=null --ae_loss=null
    --valid_ae=False)
if [ -n "${DRY_RUN:-}" ]; then
    device=cpu
    args+=(--sep_filters=16 --tasnet_bottleneck=8
        --tasnet_hidden=8 --tasnet_blocks=1 --tasnet_repeats=1
        --dynamic_mixing_items=4 --valid_max_items=2 --batch_size=2)
    # stopped by the budget, as on the GPU
    epochs=(1 "${SEPARATOR_PRE_EPOCHS:-1000}")
    budget=${SEPARATOR_SECONDS:-40}
    tt=2
else
    # Conv-TasNet (Luo & Mesgarani 2019) at N 256, B 128, H 256, 8 x 3
    # blocks: 2.4 M parameters, the mask net's file under 16 MiB
    device=cuda
    args+=(--sep_filters=256 --tasnet_bottleneck=128
        --tasnet_hidden=256 --tasnet_blocks=8 --tasnet_repeats=3
        --dynamic_mixing_items=2000 --batch_size=16 --num_workers=8)
    epochs=("${SEPARATOR_DM_EPOCHS:-2}" 1000)
    tt=50
fi
echo "=== separator: pre-training for at most $budget s"
t0=$(date +%s)
set +e
timeout "$budget" "$py" recipes/WHAMR/train_gpit.py "${args[@]}" \
    --device="$device" \
    --dynamic_mixing_epochs="${epochs[0]}" --pretrain_epochs="${epochs[1]}" \
    >"$work/train.log" 2>&1
rc=$?
set -e
echo "trained for $(($(date +%s) - t0)) s"
tail -n 5 "$work/train.log"
[ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || exit "$rc"
done_epochs() {  # the newest checkpoint's epoch counter of a stage (or 0)
    local ckpt
    ckpt=$(ls -d "$run/save/$1/save/CKPT"* 2>/dev/null | sort | tail -n 1)
    if [ -n "$ckpt" ]; then cat "$ckpt/counter.ckpt"; else echo 0; fi
}
dm=$(done_epochs pretrain_dm)
pre=$(done_epochs pretrain)
echo "epochs finished: clean dynamic mixing $dm, WHAMR! task $pre"
[ "$pre" -gt 0 ] || {
    echo "no WHAMR!-task epoch finished in $budget s" >&2
    exit 1
}
if [ "$rc" -eq 124 ]; then
    # stopped by the budget: reload the last finished epochs (nothing
    # left to train) and write the separator as a finished run does
    "$py" recipes/WHAMR/train_gpit.py "${args[@]}" --device="$device" \
        --dynamic_mixing_epochs="$dm" --pretrain_epochs="$pre" \
        >>"$work/train.log" 2>&1
fi
rm -rf "$work/weights"
cp -r "$run/save/pretrained/pre-trained" "$work/weights"
for stage in pretrain_dm pretrain; do
    cp "$run/save/$stage/train_log.txt" "$work/${stage}_log.txt"
done
# the separator on WHAMR!'s four mixtures of the subset's tt rows
"$py" tools/separator_conditions.py "${args[0]}" "$run/save/pretrain" \
    --max_items="$tt" "${args[@]:1}" | tee "$work/conditions.md"
echo "separator in $work/weights"
