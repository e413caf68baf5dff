"""`lit_ft check` and the pre-flight rules `fit` enforces (the explicit list: `catalogue.CHECKS`)."""
