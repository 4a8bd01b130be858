"""Pipelines: a method's recipe driver.

A pipeline holds a method's stages in order, each a checkpointed, resumable
:func:`robust_brain.stages.fit_stage` in its own folder; the recipes call
it with their hparams. The method itself (its Brain, its rule, its loss) is
in :mod:`robust_brain.methods`.
"""
