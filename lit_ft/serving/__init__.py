"""Putting a fine-tuned model to work: `lit_ft serve` (HTTP) and `lit_ft chat` (the terminal)."""
