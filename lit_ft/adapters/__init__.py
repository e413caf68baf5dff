"""One module per library whose internals lit_ft relies on (Lightning, Transformers, ...)."""
