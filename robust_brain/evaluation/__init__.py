"""Evaluation with unseen recognisers: free-running transcription,
Whisper-normalised WER / cpWER, SI-SDR / STOI / PESQ, per-condition tables,
plots and files. The command line is ``python -m robust_brain.evaluate``.

Example
-------
>>> from robust_brain.evaluation import evaluate, write_results
>>> callable(evaluate) and callable(write_results)
True
"""

from robust_brain.evaluation.metrics import (
    cp_word_errors,
    cpwer,
    pesq_wb,
    si_sdr,
    stoi,
    wer,
    word_errors,
)
from robust_brain.evaluation.normalise import normalise
from robust_brain.evaluation.peers import build_peer
from robust_brain.evaluation.recognisers import (
    FasterWhisper,
    HFTransformersASR,
    Recogniser,
    SpeechBrainASR,
    build_recogniser,
)
from robust_brain.evaluation.report import format_report, write_results
from robust_brain.evaluation.runner import (
    EvalResult,
    evaluate,
    read_manifest,
    select_rows,
)

__all__ = [
    "EvalResult",
    "FasterWhisper",
    "HFTransformersASR",
    "Recogniser",
    "SpeechBrainASR",
    "build_peer",
    "build_recogniser",
    "cp_word_errors",
    "cpwer",
    "evaluate",
    "format_report",
    "normalise",
    "select_rows",
    "pesq_wb",
    "read_manifest",
    "si_sdr",
    "stoi",
    "wer",
    "word_errors",
    "write_results",
]
