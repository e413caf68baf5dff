"""Packing of causal-LM training examples: bins, packed attention, the per-architecture probe."""
