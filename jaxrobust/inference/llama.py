"""Decoder-only (LLaMA-family) scoring for `inference.Engine`: the `LlamaAdapter`.

Option scores. An option's score is the log-likelihood of its tokens after the
formatted prompt, where "its tokens" come from tokenising prompt + option
TOGETHER and splitting at the prompt boundary: SentencePiece merges across
that boundary (an option after a newline starts with `yes`, alone it would be
`▁yes`), so tokenising the option alone scores tokens the model never sees in
context. The boundary is the longest token prefix shared by the prompt alone
and every prompt + option of the example (normally the prompt's own tokens). If
a token straddles the boundary (the prompt's last characters merge into an
option's first token) the straddling tokens start every option's continuation,
so all options are still scored on the same text after the same token prefix.
Options are scored without EOS (as lm-evaluation-harness does for decoder-only
models); the option is joined to the prompt with `option_separator` (" ")
unless the prompt already ends in whitespace.

Sharing the prompt across options ("packed prefix sharing"). One forward pass
per example over the row

    [ left-padded prompt (S) | option 1 (L) | option 2 (L) | ... | option O (L) ]

with an explicit attention pattern: the prompt is causal as usual; every option
attends to the whole prompt and causally to its own tokens, never to another
option. Option token l sits at RoPE position n + l (n = prompt length), where it
would be in prompt + option alone, so each score equals a separate forward on
prompt + option (tested against HF) while the prompt is computed once. Only the
1 + O*L positions that predict option tokens go through the vocabulary
projection. Cost per example: S + O*L tokens through the projections and MLP
(one row per option costs O*(S+L)); attention over S + O*L keys.

Why not prefill the prompt into the KV cache and continue every option from
it: continuing O options from one cache needs the cache repeated O times along
the batch (O x B x S x layers x 2 x K x H; SemEval's 19 relations x a 7B
model's cache does not fit) or O sequential calls that read the weights O times
(bandwidth-bound on accelerators). The packed pass reads the weights once and
keeps no cache. The pattern goes through the model's own `DecoderLayer`s (via
`Module.apply(method=...)`), so the layer code is not duplicated here.

Generation and Sun et al.'s scores use `generation.greedy_decode_llama` (KV
cache, left-padded prompts, new tokens only). A soft prompt `[P, D]` sits before
the prompt at positions 0..P-1 and is attended by every token. `FAMILY` declares
LLaMA to `inference.families`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import checkpoints
from jaxrobust.inference import families, generation
from jaxrobust.models import llama, llama_config

Array = jax.Array

# ---------------------------------------------------------------------------
# Forward passes with an explicit attention pattern (run inside `Llama.apply`).
# ---------------------------------------------------------------------------


def _final_states(
    module: llama.Llama,
    tokens: Array,
    positions: Array,
    allowed: Array,
    prefix_embeddings: Array | None = None,
) -> Array:
    """Final RMS-normed states `[B, T, D]` of `tokens` under the pattern `allowed` `[B, T, T]`.

    As `Llama.__call__` without a cache, except that the caller says which
    token attends to which. A prefix `[P, D]` or `[B, P, D]` takes positions
    0..P-1 (callers offset `positions` by P), is attended by every token and
    attends causally to itself.
    """
    x = module.embed(tokens)
    if prefix_embeddings is not None:
        b, t = tokens.shape
        prefix = jnp.asarray(prefix_embeddings, x.dtype)
        if prefix.ndim == 2:
            prefix = jnp.broadcast_to(prefix[None], (b,) + prefix.shape)
        p = prefix.shape[1]
        x = jnp.concatenate([prefix, x], axis=1)
        positions = jnp.concatenate([jnp.broadcast_to(jnp.arange(p), (b, p)), positions], axis=1)
        top = jnp.broadcast_to(
            jnp.concatenate([jnp.tril(jnp.ones((p, p), bool)), jnp.zeros((p, t), bool)], 1),
            (b, p, p + t),
        )
        bottom = jnp.concatenate([jnp.ones((b, t, p), bool), allowed], axis=2)
        allowed = jnp.concatenate([top, bottom], axis=1)
    else:
        p = 0
    sin, cos = llama.rope_tables(module.config, positions)
    for layer in module.layers:
        x, _ = layer(x, sin, cos, allowed, None, None)
    return module.norm(x[:, p:])


def _project(module: llama.Llama, states: Array) -> Array:
    """Vocabulary logits `[..., V]` float32 of final states `[..., D]`."""
    if module.config.tie_word_embeddings:
        w = module.embed_tokens.astype(states.dtype)
        return jnp.einsum("...D,VD->...V", states, w).astype(jnp.float32)
    return jnp.einsum("...D,DV->...V", states, module.lm_head().astype(states.dtype)).astype(
        jnp.float32
    )


def _packed_logits(module, tokens, positions, allowed, predicting, prefix_embeddings):
    states = _final_states(module, tokens, positions, allowed, prefix_embeddings)
    return _project(module, states[:, predicting])


def packed_layout(s: int, o: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Static layout of a packed row: (pattern `[T, T]` bool, predicting slot `[O, L]`).

    `pattern[q, k]`: query slot q may attend key slot k (before the padding
    mask), T = S + O*L. `predicting[o, l]`: the slot whose logits predict token
    l of option o (the prompt's last slot for l = 0, else the option's slot l-1).
    """
    group = np.concatenate([np.full(s, -1), np.repeat(np.arange(o), length)])
    slots = np.arange(s + o * length)
    pattern = (slots[None, :] <= slots[:, None]) & (
        (group[None, :] == -1) | (group[None, :] == group[:, None])
    )
    predicting = np.empty((o, length), np.int32)
    predicting[:, 0] = s - 1
    predicting[:, 1:] = s + np.arange(o)[:, None] * length + np.arange(length - 1)[None, :]
    return pattern, predicting


# ---------------------------------------------------------------------------
# Pure, jittable scoring functions.
# ---------------------------------------------------------------------------


def _option_logits(
    config: llama_config.LlamaConfig,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None,
) -> Array:
    """Logits `[B, O, L, V]` float32 predicting every option token (the packed pass)."""
    tokens, mask = batch["inputs"], jnp.asarray(batch["input_mask"], bool)
    targets, tmask = batch["targets"], jnp.asarray(batch["target_mask"], bool)
    b, s = tokens.shape
    o, length = targets.shape[1:]
    p = 0 if prefix_embeddings is None else prefix_embeddings.shape[-2]
    first = p + mask.sum(-1).astype(jnp.int32)  # Position of every option's first token.
    option_positions = jnp.broadcast_to(
        first[:, None, None] + jnp.arange(length, dtype=jnp.int32), (b, o, length)
    )
    positions = jnp.concatenate(
        [llama.positions_from_mask(mask, offset=p), option_positions.reshape(b, o * length)], 1
    )
    packed = jnp.concatenate([tokens, targets.reshape(b, o * length)], axis=1)
    key_mask = jnp.concatenate([mask, tmask.reshape(b, o * length)], axis=1)
    pattern, predicting = packed_layout(s, o, length)
    allowed = key_mask[:, None, :] & pattern[None]
    return (
        llama.Llama(config)
        .apply(
            {"params": params},
            packed,
            positions,
            allowed,
            predicting.reshape(-1),
            prefix_embeddings,
            method=_packed_logits,
        )
        .reshape(b, o, length, -1)
    )


def option_log_likelihoods(
    config: llama_config.LlamaConfig,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
    average: bool = False,
) -> Array:
    """Log-likelihood of each option after its prompt; differentiable in params/prefix.

    Args:
      batch: `inputs` `[B, S]` prompt tokens, LEFT-padded, with `input_mask`
        `[B, S]` (True on real tokens; never inferred from ids: id 0 is
        `<unk>`); `targets` `[B, O, L]` option continuation tokens,
        right-padded, with `target_mask` `[B, O, L]` (an all-False row is an
        absent option). Every row needs at least one real prompt token (BOS).
      prefix_embeddings: optional soft prompt `[P, D]` or `[B, P, D]` before the
        prompt.
      average: mean per token instead of the sum.

    Returns:
      `[B, O]` float32; absent options are -inf.
    """
    logits = _option_logits(config, params, batch, prefix_embeddings)
    tmask = jnp.asarray(batch["target_mask"], bool)
    return generation.option_totals(logits, batch["targets"], tmask, average)


def target_log_probs(
    config: llama_config.LlamaConfig,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
) -> Array:
    """Teacher-forced log-probabilities `[N, L, V]` of each row's one continuation.

    Args:
      batch: as `option_log_likelihoods` with one option per row (`targets` `[N, 1, L]`).
    """
    return jax.nn.log_softmax(_option_logits(config, params, batch, prefix_embeddings)[:, 0], -1)


def sun_option_scores(
    config: llama_config.LlamaConfig, params: Any, batch: dict[str, Array]
) -> Array:
    """Sun et al.'s scores `[B, O]`: option tokens read off the greedy decode's logits."""
    _, scores = generation.greedy_decode_llama(
        config,
        params,
        batch["inputs"],
        batch["input_mask"],
        batch["targets"].shape[-1],
        batch["targets"],
        batch["target_mask"],
    )
    return scores


def pooled_states(
    config: llama_config.LlamaConfig,
    params: Any,
    batch: dict[str, Array],
    prefix_embeddings: Array | None = None,
) -> Array:
    """Mean of the final (normed) states over each prompt's real tokens: `[B, D]` float32.

    A soft prompt `[P, D]` is attended but not averaged: in a causal model its
    own states do not depend on the text, so they would only dilute the mean.
    """
    tokens, mask = batch["inputs"], jnp.asarray(batch["input_mask"], bool)
    t = tokens.shape[1]
    p = 0 if prefix_embeddings is None else prefix_embeddings.shape[-2]
    allowed = mask[:, None, :] & jnp.tril(jnp.ones((t, t), bool))[None]
    states = llama.Llama(config).apply(
        {"params": params},
        tokens,
        llama.positions_from_mask(mask, offset=p),
        allowed,
        prefix_embeddings,
        method=_final_states,
    )
    m = mask[..., None].astype(jnp.float32)
    return jnp.sum(states.astype(jnp.float32) * m, axis=1) / jnp.maximum(m.sum(1), 1.0)


# ---------------------------------------------------------------------------
# Host-side tokenisation.
# ---------------------------------------------------------------------------


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaAdapter:
    """The decoder-only parts of `inference.Engine`: tokenisation, batch layout, functions.

    Args:
      config: the model's `LlamaConfig`.
      tokenizer: `encode(text, add_eos)`, `decode`, `bos_id`, `eos_id`, `pad_id`.
      add_bos: prepend BOS to every prompt (the prompt format's `add_bos`).
      option_separator: joins prompt and option unless the prompt ends in whitespace.
    """

    def __init__(
        self,
        config: llama_config.LlamaConfig,
        tokenizer: Any,
        add_bos: bool = True,
        option_separator: str = " ",
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.add_bos = add_bos and tokenizer.bos_id is not None
        self.option_separator = option_separator

    # -- tokens ---------------------------------------------------------------

    def encode_prompt(self, text: str) -> list[int]:
        """Prompt ids: BOS (if the format wants it) + the text's tokens, no EOS."""
        ids = self.tokenizer.encode(text, add_eos=False)
        return ([self.tokenizer.bos_id] if self.add_bos else []) + ids

    def cut(self, ids: list[int], max_len: int) -> list[int]:
        """Keeps BOS and the LAST tokens: the prompt format's answer cue is at the end."""
        head = ids[:1] if self.add_bos else []
        return head + ids[len(ids) - (max_len - len(head)) :]

    def encode_rank(
        self, text: str, options: Sequence[str], add_eos: bool
    ) -> tuple[list[int], list[list[int]]]:
        """(shared prompt ids, per-option continuation ids); see the module docstring.

        `add_eos` is ignored: decoder-only options are scored without EOS.
        """
        del add_eos
        prompt = self.encode_prompt(text)
        sep = "" if text[-1:].isspace() else self.option_separator
        joined = [self.encode_prompt(text + sep + opt) for opt in options]
        boundary = min([len(prompt)] + [_common_prefix(prompt, ids) for ids in joined])
        if boundary == 0:
            raise ValueError(
                f"prompt {text[:80]!r} shares no token with prompt + option; a decoder-only "
                "prompt needs at least one token of its own (use a format with add_bos)"
            )
        continuations = [ids[boundary:] for ids in joined]
        for opt, ids in zip(options, continuations, strict=True):
            if not ids:
                raise ValueError(f"option {opt!r} adds no tokens after prompt {text[-80:]!r}")
        return prompt[:boundary], continuations

    def sun_encode(self, text: str, options: Sequence[str], max_len: int):
        """Sun et al.'s (input ids, option ids, truncated) (`inference.engine`, mode 'sun').

        As their HF LLaMA tokenizer calls: the prompt (BOS + text) cut from the
        RIGHT to its first `max_len` tokens (`truncation=True`; the answer cue
        at the end can be lost, as there); each option tokenised ALONE (not in
        context), without the BOS they drop and without EOS.
        """
        ids = self.encode_prompt(text)
        truncated = len(ids) > max_len
        return (
            ids[:max_len],
            [self.tokenizer.encode(o, add_eos=False) for o in options],
            truncated,
        )

    # -- batches --------------------------------------------------------------

    def input_batch(self, inputs: Sequence[list[int]], s: int, rows: int) -> dict[str, np.ndarray]:
        """`inputs`/`input_mask` `[rows, s]`, left-padded (dummy rows all padding)."""
        seqs = list(inputs) + [[]] * (rows - len(inputs))
        # Dummy rows are all padding: their attention is uniform over masked
        # keys (the mask is additive -1e10, never NaN) and their outputs are dropped.
        tokens, mask, _ = llama.left_pad(seqs, self.tokenizer.pad_id, s)
        return {"inputs": tokens, "input_mask": mask}

    def rank_batch(self, inputs, options, s: int, o: int, length: int, rows: int):
        """`input_batch` plus `targets`/`target_mask` `[rows, o, length]`, right-padded."""
        batch = self.input_batch(inputs, s, rows)
        tg = np.full((rows, o, length), self.tokenizer.pad_id, np.int32)
        tmask = np.zeros((rows, o, length), bool)
        for i, opts in enumerate(options):
            for j, ids in enumerate(opts):
                tg[i, j, : len(ids)] = ids
                tmask[i, j, : len(ids)] = True
        return dict(batch, targets=tg, target_mask=tmask)

    # -- jittable functions ---------------------------------------------------

    def functions(self) -> dict[str, Callable]:
        """Mode-specific jittable functions; the engine adds the family's scorers."""
        cfg = self.config
        return {"sun": lambda p, b: sun_option_scores(cfg, p, b)}

    def generate_fn(self, max_new_tokens: int) -> Callable:
        cfg = self.config
        return lambda p, b: generation.greedy_decode_llama(
            cfg, p, b["inputs"], b["input_mask"], max_new_tokens
        )[0]


# ---------------------------------------------------------------------------
# The family (`inference.families`).
# ---------------------------------------------------------------------------

FAMILY = families.Family(
    name="llama",
    config_class=llama_config.LlamaConfig,
    get_preset=llama_config.get_preset,
    from_hf_config=llama_config.from_hf_config,
    init=llama.init_fn,
    param_logical_axes=llama.param_logical_axes,
    logical_dims=llama.logical_dims,
    make_adapter=lambda config, tokenizer, fmt: LlamaAdapter(config, tokenizer, fmt.add_bos),
    option_log_likelihoods=option_log_likelihoods,
    target_log_probs=target_log_probs,
    pooled_states=pooled_states,
    token_embedding=lambda params: params["embed_tokens"],
    load_hf=checkpoints.load_hf_llama,
    export_hf=checkpoints.export_hf_llama,
)
