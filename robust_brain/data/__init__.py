"""Corpora: offline generation, real-corpus preparation, manifests."""
