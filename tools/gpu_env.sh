# Sourced by the GPU scripts (tools/gpu_check.sh, tools/gpu_separator.sh):
# the wheels of .whl/ where the Python in use ($PYTHON, default python3)
# lacks SpeechBrain (the device image), this repository on the path, no hub.
py=${PYTHON:-python3}
if [ -d .whl ] && ! "$py" -c "import speechbrain" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
