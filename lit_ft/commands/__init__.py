"""The `lit_ft` commands: the CLI verbs and what only they use (the top layer: nothing imports it)."""
