"""T5 (encoder-decoder) scoring for `inference.Engine`: pure scorers and the `T5Adapter`.

Pure, jittable functions of `(config, params, batch)`:
`option_log_likelihoods` (differentiable in params and the soft prompt; the
soft-prompt trainer's scorer), `sun_option_scores` (Sun et al.'s scores read off
a greedy decode), `pooled_encoder_states` and `first_step_decoder_states`
(Sun et al.'s representation). The encoder runs once per example
and all its options go through one `[B, O, L]` decoder call.

`T5Adapter` is what the engine needs from the family: text -> ids (options are
tokenised alone; EOS included), batch layouts and the jittable functions.
`FAMILY` declares T5 to `inference.families` (presets, init, axes, HF files,
adapter, the scorers training uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import checkpoints
from jaxrobust.inference import families, generation
from jaxrobust.models import layers, t5, t5_config

Array = jax.Array

# ---------------------------------------------------------------------------
# Pure, jittable scoring functions.
# ---------------------------------------------------------------------------


def option_log_likelihoods(
    config: t5_config.T5Config,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
    average: bool = False,
) -> Array:
    """Log-likelihood of each option given the input; differentiable in params/prefix.

    Args:
      batch: `inputs` `[B, S]` encoder tokens (pad 0); `targets` `[B, O, L]`
        option tokens, right-padded; `target_mask` `[B, O, L]`, True on real
        option tokens (an all-False row is an absent option).
      prefix_embeddings: optional soft prompt `[P, D]` or `[B, P, D]`.
      average: mean per token instead of the sum.

    Returns:
      `[B, O]` float32; absent options are -inf.
    """
    model = t5.T5(config)
    variables = {"params": params}
    encoded, mask = model.apply(variables, batch["inputs"], prefix_embeddings, method=t5.T5.encode)
    targets = batch["targets"]
    dec_in = layers.shift_right(targets, config.pad_id)  # Teacher forcing.
    logits, _ = model.apply(variables, encoded, mask, dec_in, method=t5.T5.decode)  # [B,O,L,V]
    return generation.option_totals(logits, targets, batch["target_mask"], average)


def sun_option_scores(config: t5_config.T5Config, params: Any, batch: dict[str, Array]) -> Array:
    """Sun et al.'s option scores `[B, O]` (the mode is described in `inference.engine`)."""
    steps = batch["targets"].shape[-1]
    _, scores = generation.greedy_decode(
        config, params, batch["inputs"], steps, batch["targets"], batch["target_mask"]
    )
    return scores


def pooled_encoder_states(
    config: t5_config.T5Config,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
) -> Array:
    """Mean of the final encoder states over attended positions: `[B, D]` float32.

    With a soft prompt `[P, D]` its P positions are encoder positions too and are
    averaged in (the training loss's representation term).
    """
    encoded, mask = t5.T5(config).apply(
        {"params": params}, batch["inputs"], prefix_embeddings, method=t5.T5.encode
    )
    m = mask[..., None].astype(jnp.float32)
    return jnp.sum(encoded.astype(jnp.float32) * m, axis=1) / jnp.maximum(m.sum(1), 1.0)


def first_step_decoder_states(
    config: t5_config.T5Config,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
) -> Array:
    """The decoder's final hidden state at the first generation step: `[B, D]` float32.

    Sun et al.'s (2023) representation of an instruction-formatted input: the
    last decoder layer's output, after the final layer norm (HF's
    ``decoder_hidden_states[-1]``), at the one position that reads the decoder
    start token, i.e. the state the first output token is predicted from. Read
    with Flax's `capture_intermediates` on the decoder's final norm.
    """
    model = t5.T5(config)
    variables = {"params": params}
    encoded, mask = model.apply(variables, batch["inputs"], prefix_embeddings, method=t5.T5.encode)
    start = jnp.full((encoded.shape[0], 1), config.pad_id, jnp.int32)  # T5's decoder start.
    _, state = model.apply(
        variables,
        encoded,
        mask,
        start,
        method=t5.T5.decode,
        capture_intermediates=lambda mdl, method: mdl.name == "decoder_norm",
        mutable=["intermediates"],
    )
    (hidden,) = state["intermediates"]["decoder"]["decoder_norm"]["__call__"]  # [B, 1, D]
    return hidden[:, 0].astype(jnp.float32)


def target_log_probs(
    config: t5_config.T5Config,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
) -> Array:
    """Teacher-forced log-probabilities `[N, L, V]` of the one target per row.

    Args:
      batch: 'inputs' `[N, S]` and 'targets' `[N, 1, L]` (a generation task's gold text).
    """
    targets = batch["targets"][:, 0]
    dec_in = layers.shift_right(targets, config.pad_id)
    logits = t5.T5(config).apply({"params": params}, batch["inputs"], dec_in, prefix_embeddings)
    return jax.nn.log_softmax(logits, axis=-1)


# ---------------------------------------------------------------------------
# Model adapter.
# ---------------------------------------------------------------------------


class T5Adapter:
    """The T5-specific parts of the engine: batch layout and jittable functions."""

    def __init__(self, config: t5_config.T5Config, tokenizer: Any = None):
        self.config = config
        self.tokenizer = tokenizer

    def encode_prompt(self, text: str) -> list[int]:
        """Encoder ids, EOS included."""
        return self.tokenizer.encode(text)

    def cut(self, ids: list[int], max_len: int) -> list[int]:
        """The first `max_len - 1` tokens and EOS (T5X/HF truncation)."""
        return ids[: max_len - 1] + [self.tokenizer.eos_id]

    def encode_rank(self, text: str, options: Sequence[str], add_eos: bool):
        """(encoder ids, per-option decoder target ids); options are tokenised alone."""
        return self.encode_prompt(text), [
            self.tokenizer.encode(o, add_eos=add_eos) for o in options
        ]

    def sun_encode(self, text: str, options: Sequence[str], max_len: int):
        """Sun et al.'s (input ids, option ids, truncated) (`inference.engine`, mode 'sun').

        As their HF T5 tokenizer call: the input cut to its first `max_len - 1`
        tokens and EOS (`truncation=True`); each option tokenised alone WITH the
        EOS the tokenizer appends (their option length counts it).
        """
        ids = self.encode_prompt(text)
        truncated = len(ids) > max_len
        if truncated:
            ids = self.cut(ids, max_len)
        return ids, [self.tokenizer.encode(o, add_eos=True) for o in options], truncated

    def input_batch(self, inputs, s: int, rows: int) -> dict[str, np.ndarray]:
        return {"inputs": self.rank_batch(inputs, [], s, 1, 1, rows)["inputs"]}

    def rank_batch(self, inputs, options, s: int, o: int, length: int, rows: int):
        """Pads token lists to `inputs [rows, s]`, `targets/target_mask [rows, o, length]`."""
        pad = self.config.pad_id
        x = np.full((rows, s), pad, np.int32)
        tg = np.full((rows, o, length), pad, np.int32)
        for i, ids in enumerate(inputs):
            x[i, : len(ids)] = ids
        for i, opts in enumerate(options):
            for j, ids in enumerate(opts):
                tg[i, j, : len(ids)] = ids
        lens = np.zeros((rows, o), np.int32)
        for i, opts in enumerate(options):
            lens[i, : len(opts)] = [len(ids) for ids in opts]
        mask = np.arange(length)[None, None, :] < lens[..., None]
        return {"inputs": x, "targets": tg, "target_mask": mask}

    def functions(self) -> dict[str, Callable]:
        """Mode-specific jittable functions; the engine adds the family's scorers."""
        cfg = self.config
        return {
            "sun": lambda p, b: sun_option_scores(cfg, p, b),
            # A representation (Engine.pooled_encoder_states(kind='first_step')).
            "first_step": lambda p, b: first_step_decoder_states(cfg, p, b),
        }

    def generate_fn(self, max_new_tokens: int) -> Callable:
        return lambda p, b: generation.greedy_decode(self.config, p, b["inputs"], max_new_tokens)[0]


# ---------------------------------------------------------------------------
# The family (`inference.families`).
# ---------------------------------------------------------------------------

FAMILY = families.Family(
    name="t5",
    config_class=t5_config.T5Config,
    get_preset=t5_config.get_preset,
    from_hf_config=t5_config.from_hf_config,
    init=lambda config: lambda rng: t5.T5(config).init(rng, *t5.dummy_inputs()),
    param_logical_axes=t5.param_logical_axes,
    logical_dims=t5.logical_dims,
    make_adapter=lambda config, tokenizer, fmt: T5Adapter(config, tokenizer),
    option_log_likelihoods=option_log_likelihoods,
    target_log_probs=target_log_probs,
    pooled_states=pooled_encoder_states,
    token_embedding=lambda params: params["token_embedder"]["embedding"],
    load_hf=checkpoints.load_hf_t5,
    export_hf=checkpoints.export_hf_t5,
)
