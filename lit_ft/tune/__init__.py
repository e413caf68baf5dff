"""`lit_ft tune`: hyperparameter search with Optuna, each trial a real `lit_ft fit` (see lit_ft/tune/command.py).

Nothing is imported here, so `lit_ft --help` stays light; Optuna is imported only when a search runs.
"""
