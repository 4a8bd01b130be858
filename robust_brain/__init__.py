"""robust_brain: noise-robust speech front-ends trained with two-loss
gradient surgery on top of SpeechBrain.

The library holds the reusable parts (the gradient-surgery engine, models,
data preparation, evaluation); ``recipes/`` holds thin training scripts and
``hparams/`` their HyperPyYAML configurations.
"""

from pathlib import Path

__version__ = (
    (Path(__file__).resolve().parent.parent / "version.txt").read_text().strip()
    if (Path(__file__).resolve().parent.parent / "version.txt").exists()
    else "0.0.0"
)
