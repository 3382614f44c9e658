"""Annotation models, one module per family: likelihood, EM updates and estimator."""
