"""jaxrobust: instruction robustness of instruction-tuned LMs in JAX/Flax.

Kept import-light on purpose: importing `jaxrobust` pulls in neither JAX models
nor SeqIO, so `jaxrobust.models` and `jaxrobust.inference` run on machines that
have JAX alone.
"""

__version__ = "0.1.0"
