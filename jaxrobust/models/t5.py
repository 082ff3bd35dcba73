"""T5 encoder-decoder (T5 v1.0, T5 v1.1, Flan-T5, T0/T0++) in Flax linen.

The parameter tree is T5X's (`t5x/examples/t5/network.py`): the same module
names and the same shapes, attention kernels stored 2-D as `[embed, joined_kv]`
and reshaped to heads inside the forward pass. A T5X checkpoint therefore loads
with no renaming; HF checkpoints go through `jaxrobust.checkpoints`, which
renames with `t5_hf.py`. The config and its presets are in `t5_config.py`,
the blocks shared with LLaMA (kernels, RMS norm) in `layers.py`.

Einsum letter legend:
  B batch, T query length, S key length, N heads, H head dim, D model dim,
  F mlp dim, V vocab, P prompt length, O answer options, J joined heads (N*H).

Decoder inputs may carry an options axis, `[B, O, T]`: self-attention and the
MLP see `B*O` rows, while cross-attention folds the options into the query axis
(`[B, O*T]`), so one encoder output per example serves all its options without
being copied O times.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.models import layers, prompts, t5_config

Array = jax.Array


# ---------------------------------------------------------------------------
# Relative position buckets.
# ---------------------------------------------------------------------------


def relative_position_bucket(
    relative_position: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Mesh TensorFlow's T5 bucketing of `memory_pos - query_pos`, in numpy.

    Computed on the host in float32 (the arithmetic of the reference
    implementations), so bucket edges cannot move with a device's `log`.
    """
    relative_position = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(np.int64) * num_buckets
        n = np.abs(relative_position)
    else:
        n = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # np.maximum only keeps log() finite where `is_small` discards the value.
    scaled = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)) / np.float32(
        math.log(max_distance / max_exact)
    )
    large = max_exact + (scaled * np.float32(num_buckets - max_exact)).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, n, large)


class RelativePositionBiases(nn.Module):
    """Per-head attention bias from bucketed relative positions.

    `rel_embedding` is `[N, num_buckets]` (T5X layout). Called once per stack;
    every layer of the stack adds the same bias.
    """

    config: t5_config.T5Config
    bidirectional: bool

    @nn.compact
    def __call__(self, query_positions: Array, key_length: int) -> Array:
        """Returns the bias `[B|1, N, T, S]` for `query_positions` `[B|1, T]`."""
        cfg = self.config
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(
                nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                ("heads", "relpos_buckets"),
            ),
            (cfg.num_heads, cfg.relative_attention_num_buckets),
            jnp.float32,
        )
        # Buckets for every relative position in [-(K-1), K-1], on the host;
        # traced query positions (the KV-cache step) then index into it.
        span = max(key_length, 1)
        rel = np.arange(-(span - 1), span)
        lookup = relative_position_bucket(
            rel,
            self.bidirectional,
            cfg.relative_attention_num_buckets,
            cfg.relative_attention_max_distance,
        )
        rel_positions = jnp.arange(key_length)[None, None, :] - query_positions[:, :, None]
        buckets = jnp.asarray(lookup)[jnp.clip(rel_positions + span - 1, 0, 2 * span - 2)]
        bias = jnp.take(table, buckets, axis=1)  # [N, B, T, S]
        return jnp.transpose(bias, (1, 0, 2, 3)).astype(cfg.activation_dtype)


# ---------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------


def _norm(config: t5_config.T5Config) -> layers.RMSNorm:
    """T5's layer norm: an RMS norm cast to the activation dtype after the scale."""
    return layers.RMSNorm(config.layer_norm_epsilon, config.activation_dtype)


class Attention(nn.Module):
    """Multi-head attention with T5X's `query/key/value/out` 2-D kernels.

    T5 applies no 1/sqrt(H) scaling to the scores (it is folded into the
    query initialisation), and neither do we.
    """

    config: t5_config.T5Config

    def setup(self):
        cfg = self.config
        d, j = cfg.emb_dim, cfg.num_heads * cfg.head_dim
        self.query = layers.Kernel((d, j), ("embed", "joined_kv"), scale=1.0 / cfg.head_dim)
        self.key = layers.Kernel((d, j), ("embed", "joined_kv"))
        self.value = layers.Kernel((d, j), ("embed", "joined_kv"))
        self.out = layers.Kernel((j, d), ("joined_kv", "embed"))

    def _heads(self, kernel: layers.Kernel) -> Array:
        cfg = self.config
        w = kernel().astype(cfg.activation_dtype)
        return w.reshape(cfg.emb_dim, cfg.num_heads, cfg.head_dim)  # [D, N, H]

    def project_kv(self, x: Array, heads_first: bool = False) -> tuple[Array, Array]:
        """Keys and values of `x` `[B, S, D]`: `[B, S, N, H]`, or `[B, N, H, S]` with
        `heads_first` (the layout the attention dots read; cross-attention keys and
        values are made once in it, so a decode step does not transpose them again)."""
        if heads_first:
            k = jnp.einsum("BSD,DNH->BNHS", x, self._heads(self.key))
            v = jnp.einsum("BSD,DNH->BNHS", x, self._heads(self.value))
            k = nn.with_logical_constraint(k, ("batch", "heads", "kv", "length"))
            v = nn.with_logical_constraint(v, ("batch", "heads", "kv", "length"))
            return k, v
        k = jnp.einsum("BSD,DNH->BSNH", x, self._heads(self.key))
        v = jnp.einsum("BSD,DNH->BSNH", x, self._heads(self.value))
        k = nn.with_logical_constraint(k, ("batch", "length", "heads", "kv"))
        v = nn.with_logical_constraint(v, ("batch", "length", "heads", "kv"))
        return k, v

    def __call__(
        self, x: Array, k: Array, v: Array, bias: Array, heads_first: bool = False
    ) -> Array:
        """Attends `x` `[B, T, D]` to keys/values `[B, S, N, H]` (`[B, N, H, S]` when
        `heads_first`, from `project_kv(..., heads_first=True)`).

        Args:
          bias: additive bias broadcastable to `[B, N, T, S]` (relative
            positions plus masks).

        Returns:
          `[B, T, D]`.
        """
        cfg = self.config
        q = jnp.einsum("BTD,DNH->BTNH", x, self._heads(self.query))
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
        kv = "BNHS" if heads_first else "BSNH"
        scores = jnp.einsum(f"BTNH,{kv}->BNTS", q, k).astype(jnp.float32)
        probs = jax.nn.softmax(scores + bias.astype(jnp.float32), axis=-1)
        ctx = jnp.einsum(f"BNTS,{kv}->BTNH", probs.astype(cfg.activation_dtype), v)
        w_out = self.out().astype(cfg.activation_dtype)
        w_out = w_out.reshape(cfg.num_heads, cfg.head_dim, cfg.emb_dim)
        y = jnp.einsum("BTNH,NHD->BTD", ctx, w_out)
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))


_ACTIVATIONS = {
    "relu": jax.nn.relu,
    # T5 v1.1 uses the tanh approximation ("gelu_new" in HF).
    "gelu": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "linear": lambda x: x,
}


class MlpBlock(nn.Module):
    """T5 feed-forward: `wi` (one activation) or `wi_0`, `wi_1`, ... (gated)."""

    config: t5_config.T5Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        acts = cfg.mlp_activations
        h = None
        for i, act in enumerate(acts):
            name = "wi" if len(acts) == 1 else f"wi_{i}"
            w = layers.Kernel((cfg.emb_dim, cfg.mlp_dim), ("embed", "mlp"), name=name)()
            hi = _ACTIVATIONS[act](jnp.einsum("BTD,DF->BTF", x, w.astype(cfg.activation_dtype)))
            h = hi if h is None else h * hi
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        wo = layers.Kernel((cfg.mlp_dim, cfg.emb_dim), ("mlp", "embed"), name="wo")()
        y = jnp.einsum("BTF,FD->BTD", h, wo.astype(cfg.activation_dtype))
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))


class Embed(nn.Module):
    """Token embedding `[V, D]`, also the tied output projection of T5 v1.0."""

    config: t5_config.T5Config

    def setup(self):
        cfg = self.config
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
            (cfg.vocab_size, cfg.emb_dim),
            jnp.float32,
        )

    def __call__(self, tokens: Array) -> Array:
        # The residual stream stays float32 whatever `dtype` is; only the inputs
        # of matmuls are cast, so rounding does not accumulate over layers in
        # the sum every layer adds into (it costs one f32 [B, T, D] per layer).
        x = jnp.take(self.embedding, tokens, axis=0)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))

    def attend(self, x: Array) -> Array:
        return jnp.einsum("BTD,VD->BTV", x, self.embedding.astype(x.dtype))


# ---------------------------------------------------------------------------
# Stacks.
# ---------------------------------------------------------------------------


class EncoderLayer(nn.Module):
    config: t5_config.T5Config

    def setup(self):
        self.pre_attention_layer_norm = _norm(self.config)
        self.attention = Attention(self.config)
        self.pre_mlp_layer_norm = _norm(self.config)
        self.mlp = MlpBlock(self.config)

    def __call__(self, x: Array, bias: Array) -> Array:
        h = self.pre_attention_layer_norm(x)
        k, v = self.attention.project_kv(h)
        x = x + self.attention(h, k, v, bias)
        return x + self.mlp(self.pre_mlp_layer_norm(x))


class Encoder(nn.Module):
    config: t5_config.T5Config

    def setup(self):
        cfg = self.config
        self.relpos_bias = RelativePositionBiases(cfg, bidirectional=True)
        self.layers = [EncoderLayer(cfg) for _ in range(cfg.num_encoder_layers)]
        self.encoder_norm = _norm(cfg)

    def __call__(self, x: Array, mask: Array) -> Array:
        """Encodes embeddings `x` `[B, S, D]` with key mask `[B, S]` -> `[B, S, D]`."""
        s = x.shape[1]
        bias = self.relpos_bias(jnp.arange(s)[None, :], s)  # [1, N, S, S], shared by layers.
        bias = bias + jnp.where(mask[:, None, None, :], 0.0, layers.NEG_INF).astype(bias.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return self.encoder_norm(x)


class DecoderLayer(nn.Module):
    config: t5_config.T5Config

    def setup(self):
        cfg = self.config
        self.pre_self_attention_layer_norm = _norm(cfg)
        self.self_attention = Attention(cfg)
        self.pre_cross_attention_layer_norm = _norm(cfg)
        self.encoder_decoder_attention = Attention(cfg)
        self.pre_mlp_layer_norm = _norm(cfg)
        self.mlp = MlpBlock(cfg)

    def __call__(
        self,
        x: Array,
        self_bias: Array,
        cross_kv: tuple[Array, Array],
        cross_bias: Array,
        num_options: int,
        cache: dict[str, Array] | None,
        cache_index: Array | None,
        cross_heads_first: bool = False,
    ) -> tuple[Array, dict[str, Array] | None]:
        h = self.pre_self_attention_layer_norm(x)
        k, v = self.self_attention.project_kv(h)
        if cache is not None:
            # Write this step's keys/values at `cache_index`, attend to all.
            k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k, cache_index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v, cache_index, axis=1)
            cache = {"k": k, "v": v}
        x = x + self.self_attention(h, k, v, self_bias)

        h = self.pre_cross_attention_layer_norm(x)
        bo, t, d = h.shape
        # Options share their example's encoder output: fold O into the queries.
        h = h.reshape(bo // num_options, num_options * t, d)
        y = self.encoder_decoder_attention(h, *cross_kv, cross_bias, heads_first=cross_heads_first)
        x = x + y.reshape(bo, t, d)
        return x + self.mlp(self.pre_mlp_layer_norm(x)), cache


class Decoder(nn.Module):
    config: t5_config.T5Config
    embedder: Embed

    def setup(self):
        cfg = self.config
        self.relpos_bias = RelativePositionBiases(cfg, bidirectional=False)
        self.layers = [DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)]
        self.decoder_norm = _norm(cfg)
        if not cfg.logits_via_embedding:
            self.logits_dense = layers.Kernel((cfg.emb_dim, cfg.vocab_size), ("embed", "vocab"))

    def cross_kv(self, encoded: Array, heads_first: bool = True) -> list[tuple[Array, Array]]:
        """Per-layer cross-attention keys/values of `encoded` `[B, S, D]`: `[B, N, H, S]`
        (the layout the attention dots read, so a decode step reuses them as they are),
        or `[B, S, N, H]` without `heads_first` (the teacher-forced forward's, which
        makes them in the same call)."""
        return [
            layer.encoder_decoder_attention.project_kv(encoded, heads_first)
            for layer in self.layers
        ]

    def __call__(
        self,
        tokens: Array,
        cross_kv: list[tuple[Array, Array]],
        encoder_mask: Array,
        cache: dict[str, Any] | None = None,
        cross_heads_first: bool = True,
    ) -> tuple[Array, dict[str, Any] | None]:
        """Decoder logits.

        Args:
          tokens: `[B*O, T]` decoder input tokens (`layers.shift_right` of the targets).
          cross_kv: from `cross_kv`, each `[B, N, H, S]` (`[B, S, N, H]` when not
            `cross_heads_first`).
          encoder_mask: `[B, S]`, True on real encoder positions.
          cache: None for a full (teacher-forced) forward, else from
            `T5.init_cache`; T new tokens are written at `cache['index']`.

        Returns:
          (logits `[B*O, T, V]` float32, the updated cache or None).
        """
        cfg = self.config
        bo, t = tokens.shape
        b = encoder_mask.shape[0]
        num_options = bo // b
        x = self.embedder(tokens)
        if cache is None:
            index = None
            positions = jnp.arange(t)[None, :]
            key_length = t
        else:
            index = cache["index"]
            positions = index + jnp.arange(t)[None, :]
            key_length = cache["layers_0"]["k"].shape[1]
        self_bias = self.relpos_bias(positions, key_length)  # [1, N, T, S]
        causal = jnp.arange(key_length)[None, None, None, :] <= positions[:, None, :, None]
        self_bias = self_bias + jnp.where(causal, 0.0, layers.NEG_INF).astype(self_bias.dtype)
        cross_bias = jnp.where(encoder_mask[:, None, None, :], 0.0, layers.NEG_INF)

        new_cache = None if cache is None else {"index": index + t}
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[f"layers_{i}"]
            x, layer_cache = layer(
                x,
                self_bias,
                cross_kv[i],
                cross_bias,
                num_options,
                layer_cache,
                index,
                cross_heads_first,
            )
            if new_cache is not None:
                new_cache[f"layers_{i}"] = layer_cache
        y = self.decoder_norm(x)
        if cfg.logits_via_embedding:
            # T5 v1.0: tied embedding, rescaled by D**-0.5 before the projection.
            logits = self.embedder.attend(y * (cfg.emb_dim**-0.5))
        else:
            w = self.logits_dense().astype(cfg.activation_dtype)
            logits = jnp.einsum("BTD,DV->BTV", y, w)
        logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
        return logits.astype(jnp.float32), new_cache


class T5(nn.Module):
    """The whole encoder-decoder; `__call__` is the teacher-forced forward."""

    config: t5_config.T5Config

    def setup(self):
        self.token_embedder = Embed(self.config)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config, self.token_embedder)

    def encode(
        self,
        encoder_input_tokens: Array,
        prefix_embeddings: Array | None = None,
        combine: prompts.Combine = prompts.prefix_concat,
    ) -> tuple[Array, Array]:
        """Runs the encoder.

        Args:
          encoder_input_tokens: `[B, S]`, padded with `pad_id`.
          prefix_embeddings: optional `[B, P, D]` (or `[P, D]`) input embeddings
            placed before the token embeddings (soft prompts); always attended.
          combine: how the prompt joins the token embeddings and mask
            (`prompts.prefix_concat`: before them).

        Returns:
          (encoded `[B, P+S, D]`, mask `[B, P+S]`).
        """
        mask = encoder_input_tokens != self.config.pad_id
        x = self.token_embedder(encoder_input_tokens)
        if prefix_embeddings is not None:
            x, mask = combine(prefix_embeddings, x, mask)
        return self.encoder(x, mask), mask

    def cross_kv(self, encoded: Array) -> list[tuple[Array, Array]]:
        return self.decoder.cross_kv(encoded)

    def decode(
        self,
        encoded: Array,
        encoder_mask: Array,
        decoder_input_tokens: Array,
        cache: dict[str, Any] | None = None,
        cross_kv: list[tuple[Array, Array]] | None = None,
    ) -> tuple[Array, dict[str, Any] | None]:
        """Decoder logits for `[B, T]` or per-option `[B, O, T]` inputs.

        Returns:
          (logits `[B, T, V]` or `[B, O, T, V]` float32, updated cache or None).
        """
        lead = decoder_input_tokens.shape[:-1]
        tokens = decoder_input_tokens.reshape(-1, decoder_input_tokens.shape[-1])
        heads_first = cross_kv is not None  # From `cross_kv` (a decode loop): heads first.
        if cross_kv is None:
            cross_kv = self.decoder.cross_kv(encoded, heads_first=False)
        logits, cache = self.decoder(tokens, cross_kv, encoder_mask, cache, heads_first)
        return logits.reshape(lead + logits.shape[1:]), cache

    def __call__(
        self,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        prefix_embeddings: Array | None = None,
    ) -> Array:
        encoded, mask = self.encode(encoder_input_tokens, prefix_embeddings)
        return self.decode(encoded, mask, decoder_input_tokens)[0]


def init_cache(config: t5_config.T5Config, batch: int, max_length: int) -> dict[str, Any]:
    """An empty decoder self-attention KV cache for `batch` rows of `max_length`."""
    shape = (batch, max_length, config.num_heads, config.head_dim)
    cache: dict[str, Any] = {"index": jnp.zeros((), jnp.int32)}
    for i in range(config.num_decoder_layers):
        cache[f"layers_{i}"] = {
            "k": jnp.zeros(shape, config.activation_dtype),
            "v": jnp.zeros(shape, config.activation_dtype),
        }
    return cache


def cache_logical_axes(config: t5_config.T5Config) -> dict[str, Any]:
    """Logical axis names of `init_cache`'s tree (for shardings)."""
    axes: dict[str, Any] = {"index": ()}
    for i in range(config.num_decoder_layers):
        axes[f"layers_{i}"] = {
            "k": ("batch", "length", "heads", "kv"),
            "v": ("batch", "length", "heads", "kv"),
        }
    return axes


def dummy_inputs(batch: int = 1, length: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Token arrays that make `T5.init` build every parameter."""
    return np.ones((batch, length), np.int32), np.ones((batch, length), np.int32)


def logical_dims(config: t5_config.T5Config) -> dict[str, tuple[int, ...]]:
    """Every size each logical axis takes (for `partitioning.fit_rules_to_dims`)."""
    return {
        "vocab": (config.vocab_size,),
        "embed": (config.emb_dim,),
        "mlp": (config.mlp_dim,),
        "heads": (config.num_heads,),
        "joined_kv": (config.num_heads * config.head_dim,),
    }


def param_logical_axes(config: t5_config.T5Config) -> Any:
    """The logical axis names of every parameter, as a tree like the params."""
    abstract = jax.eval_shape(lambda: T5(config).init(jax.random.PRNGKey(0), *dummy_inputs()))
    return nn.get_partition_spec(abstract)["params"]
