"""Greedy decoding with the KV cache, option scores from logits, and matching
generated text to answer options.

Pure functions of (config, params, arrays), jitted by `jaxrobust.inference`.
Imports only JAX and the models (no SeqIO, TensorFlow or gin), so it runs on
machines that have nothing else.

Decoding runs `max_new_tokens` steps inside one `lax.while_loop`. T5
(`greedy_decode`): the encoder and the cross-attention keys/values are computed
once, each step feeds one token per row through the decoder with the
self-attention cache. LLaMA (`greedy_decode_llama`): the left-padded prompts are
prefilled into the cache in one call, each step feeds one token per row; only
the new tokens are returned, never the prompt. A row stops at its own EOS
(later positions are filled, as HF `generate` pads finished rows); the loop
exits early once every row has stopped.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxrobust.models import llama, llama_config, t5, t5_config

Array = jax.Array
NO_MATCH = -1  # The prediction of an output that names no option (an index, never a label).


def option_totals(logits: Array, targets: Array, target_mask: Array, average: bool) -> Array:
    """Options' log-likelihoods `[B, O]` from teacher-forced logits `[B, O, L, V]`.

    Sums (or, with `average`, means) log p(target token) over the True
    positions of `target_mask` `[B, O, L]`; an all-False row (absent option)
    scores -inf. Shared by the T5 and LLaMA scorers.
    """
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    token_lp = picked - jax.nn.logsumexp(logits, axis=-1)  # [B, O, L]
    total = jnp.sum(jnp.where(target_mask, token_lp, 0.0), axis=-1)
    if average:
        total = total / jnp.maximum(target_mask.sum(-1), 1)
    return jnp.where(target_mask.any(-1), total, -jnp.inf)


def _option_scoring(option_targets: Array | None, option_mask: Array | None, b: int):
    """(each row's shortest option length `[B]` or None, zero scores `[B, O]`)."""
    if option_targets is None:
        return None, jnp.zeros((b, 0), jnp.float32)
    o, length = option_targets.shape[1:]
    lengths = option_mask.sum(-1)  # [B, O]
    min_len = jnp.min(jnp.where(lengths > 0, lengths, length + 1), axis=-1)  # [B]
    return min_len, jnp.zeros((b, o), jnp.float32)


def _emit(i, logits, done, out, scores, *, fill_id, eos_id, option_targets, min_len):
    """Appends greedy step i's token (from `logits` `[B, V]`; `fill_id` once a row is
    done) to `out` and adds log p_i(option[i]) to the option scores while i is below
    the row's shortest option. Returns (token `[B]`, done, out, scores)."""
    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # Lowest id wins ties, as torch.
    nxt = jnp.where(done, fill_id, nxt)
    out = jax.lax.dynamic_update_slice_in_dim(out, nxt[:, None], i, axis=1)
    if option_targets is not None:
        logp = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        step_tokens = jax.lax.dynamic_index_in_dim(option_targets, i, axis=2, keepdims=False)
        picked = jnp.take_along_axis(logp, step_tokens, axis=-1)  # [B, O]
        scores = scores + jnp.where((i < min_len)[:, None], picked, 0.0)
    return nxt, done | (nxt == eos_id), out, scores


def _finish(out: Array, scores: Array, option_mask: Array | None) -> tuple[Array, Array | None]:
    if option_mask is None:
        return out, None
    return out, jnp.where(option_mask.any(-1), scores, -jnp.inf)


def greedy_decode(
    config: t5_config.T5Config,
    params: Any,
    inputs: Array,
    max_new_tokens: int,
    option_targets: Array | None = None,
    option_mask: Array | None = None,
    prefix_embeddings: Array | None = None,
) -> tuple[Array, Array | None]:
    """Greedy (argmax) decoding; optionally scores options on the greedy path.

    Args:
      inputs: `[B, S]` encoder tokens padded with `pad_id`.
      max_new_tokens: decoding steps (static).
      option_targets: optional `[B, O, L]` option tokens. When given, step `t`
        adds `log p_t(option[t])` to each option's score, where `p_t` is the
        distribution of the *greedy* decode at step `t` (Sun et al.'s reading
        of option scores from the generation logits), for `t` below the row's
        shortest option length. Decoding then never stops early (every step's
        distribution is needed); rows past EOS are fed `pad_id`, as in HF.
      option_mask: `[B, O, L]`, True on real option tokens; all-False rows
        are absent options (score -inf).

    Returns:
      (tokens `[B, max_new_tokens]` with `pad_id` after each row's EOS,
       option scores `[B, O]` float32 or None).
    """
    model = t5.T5(config)
    variables = {"params": params}
    encoded, enc_mask = model.apply(variables, inputs, prefix_embeddings, method=t5.T5.encode)
    cross = model.apply(variables, encoded, method=t5.T5.cross_kv)
    b = inputs.shape[0]
    cache = t5.init_cache(config, b, max_new_tokens)
    scoring = option_targets is not None
    min_len, scores0 = _option_scoring(option_targets, option_mask, b)
    emit = functools.partial(
        _emit,
        fill_id=config.pad_id,
        eos_id=config.eos_id,
        option_targets=option_targets,
        min_len=min_len,
    )

    def body(state):
        i, token, cache, done, out, scores = state
        logits, cache = model.apply(
            variables, encoded, enc_mask, token, cache, cross, method=t5.T5.decode
        )
        nxt, done, out, scores = emit(i, logits[:, 0], done, out, scores)
        return i + 1, nxt[:, None], cache, done, out, scores

    def cond(state):
        i, _, _, done, _, _ = state
        return (i < max_new_tokens) & (scoring | ~jnp.all(done))

    state = (
        jnp.zeros((), jnp.int32),
        jnp.full((b, 1), config.pad_id, jnp.int32),  # T5's decoder start token is pad.
        cache,
        jnp.zeros((b,), bool),
        jnp.full((b, max_new_tokens), config.pad_id, jnp.int32),
        scores0,
    )
    _, _, _, _, out, scores = jax.lax.while_loop(cond, body, state)
    return _finish(out, scores, option_mask)


def greedy_decode_llama(
    config: llama_config.LlamaConfig,
    params: Any,
    tokens: Array,
    mask: Array,
    max_new_tokens: int,
    option_targets: Array | None = None,
    option_mask: Array | None = None,
    prefix_embeddings: Array | None = None,
) -> tuple[Array, Array | None]:
    """Greedy continuation of left-padded prompts; optionally Sun et al.'s option scores.

    Args:
      tokens: `[B, S]` prompts, LEFT-padded (every row ends at column S-1).
      mask: `[B, S]` bool, True on real tokens (never inferred from ids).
      max_new_tokens: decoding steps (static).
      option_targets / option_mask: as in `greedy_decode` (`[B, O, L]`).
      prefix_embeddings: optional soft prompt `[P, D]` or `[B, P, D]`.

    Returns:
      (NEW tokens only `[B, max_new_tokens]`, `eos_id` after each row's EOS
       (HF's fill when no pad token is set), option scores `[B, O]` or None).
    """
    model = llama.Llama(config)
    variables = {"params": params}
    mask = jnp.asarray(mask, bool)
    b, s = tokens.shape
    p = 0 if prefix_embeddings is None else prefix_embeddings.shape[-2]
    cache = llama.init_cache(config, b, p + s + max_new_tokens)
    positions = llama.positions_from_mask(mask, offset=p)
    if s > 1:
        # Prefill all but the last column; its logits are unused, so XLA drops
        # the [B, S-1, V] vocabulary projection (as HF's `logits_to_keep=1`).
        _, cache = model.apply(
            variables, tokens[:, :-1], positions[:, :-1], mask[:, :-1], cache, prefix_embeddings
        )
        prefix_embeddings = None
    # Left padding: the last column holds every row's last prompt token.
    logits, cache = model.apply(
        variables, tokens[:, -1:], positions[:, -1:], mask[:, -1:], cache, prefix_embeddings
    )
    first = p + mask.sum(-1).astype(jnp.int32)  # [B] position of the first new token.
    scoring = option_targets is not None
    min_len, scores0 = _option_scoring(option_targets, option_mask, b)
    emit = functools.partial(
        _emit,
        fill_id=config.eos_id,  # HF's fill when no pad token is set.
        eos_id=config.eos_id,
        option_targets=option_targets,
        min_len=min_len,
    )

    out0 = jnp.full((b, max_new_tokens), config.eos_id, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    nxt, done, out, scores = emit(zero, logits[:, -1], jnp.zeros((b,), bool), out0, scores0)

    def body(state):
        i, nxt, cache, done, out, scores = state
        # The token emitted at step i-1 sits at position first + i - 1.
        step_positions = (first + i - 1)[:, None]
        logits, cache = model.apply(
            variables, nxt[:, None], step_positions, jnp.ones((b, 1), bool), cache
        )
        nxt, done, out, scores = emit(i, logits[:, 0], done, out, scores)
        return i + 1, nxt, cache, done, out, scores

    def cond(state):
        i, _, _, done, _, _ = state
        return (i < max_new_tokens) & (scoring | ~jnp.all(done))

    state = (zero + 1, nxt, cache, done, out, scores)
    _, _, _, _, out, scores = jax.lax.while_loop(cond, body, state)
    return _finish(out, scores, option_mask)


# ---------------------------------------------------------------------------
# Verbalizer: generated text -> option index.
# ---------------------------------------------------------------------------

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}\u2018\u2019\u201c\u201d]")
# "A", "(A)", "A.", "A)", "Option A", "Answer: A", "(A) text" -> letter A.
_LETTER = re.compile(
    r"^\s*(?:(?:the\s+)?(?:answer|option)\s*(?:is)?\s*:?\s*)?\(?([a-z])\)?[.:)]?(?:\s|$)",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """Lower case, NFKC, punctuation removed, whitespace collapsed and stripped."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def match_option(generated: str, options: Sequence[str], letters: bool = True) -> int:
    """The option a generated answer names, or `NO_MATCH` (-1).

    In order: the normalised text equals exactly one option's normalised text;
    else (when `letters`) the answer is an option letter ("B", "(b)", "Answer:
    B", "(B) text") within range, the first option being "A". Anything else,
    including text equal to two options, is `NO_MATCH`: never a guess.
    """
    norm = normalize(generated)
    hits = [i for i, opt in enumerate(options) if normalize(opt) == norm]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1 or not letters:
        return NO_MATCH
    m = _LETTER.match(generated)
    if m:
        k = ord(m.group(1).upper()) - ord("A")
        rest = normalize(generated[m.end() :])
        # "(B) text" must name option B's text when it names any text.
        if 0 <= k < len(options) and (not rest or rest == normalize(options[k])):
            return k
    return NO_MATCH
