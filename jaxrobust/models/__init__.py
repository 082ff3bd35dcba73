"""Flax linen model definitions (T5 family, LLaMA family).

Nothing under `models/` imports SeqIO, TensorFlow or gin.
"""
