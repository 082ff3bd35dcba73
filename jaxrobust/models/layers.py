"""Building blocks shared by the T5 and LLaMA models.

`Kernel` is a bare 2-D weight with logical axes (the caller reshapes it to
heads), `RMSNorm` is the one RMS layer norm of both families (they differ only
in where the result is cast to the activation dtype, see its docstring),
`NEG_INF` is the additive bias of masked attention keys, and `shift_right`
builds teacher-forced decoder inputs from targets.

Einsum letter legend:
  B batch, T length, D model dim (the axis `RMSNorm` normalises).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
# Additive attention bias for masked keys. Large but finite, so a row whose keys
# are all masked stays finite (T5X uses the same value).
NEG_INF = -1e10


class Kernel(nn.Module):
    """A 2-D dense kernel `[in, out]` with logical axes; the caller reshapes it."""

    shape: tuple[int, int]
    axes: tuple[str, str]
    scale: float = 1.0

    @nn.compact
    def __call__(self) -> Array:
        return self.param(
            "kernel",
            nn.with_logical_partitioning(
                nn.initializers.variance_scaling(self.scale, "fan_in", "truncated_normal"),
                self.axes,
            ),
            self.shape,
            jnp.float32,
        )


class RMSNorm(nn.Module):
    """RMS layer norm (no mean, no bias) with a float32 `scale` `[D]`.

    The statistics are always computed in float32, and `scale` stays float32.
    The two families differ only in where the normalised value returns to the
    activation dtype `dtype`; each keeps its reference's rounding, so bfloat16
    runs round where the reference does:

    - `cast_before_scale=False` (T5): `(x * rsqrt(mean(x**2) + eps) * scale)`
      in float32, cast once; HF `T5LayerNorm` with float32 weights computes the
      same product (and leaves the result in float32).
    - `cast_before_scale=True` (LLaMA): the normalised value is cast to `dtype`
      before the scale, as HF `LlamaRMSNorm` does (`weight * x.to(input_dtype)`),
      and the product is cast again.

    With `dtype=float32` both are the same computation.
    """

    epsilon: float
    dtype: Any  # Activation dtype of the output.
    cast_before_scale: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Normalises `x` `[..., D]` over its last axis; returns `[..., D]` in `dtype`."""
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (x.shape[-1],),
            jnp.float32,
        )
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(var + self.epsilon)
        if self.cast_before_scale:
            y = y.astype(self.dtype)
        return (y * scale).astype(self.dtype)


def shift_right(targets: Array, start_id: int) -> Array:
    """Teacher-forced decoder inputs: `targets` shifted one step right.

    Args:
      targets: `[..., T]` token ids (e.g. `[B, T]`, or `[B, O, T]` per option).
      start_id: the decoder's start token (T5: `pad_id`), put in front.

    Returns:
      `[..., T]`: `start_id` then `targets[..., :-1]`, in `targets`' dtype.
    """
    start = jnp.full(targets.shape[:-1] + (1,), start_id, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)
