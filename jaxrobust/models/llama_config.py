"""LLaMA model configuration: `LlamaConfig`, the published presets, and HF `config.json`.

`from_hf_config` / `to_hf_config` translate an HF `LlamaForCausalLM`
`config.json` both ways (RoPE settings in the transformers >= 5 and older
spellings). The model itself is in `llama.py`, the HF tensor names in
`llama_hf.py`.

Letters in the field comments: D model dim, N query heads, K key/value heads,
H head dim, F mlp dim, V vocab (the einsum legend of `llama.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Shape and numerics of a LLaMA model; `from_hf_config` reads HF's `config.json`."""

    vocab_size: int = 32000  # V; fine-tunes that add a pad token have 32001.
    emb_dim: int = 4096  # D, HF `hidden_size`.
    num_heads: int = 32  # N, query heads.
    num_kv_heads: int = 32  # K; K < N is grouped-query attention.
    head_dim: int = 128  # H.
    mlp_dim: int = 11008  # F, HF `intermediate_size`.
    num_layers: int = 32
    rope_theta: float = 10000.0  # RoPE base.
    # Linear RoPE scaling ("position interpolation"): positions are divided by
    # this factor. 1.0 is plain RoPE.
    rope_scaling_factor: float = 1.0
    layer_norm_epsilon: float = 1e-6  # RMSNorm epsilon (LLaMA-1 1e-6, LLaMA-2 1e-5).
    max_position_embeddings: int = 2048  # Trained context; recorded, not enforced.
    tie_word_embeddings: bool = False  # Output projection = embedding (not LLaMA's).
    dtype: str = "float32"  # Activation dtype; parameters stay float32.
    bos_id: int = 1
    eos_id: int = 2

    @property
    def activation_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def kv_heads_axis(self) -> str:
        """Logical name of the key/value heads axis of activations and the cache.

        With MHA the key/value heads are the query heads (`heads`, split over
        the model axis as in T5). With GQA there may be fewer key/value heads
        than model-parallel devices, so they get their own name, `kv_heads`,
        which the standard rules replicate.
        """
        return "heads" if self.num_kv_heads == self.num_heads else "kv_heads"

    def replace(self, **kwargs: Any) -> LlamaConfig:
        return dataclasses.replace(self, **kwargs)


def _llama(d: int, n: int, f: int, layers: int, eps: float, max_len: int) -> LlamaConfig:
    return LlamaConfig(
        emb_dim=d,
        num_heads=n,
        num_kv_heads=n,
        head_dim=d // n,
        mlp_dim=f,
        num_layers=layers,
        layer_norm_epsilon=eps,
        max_position_embeddings=max_len,
    )


# Published shapes (the `config.json` of meta-llama/Llama-2-*-hf and of the
# LLaMA-1 HF conversions). Fine-tunes keep the shapes but may change the vocab
# size (Alpaca and WizardLM-7B add a pad row: 32001; Chinese-Alpaca-2: 55296),
# so real checkpoints should go through `from_hf_config`.
PRESETS: dict[str, LlamaConfig] = {
    "llama-1-7b": _llama(4096, 32, 11008, 32, 1e-6, 2048),
    "llama-1-13b": _llama(5120, 40, 13824, 40, 1e-6, 2048),
    "llama-2-7b": _llama(4096, 32, 11008, 32, 1e-5, 4096),
    "llama-2-13b": _llama(5120, 40, 13824, 40, 1e-5, 4096),
}
PRESETS["chinese-alpaca-2-7b"] = PRESETS["llama-2-7b"].replace(vocab_size=55296)
# CPU-sized, grouped-query: 4 query heads share 2 key/value heads.
PRESETS["tiny"] = LlamaConfig(
    vocab_size=128,
    emb_dim=32,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    mlp_dim=48,
    num_layers=2,
)


def get_preset(name: str, **overrides: Any) -> LlamaConfig:
    """Returns the named preset, with fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown LLaMA preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)


# ---------------------------------------------------------------------------
# HF config.json.
# ---------------------------------------------------------------------------


def _rope_from_hf(hf: dict[str, Any]) -> tuple[float, float]:
    """(theta, linear factor) from transformers >= 5 `rope_parameters` or the
    older top-level `rope_theta` + `rope_scaling`."""
    params = hf.get("rope_parameters") or {}
    scaling = params if ("rope_type" in params or "type" in params) else {}
    scaling = scaling or hf.get("rope_scaling") or {}
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return float(theta), 1.0
    if kind == "linear":
        return float(theta), float(scaling["factor"])
    raise ValueError(f"RoPE type {kind!r} is not supported (only 'default' and 'linear')")


def from_hf_config(hf: dict[str, Any], **overrides: Any) -> LlamaConfig:
    """A `LlamaConfig` from an HF LLaMA `config.json` dictionary (any vocab size)."""
    problems = []
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={hf['hidden_act']!r} (expected 'silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            problems.append(f"{flag}=true (LLaMA has no biases)")
    if problems:
        raise ValueError("unsupported LLaMA config: " + "; ".join(problems))
    theta, factor = _rope_from_hf(hf)
    n = hf["num_attention_heads"]
    eos = hf.get("eos_token_id", 2)
    kwargs = dict(
        vocab_size=hf["vocab_size"],
        emb_dim=hf["hidden_size"],
        num_heads=n,
        num_kv_heads=hf.get("num_key_value_heads") or n,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // n,
        mlp_dim=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        rope_theta=theta,
        rope_scaling_factor=factor,
        layer_norm_epsilon=hf.get("rms_norm_eps", 1e-6),
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bos_id=hf.get("bos_token_id") if hf.get("bos_token_id") is not None else 1,
        eos_id=(eos[0] if isinstance(eos, list) else eos) if eos is not None else 2,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def to_hf_config(config: LlamaConfig) -> dict[str, Any]:
    """The HF `config.json` fields that describe `config`.

    RoPE is written both as transformers >= 5 `rope_parameters` and as the
    older `rope_theta` / `rope_scaling`, so older readers get the same model.
    """
    linear = config.rope_scaling_factor != 1.0
    rope_parameters: dict[str, Any] = {
        "rope_type": "linear" if linear else "default",
        "rope_theta": config.rope_theta,
    }
    if linear:
        rope_parameters["factor"] = config.rope_scaling_factor
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.emb_dim,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.mlp_dim,
        "num_hidden_layers": config.num_layers,
        "hidden_act": "silu",
        "rms_norm_eps": config.layer_norm_epsilon,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_parameters": rope_parameters,
        "rope_theta": config.rope_theta,
        "rope_scaling": {"type": "linear", "factor": config.rope_scaling_factor}
        if linear
        else None,
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": config.bos_id,
        "eos_token_id": config.eos_id,
        "pad_token_id": None,
    }
