"""Inference engines: EM (MAP) and NUTS over the models' likelihoods.

Importing this package is where crowdbayes first needs jax: it switches on the persistent
compilation cache (:mod:`crowdbayes._compile_cache`) before anything is compiled.
"""

from .._compile_cache import configure as _configure_compile_cache

_configure_compile_cache()
