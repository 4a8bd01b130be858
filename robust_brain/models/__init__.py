"""Neural network models (speech enhancement front-ends, ...)."""

from robust_brain.models.demucs import Demucs, count_parameters

__all__ = ["Demucs", "count_parameters"]
