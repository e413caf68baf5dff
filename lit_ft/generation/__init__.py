"""Generation: decoding, the generation task base, text metrics, code evaluation and its sandbox."""
