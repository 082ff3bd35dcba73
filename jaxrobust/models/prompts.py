"""Soft prompts: `P x D` trainable input embeddings, prefixed to a frozen model's input.

As in `prompt_tuning/prompts.py`, the prompt is its own module: `Prompt` owns
one parameter, `prompt` `[P, D]`, with logical axes `('prompt',
'prompt_embed')`, which `partitioning.standard_logical_axis_rules` replicates,
so a prompt is saved, loaded and evaluated on its own, apart from the model.

How the prompt joins the input is one small function, `prefix_concat`
(`[P, D]` + `[B, T, D]` -> `[B, P+T, D]`, the mask grown by P always-attended
positions); `T5.encode` takes it as its `combine` argument, so another way of
joining (an infix after a task marker, a per-example prompt) is a function of
the same signature.

Positions: the T5 encoder's relative attention bias depends only on the
distance between positions, so the P extra positions shift nothing; LLaMA
places the prefix at RoPE positions 0..P-1 (`llama.positions_from_mask(mask,
offset=P)`). `tests/test_prompts.py` checks both against prepending the
prompt's tokens.

Einsum letter legend: B batch, T length, P prompt length, D model dim, V vocab.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from jaxrobust.storage import files

Array = jax.Array
# (rng, shape [P, D], dtype) -> array [P, D]; Flax's initializer signature.
Initializer = Callable[..., Array]
# (prompt [P, D] or [B, P, D], embedded [B, T, D], mask [B, T]) -> (embedded, mask).
Combine = Callable[[Array, Array, Array], tuple[Array, Array]]
AXES = ("prompt", "prompt_embed")


class Prompt(nn.Module):
    """The soft prompt `[P, D]`; `__call__` returns it (the caller joins it to inputs)."""

    length: int  # P.
    embed_dim: int  # D; must equal the model's width.
    initializer: Initializer = nn.initializers.uniform(0.5)

    @nn.compact
    def __call__(self) -> Array:
        return self.param(
            "prompt",
            nn.with_logical_partitioning(self.initializer, AXES),
            (self.length, self.embed_dim),
            jnp.float32,
        )


def prefix_concat(prompt: Array, embedded: Array, mask: Array) -> tuple[Array, Array]:
    """Places the prompt before the input embeddings; prompt positions are always attended.

    Args:
      prompt: `[P, D]` (shared by the batch) or `[B, P, D]`.
      embedded: `[B, T, D]` token embeddings.
      mask: `[B, T]` bool, True on real tokens.

    Returns:
      (`[B, P+T, D]` in `embedded`'s dtype, mask `[B, P+T]`).
    """
    prompt = jnp.asarray(prompt, embedded.dtype)
    if prompt.shape[-1] != embedded.shape[-1]:
        raise ValueError(
            f"soft prompt of width {prompt.shape[-1]} (shape {prompt.shape}) cannot join input "
            f"embeddings of width {embedded.shape[-1]}: the prompt was made for another model"
        )
    if prompt.ndim == 2:
        prompt = jnp.broadcast_to(prompt[None], (embedded.shape[0],) + prompt.shape)
    joined = jnp.concatenate([prompt, embedded], axis=1)
    mask = jnp.concatenate([jnp.ones(prompt.shape[:2], bool), jnp.asarray(mask, bool)], axis=1)
    return joined, mask


# ---------------------------------------------------------------------------
# Initialisers.
# ---------------------------------------------------------------------------


def from_sampled_vocab(embedding: np.ndarray | Array, population: int | None = None) -> Initializer:
    """Rows of the model's token embedding `[V, D]`, sampled without replacement.

    Args:
      population: sample among the first `population` rows (prompt tuning samples
        the 5,000 most frequent SentencePiece pieces, which come first in T5's
        vocabulary); None = all rows.
    """
    table = jnp.asarray(embedding, jnp.float32)
    n = table.shape[0] if population is None else min(population, table.shape[0])

    def init(rng: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> Array:
        _check_width(shape, table.shape[1], "the token embedding")
        rows = jax.random.choice(rng, n, (shape[0],), replace=shape[0] > n)
        return table[rows].astype(dtype)

    return init


def from_text(
    embedding: np.ndarray | Array, token_ids: Sequence[int], population: int | None = None
) -> Initializer:
    """The embeddings of a text's tokens (e.g. a task instruction), in order.

    A text shorter than P fills the remaining rows from sampled vocabulary
    embeddings (`from_sampled_vocab`); a longer one is an error.
    """
    table = jnp.asarray(embedding, jnp.float32)
    ids = np.asarray(token_ids, np.int32)
    rest = from_sampled_vocab(table, population)

    def init(rng: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> Array:
        _check_width(shape, table.shape[1], "the token embedding")
        if len(ids) > shape[0]:
            raise ValueError(
                f"prompt init text has {len(ids)} tokens, more than the prompt length "
                f"P={shape[0]}; shorten the text or raise the prompt length"
            )
        head = table[ids]
        if len(ids) == shape[0]:
            return head.astype(dtype)
        tail = rest(rng, (shape[0] - len(ids), shape[1]))
        return jnp.concatenate([head, tail], axis=0).astype(dtype)

    return init


def from_file(path: str | pathlib.Path) -> Initializer:
    """A saved prompt (`.npy`, `[P, D]`), e.g. to continue training or to transfer it."""
    value = load_prompt(path)

    def init(rng: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> Array:
        del rng
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{path}: prompt of shape {value.shape}, expected {tuple(shape)} "
                "(prompt length P, model width D)"
            )
        return jnp.asarray(value, dtype)

    return init


def _check_width(shape: tuple[int, int], width: int, what: str) -> None:
    if shape[1] != width:
        raise ValueError(f"prompt width D={shape[1]} does not match {what}'s width {width}")


# ---------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------


def save_prompt(path: str | os.PathLike, prompt: np.ndarray | Array) -> None:
    """Writes `[P, D]` float32 to a `.npy` file, whole (local or object store)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(jax.device_get(prompt), np.float32))
    files.write_atomic(path, buffer.getvalue())


def read_prompt(path: str | os.PathLike, embed_dim: int | None = None) -> tuple[np.ndarray, str]:
    """Reads a `[P, D]` prompt and the SHA-256 of its file (what record headers name it
    by); with `embed_dim`, checks it fits a model of that width. The one reader of
    prompt files: training's `from_file`, evaluation's `ModelSpec.soft_prompt`."""
    try:
        raw = epath.Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"soft prompt file {path} does not exist") from None
    try:
        value = np.load(io.BytesIO(raw))
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a .npy prompt file ({e})") from None
    if value.ndim != 2:
        raise ValueError(f"{path}: expected prefix embeddings [P, D], found shape {value.shape}")
    if embed_dim is not None and value.shape[1] != embed_dim:
        raise ValueError(
            f"{path}: soft prompt of width D={value.shape[1]} (shape {value.shape}) does not "
            f"match the model's width emb_dim={embed_dim}; it was trained for another model"
        )
    return value, hashlib.sha256(raw).hexdigest()


def load_prompt(path: str | os.PathLike, embed_dim: int | None = None) -> np.ndarray:
    """Reads a `[P, D]` prompt (`read_prompt` without the hash)."""
    return read_prompt(path, embed_dim)[0]
