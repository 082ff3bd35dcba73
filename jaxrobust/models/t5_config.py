"""T5 model configuration: `T5Config`, the published presets, and HF `config.json`.

Field names follow T5X's `T5Config`; `from_hf_config` / `to_hf_config` translate
an HF `T5ForConditionalGeneration` `config.json` both ways. The model itself is
in `t5.py`, the HF <-> T5X tensor names in `t5_hf.py`.

Letters in the field comments: D model dim, N heads, H head dim, F mlp dim,
V vocab (the einsum legend of `t5.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Shape and numerics of a T5 model; field names follow T5X's `T5Config`."""

    vocab_size: int = 32128  # Vocabulary rows of `token_embedder/embedding`.
    emb_dim: int = 512  # D, the model width.
    num_heads: int = 6  # N.
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    head_dim: int = 64  # H; N*H need not equal D.
    mlp_dim: int = 1024  # F.
    # ('gelu', 'linear') is T5 v1.1's gated GELU; ('relu',) is T5 v1.0.
    mlp_activations: tuple[str, ...] = ("gelu", "linear")
    # T5 v1.0 ties the output projection to the input embedding and scales the
    # decoder output by D**-0.5 first; v1.1 has its own `logits_dense`.
    logits_via_embedding: bool = False
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dtype: str = "float32"  # Activation dtype; parameters stay float32.
    pad_id: int = 0  # Also the decoder's start token, as in T5.
    eos_id: int = 1

    @property
    def activation_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    def replace(self, **kwargs: Any) -> T5Config:
        return dataclasses.replace(self, **kwargs)


def _v1_1(d: int, n: int, h: int, f: int, layers: int) -> T5Config:
    return T5Config(
        emb_dim=d,
        num_heads=n,
        head_dim=h,
        mlp_dim=f,
        num_encoder_layers=layers,
        num_decoder_layers=layers,
    )


# Published shapes (HF `config.json` of each checkpoint; T5X gin files).
PRESETS: dict[str, T5Config] = {
    "t5-v1_1-small": _v1_1(512, 6, 64, 1024, 8),
    "t5-v1_1-base": _v1_1(768, 12, 64, 2048, 12),
    "t5-v1_1-large": _v1_1(1024, 16, 64, 2816, 24),
    "t5-v1_1-xl": _v1_1(2048, 32, 64, 5120, 24),
    "t5-v1_1-xxl": _v1_1(4096, 64, 64, 10240, 24),
    "t5-small": T5Config(
        emb_dim=512,
        num_heads=8,
        head_dim=64,
        mlp_dim=2048,
        num_encoder_layers=6,
        num_decoder_layers=6,
        mlp_activations=("relu",),
        logits_via_embedding=True,
    ),
}
PRESETS["flan-t5-small"] = PRESETS["t5-v1_1-small"]
PRESETS["flan-t5-base"] = PRESETS["t5-v1_1-base"]
PRESETS["flan-t5-large"] = PRESETS["t5-v1_1-large"]
PRESETS["flan-t5-xl"] = PRESETS["t5-v1_1-xl"]
PRESETS["flan-t5-xxl"] = PRESETS["t5-v1_1-xxl"]
# T0 is T5 v1.1 LM-adapted: the same shapes as t5-v1_1-xl / -xxl.
PRESETS["t0-3b"] = PRESETS["t5-v1_1-xl"]
PRESETS["t0pp"] = PRESETS["t5-v1_1-xxl"]
# A CPU-sized model for tests and demos (random weights, tiny.gin). T5X's own test
# checkpoint has other widths (embed 8, heads of 3, mlp 16; vocabulary 32128): its
# shapes are tests/fixtures/t5x/test_t5_tiny_config.json.
PRESETS["tiny"] = T5Config(
    vocab_size=512,
    emb_dim=32,
    num_heads=4,
    head_dim=8,
    mlp_dim=64,
    num_encoder_layers=2,
    num_decoder_layers=2,
)
# The built-in study's model (jaxrobust/study), trained from scratch on 2 CPU cores
# in minutes; its vocabulary is the study's BPE (vocab_size is overridden by it).
PRESETS["study-small"] = T5Config(
    vocab_size=1024,
    emb_dim=64,
    num_heads=4,
    head_dim=16,
    mlp_dim=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
)


def get_preset(name: str, **overrides: Any) -> T5Config:
    """Returns the named preset, with fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown T5 preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)


# ---------------------------------------------------------------------------
# HF config.json.
# ---------------------------------------------------------------------------


def from_hf_config(hf: dict[str, Any], **overrides: Any) -> T5Config:
    """A `T5Config` from an HF T5 `config.json` dictionary."""
    proj = hf.get("feed_forward_proj", "relu")
    if proj.startswith("gated-"):
        act = proj[len("gated-") :]
        acts: Sequence[str] = (act, "linear")
    else:
        acts = (proj,)
    kwargs = dict(
        vocab_size=hf["vocab_size"],
        emb_dim=hf["d_model"],
        num_heads=hf["num_heads"],
        head_dim=hf["d_kv"],
        mlp_dim=hf["d_ff"],
        num_encoder_layers=hf["num_layers"],
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        mlp_activations=tuple(acts),
        # transformers >= 5 always writes `tie_word_embeddings: true` and records
        # T5 v1.0's output scaling as `scale_decoder_outputs`; older configs use
        # `tie_word_embeddings: false` for v1.1.
        logits_via_embedding=hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)),
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
        pad_id=hf.get("pad_token_id", 0) or 0,
        eos_id=hf.get("eos_token_id", 1) if hf.get("eos_token_id") is not None else 1,
    )
    kwargs.update(overrides)
    return T5Config(**kwargs)


def to_hf_config(config: T5Config) -> dict[str, Any]:
    """The HF `config.json` fields that describe `config`."""
    acts = config.mlp_activations
    if len(acts) == 2 and acts[1] == "linear":
        proj, act = f"gated-{acts[0] if acts[0] != 'gelu' else 'gelu'}", acts[0]
    elif len(acts) == 1:
        proj, act = acts[0], acts[0]
    else:
        raise ValueError(f"mlp_activations {acts} have no HF equivalent")
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": config.vocab_size,
        "d_model": config.emb_dim,
        "d_kv": config.head_dim,
        "d_ff": config.mlp_dim,
        "num_layers": config.num_encoder_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "feed_forward_proj": proj,
        "dense_act_fn": "gelu_new" if act == "gelu" else act,
        "is_gated_act": len(acts) == 2,
        "tie_word_embeddings": config.logits_via_embedding,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "pad_token_id": config.pad_id,
        "eos_token_id": config.eos_id,
        "decoder_start_token_id": config.pad_id,
        "dropout_rate": 0.0,
        "is_encoder_decoder": True,
    }
