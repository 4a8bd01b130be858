"""Pretrained models from pip packages, converted for training through.

* :func:`~robust_brain.pretrained.whisper.whisper_checkpoint`: OpenAI
  Whisper (tiny.en, base, or any CTranslate2 Whisper folder) as a
  ``transformers`` checkpoint folder, converted once per machine.
* :func:`~robust_brain.pretrained.assets.resolve_whisper_model`: the
  CTranslate2 folders themselves (used by the evaluator's faster-whisper).

Command line: ``python -m robust_brain.pretrained whisper --model tiny.en``.
"""

from robust_brain.pretrained.assets import cache_root, resolve_whisper_model
from robust_brain.pretrained.ct2 import CT2FormatError, read_ct2_model
from robust_brain.pretrained.whisper import (
    convert_ct2_whisper,
    repair_bpe_merges,
    whisper_checkpoint,
)

__all__ = [
    "CT2FormatError",
    "cache_root",
    "convert_ct2_whisper",
    "read_ct2_model",
    "repair_bpe_merges",
    "resolve_whisper_model",
    "whisper_checkpoint",
]
