"""Method-specific Brains built on :class:`robust_brain.brain.DualLossBrain`
(a method only says how its two losses are computed; the engine combines
their gradients)."""
