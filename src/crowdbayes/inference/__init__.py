"""Inference engines: EM (MAP) and NUTS over the models' likelihoods."""
