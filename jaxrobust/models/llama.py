"""LLaMA-family decoder-only transformer (LLaMA 1/2, Alpaca, Vicuna, WizardLM) in Flax linen.

The parameter tree follows HF `LlamaForCausalLM`'s module names with our
layouts: `layers_3/self_attn/q_proj/kernel` is HF's
`model.layers.3.self_attn.q_proj.weight` transposed to `[in, out]`, the
attention kernels kept 2-D (`[embed, joined_kv]`) and reshaped to heads in the
forward pass, as in `t5.py`. `llama_hf.py` holds the whole HF name mapping,
`llama_config.py` the config and presets, `layers.py` the blocks shared with T5.

Rotary embeddings use HF's *rotate-half* convention: dimension `i` of a head
is paired with `i + H/2`. Meta's original checkpoints pair `2i` with `2i+1`;
HF's conversion script permutes the rows of `q_proj`/`k_proj` to switch
conventions. Implementing rotate-half means HF tensors load with no
permutation; Meta's `consolidated.*.pth` files are not read here (convert
them with HF's script first).

Batched prompts are LEFT-padded: every row ends at the same column, so one
scalar cache index serves the whole batch. Padding is never inferred from token
ids (LLaMA's id 0 is `<unk>`, a real token): callers pass `mask` (True on real
tokens) and `positions` (counted from each row's first real token, see
`positions_from_mask`).

Einsum letter legend:
  B batch, T query length, S key length, N query heads, K key/value heads,
  G query heads per key/value head (N = K*G), H head dim, D model dim,
  F mlp dim, V vocab, P prompt (prefix embedding) length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.models import layers, llama_config

Array = jax.Array


# ---------------------------------------------------------------------------
# Positions and rotary embeddings.
# ---------------------------------------------------------------------------


def positions_from_mask(mask: Array, offset: int = 0) -> Array:
    """Positions `[B, T]` of left-padded rows: 0 at each row's first real token.

    Padding before the first real token gets position `offset` (it is masked,
    so the value is irrelevant). `offset` is the prefix length P when prefix
    embeddings are passed (the prefix takes positions 0..P-1).
    """
    mask = jnp.asarray(mask)
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0) + offset


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-pads token lists into a batch.

    Args:
      sequences: token ids per row (BOS included if wanted).
      pad_id: filler id (the tokenizer's `pad_id`; for LLaMA, EOS). Never used
        to recover the mask.
      length: T; defaults to the longest row.

    Returns:
      (tokens `[B, T]` int32, mask `[B, T]` bool, positions `[B, T]` int32).
    """
    length = max(len(s) for s in sequences) if length is None else length
    tokens = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), bool)
    for i, seq in enumerate(sequences):
        if len(seq) > length:
            raise ValueError(f"row {i} has {len(seq)} tokens, more than length={length}")
        if len(seq):
            tokens[i, length - len(seq) :] = seq
            mask[i, length - len(seq) :] = True
    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int32)
    return tokens, mask, positions


def rope_inv_freq(config: llama_config.LlamaConfig) -> np.ndarray:
    """Inverse frequencies `[H/2]`, in float32 arithmetic as HF computes them."""
    h = config.head_dim
    exponent = np.arange(0, h, 2, dtype=np.int64).astype(np.float32) / np.float32(h)
    inv_freq = np.float32(1.0) / (np.float32(config.rope_theta) ** exponent)
    # Linear scaling divides the frequencies, i.e. the positions, by the factor.
    return (inv_freq / np.float32(config.rope_scaling_factor)).astype(np.float32)


def rope_tables(config: llama_config.LlamaConfig, positions: Array) -> tuple[Array, Array]:
    """(sin, cos) `[B, T, H]` for `positions` `[B, T]`, halves repeated (rotate-half)."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(config))
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    dtype = config.activation_dtype
    return jnp.sin(emb).astype(dtype), jnp.cos(emb).astype(dtype)


def apply_rope(x: Array, sin: Array, cos: Array) -> Array:
    """Rotates `x` `[B, T, N, H]`: x*cos + rotate_half(x)*sin, rotate_half(a, b) = (-b, a)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


# ---------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------


def _norm(config: llama_config.LlamaConfig) -> layers.RMSNorm:
    """LLaMA's RMSNorm: rounded to the activation dtype before the scale (HF `LlamaRMSNorm`)."""
    return layers.RMSNorm(
        config.layer_norm_epsilon, config.activation_dtype, cast_before_scale=True
    )


class Attention(nn.Module):
    """Causal self-attention with rotary embeddings; MHA or GQA (K < N)."""

    config: llama_config.LlamaConfig

    def setup(self):
        cfg = self.config
        d, n, k, h = cfg.emb_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = layers.Kernel((d, n * h), ("embed", "joined_kv"))
        self.k_proj = layers.Kernel((d, k * h), ("embed", "joined_kv"))
        self.v_proj = layers.Kernel((d, k * h), ("embed", "joined_kv"))
        self.o_proj = layers.Kernel((n * h, d), ("joined_kv", "embed"))

    def __call__(
        self,
        x: Array,
        sin: Array,
        cos: Array,
        allowed: Array,
        cache: dict[str, Array] | None,
        index: Array | None,
    ) -> tuple[Array, dict[str, Array] | None]:
        """Attends `x` `[B, T, D]` to itself (and to the cache).

        Args:
          sin, cos: `[B, T, H]` rotary tables of the T new positions.
          allowed: `[B, T, S]` bool, which keys each query may attend to.
          cache: None, or this layer's `{'k', 'v'}` `[B, S, K, H]`; the T new
            keys/values are written at `index`.

        Returns:
          (`[B, T, D]`, the updated layer cache or None).
        """
        cfg = self.config
        dt = cfg.activation_dtype
        n, k, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        kv_axes = ("batch", "length", cfg.kv_heads_axis, "kv")
        wq = self.q_proj().astype(dt).reshape(cfg.emb_dim, n, h)
        wk = self.k_proj().astype(dt).reshape(cfg.emb_dim, k, h)
        wv = self.v_proj().astype(dt).reshape(cfg.emb_dim, k, h)
        q = jnp.einsum("BTD,DNH->BTNH", x, wq)
        q = nn.with_logical_constraint(apply_rope(q, sin, cos), ("batch", "length", "heads", "kv"))
        keys = apply_rope(jnp.einsum("BTD,DKH->BTKH", x, wk), sin, cos)
        values = jnp.einsum("BTD,DKH->BTKH", x, wv)
        keys = nn.with_logical_constraint(keys, kv_axes)
        values = nn.with_logical_constraint(values, kv_axes)
        if cache is not None:
            keys = jax.lax.dynamic_update_slice_in_dim(cache["k"], keys.astype(dt), index, axis=1)
            values = jax.lax.dynamic_update_slice_in_dim(
                cache["v"], values.astype(dt), index, axis=1
            )
            cache = {"k": keys, "v": values}

        b, t = x.shape[:2]
        # Query head n = kk*G + g uses key/value head kk (HF's `repeat_kv` order).
        q = q.reshape(b, t, k, n // k, h)
        scores = jnp.einsum("BTKGH,BSKH->BKGTS", q, keys).astype(jnp.float32) * h**-0.5
        scores = jnp.where(allowed[:, None, None, :, :], scores, layers.NEG_INF)
        probs = jax.nn.softmax(scores, axis=-1).astype(dt)
        ctx = jnp.einsum("BKGTS,BSKH->BTKGH", probs, values).reshape(b, t, n, h)
        ctx = nn.with_logical_constraint(ctx, ("batch", "length", "heads", "kv"))
        wo = self.o_proj().astype(dt).reshape(n, h, cfg.emb_dim)
        y = jnp.einsum("BTNH,NHD->BTD", ctx, wo)
        return nn.with_logical_constraint(y, ("batch", "length", "embed")), cache


class Mlp(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    config: llama_config.LlamaConfig

    def setup(self):
        cfg = self.config
        self.gate_proj = layers.Kernel((cfg.emb_dim, cfg.mlp_dim), ("embed", "mlp"))
        self.up_proj = layers.Kernel((cfg.emb_dim, cfg.mlp_dim), ("embed", "mlp"))
        self.down_proj = layers.Kernel((cfg.mlp_dim, cfg.emb_dim), ("mlp", "embed"))

    def __call__(self, x: Array) -> Array:
        dt = self.config.activation_dtype
        gate = jnp.einsum("BTD,DF->BTF", x, self.gate_proj().astype(dt))
        up = jnp.einsum("BTD,DF->BTF", x, self.up_proj().astype(dt))
        h = nn.with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
        y = jnp.einsum("BTF,FD->BTD", h, self.down_proj().astype(dt))
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
    config: llama_config.LlamaConfig

    def setup(self):
        self.input_layernorm = _norm(self.config)
        self.self_attn = Attention(self.config)
        self.post_attention_layernorm = _norm(self.config)
        self.mlp = Mlp(self.config)

    def __call__(self, x, sin, cos, allowed, cache, index):
        y, cache = self.self_attn(self.input_layernorm(x), sin, cos, allowed, cache, index)
        # The residual stream stays float32 (see t5.Embed); sublayer outputs are added into it.
        x = x + y.astype(x.dtype)
        x = x + self.mlp(self.post_attention_layernorm(x)).astype(x.dtype)
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), cache


class Llama(nn.Module):
    """The decoder-only LM; `__call__` is both the full forward and a cached step."""

    config: llama_config.LlamaConfig

    def setup(self):
        cfg = self.config
        self.embed_tokens = self.param(
            "embed_tokens",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
            (cfg.vocab_size, cfg.emb_dim),
            jnp.float32,
        )
        self.layers = [DecoderLayer(cfg) for _ in range(cfg.num_layers)]
        self.norm = _norm(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = layers.Kernel((cfg.emb_dim, cfg.vocab_size), ("embed", "vocab"))

    def embed(self, tokens: Array) -> Array:
        """Token embeddings `[B, T, D]` float32 (also how to build soft prompts from tokens)."""
        x = jnp.take(self.embed_tokens, tokens, axis=0)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))

    def __call__(
        self,
        tokens: Array,
        positions: Array,
        mask: Array,
        cache: dict[str, Any] | None = None,
        prefix_embeddings: Array | None = None,
    ) -> tuple[Array, dict[str, Any] | None]:
        """Next-token logits for `tokens`, optionally continuing a KV cache.

        Args:
          tokens: `[B, T]` ids, left-padded; pad values are arbitrary.
          positions: `[B, T]` RoPE positions of the tokens (`positions_from_mask`;
            pass `offset=P` with a prefix, and continue counting in cached steps).
          mask: `[B, T]` bool, True on real tokens. Padded keys are never
            attended; padded queries produce logits that must be ignored.
          cache: None for a plain forward; else from `init_cache`: the new
            tokens are written at `cache['index']` and attend to everything
            written before. Its length must hold every token written.
          prefix_embeddings: optional `[B, P, D]` (or `[P, D]`) embeddings placed
            before the tokens (soft prompts), at positions 0..P-1, always
            attended. With a cache, pass them on the first call only.

        Returns:
          (logits `[B, T, V]` float32 for the tokens (not the prefix), the
          updated cache or None).
        """
        cfg = self.config
        mask = jnp.asarray(mask, bool)
        x = self.embed(tokens)
        if prefix_embeddings is not None:
            prefix = jnp.asarray(prefix_embeddings, x.dtype)
            if prefix.ndim == 2:
                prefix = jnp.broadcast_to(prefix[None], (x.shape[0],) + prefix.shape)
            p = prefix.shape[1]
            x = jnp.concatenate([prefix, x], axis=1)
            prefix_positions = jnp.broadcast_to(jnp.arange(p), (x.shape[0], p))
            positions = jnp.concatenate([prefix_positions, positions], axis=1)
            mask = jnp.concatenate([jnp.ones((x.shape[0], p), bool), mask], axis=1)
        else:
            p = 0
        t = x.shape[1]

        if cache is None:
            index = None
            key_mask = mask
            query_slots = jnp.arange(t)
        else:
            index = cache["index"]
            key_mask = jax.lax.dynamic_update_slice_in_dim(cache["mask"], mask, index, axis=1)
            query_slots = index + jnp.arange(t)
        # Causal over cache slots (left padding keeps slots aligned across rows),
        # and never to padding: [B, T, S].
        key_slots = jnp.arange(key_mask.shape[1])
        allowed = key_mask[:, None, :] & (key_slots[None, None, :] <= query_slots[None, :, None])
        sin, cos = rope_tables(cfg, positions)

        new_cache = None if cache is None else {"index": index + t, "mask": key_mask}
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[f"layers_{i}"]
            x, layer_cache = layer(x, sin, cos, allowed, layer_cache, index)
            if new_cache is not None:
                new_cache[f"layers_{i}"] = layer_cache
        y = self.norm(x[:, p:])
        if cfg.tie_word_embeddings:
            logits = jnp.einsum("BTD,VD->BTV", y, self.embed_tokens.astype(y.dtype))
        else:
            logits = jnp.einsum("BTD,DV->BTV", y, self.lm_head().astype(y.dtype))
        logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
        return logits.astype(jnp.float32), new_cache


def init_cache(config: llama_config.LlamaConfig, batch: int, max_length: int) -> dict[str, Any]:
    """An empty KV cache: `index` (next slot), `mask` `[B, S]` of written real tokens,
    and per layer `k`, `v` `[B, S, K, H]` in the activation dtype."""
    shape = (batch, max_length, config.num_kv_heads, config.head_dim)
    cache: dict[str, Any] = {
        "index": jnp.zeros((), jnp.int32),
        "mask": jnp.zeros((batch, max_length), bool),
    }
    for i in range(config.num_layers):
        cache[f"layers_{i}"] = {
            "k": jnp.zeros(shape, config.activation_dtype),
            "v": jnp.zeros(shape, config.activation_dtype),
        }
    return cache


def cache_logical_axes(config: llama_config.LlamaConfig) -> dict[str, Any]:
    """Logical axis names of `init_cache`'s tree (for `partitioning.logical_to_shardings`)."""
    kv = ("batch", "length", config.kv_heads_axis, "kv")
    axes: dict[str, Any] = {"index": (), "mask": ("batch", "length")}
    for i in range(config.num_layers):
        axes[f"layers_{i}"] = {"k": kv, "v": kv}
    return axes


def logical_dims(config: llama_config.LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every size each logical axis takes (for `partitioning.fit_rules_to_dims`)."""
    return {
        "vocab": (config.vocab_size,),
        "embed": (config.emb_dim,),
        "mlp": (config.mlp_dim,),
        "heads": (config.num_heads, config.num_kv_heads),
        "kv_heads": (config.num_kv_heads,),
        "joined_kv": (config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim),
    }


def dummy_inputs(batch: int = 1, length: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, positions, mask) that make `Llama.init` build every parameter."""
    tokens = np.ones((batch, length), np.int32)
    positions = np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length))
    return tokens, positions, np.ones((batch, length), bool)


def init_fn(config: llama_config.LlamaConfig):
    """`rng -> variables`, for `partitioning.init_sharded` and `jax.eval_shape`."""
    return lambda rng: Llama(config).init(rng, *dummy_inputs())


def param_logical_axes(config: llama_config.LlamaConfig) -> Any:
    """The logical axis names of every parameter, as a tree like the params."""
    abstract = jax.eval_shape(init_fn(config), jax.random.PRNGKey(0))
    return nn.get_partition_spec(abstract)["params"]
