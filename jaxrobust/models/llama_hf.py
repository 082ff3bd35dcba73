"""HF <-> our parameter names of LLaMA: one table, read in both directions.

Our tree follows HF `LlamaForCausalLM`'s module names: `layers_3/self_attn/q_proj/kernel`
is HF's `model.layers.3.self_attn.q_proj.weight` transposed to `[in, out]`
(`nn.Linear` stores `[out, in]`); norm scales and the embedding keep HF's layout.

`hf_names(config)` lists, for every parameter path of `llama.Llama(config)`,
its HF names: the tensor HF stores first, then tied copies (`lm_head.weight`
of a model with `tie_word_embeddings`). `llama_to_hf_name` reads the table
forwards (export), `hf_to_llama_name` backwards (load): tied copies and the
`rotary_emb.inv_freq` buffers older checkpoints saved (recomputed here) map
to None (skipped), and a name not in the table raises KeyError, which
`checkpoints.hf_items` reports as unexpected.
"""

from __future__ import annotations

import functools

from jaxrobust.models import llama_config

# Per-layer modules, as HF dotted names under `model.layers.{i}.`.
_LAYER_KERNELS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
_LAYER_NORMS = ("input_layernorm", "post_attention_layernorm")

Names = tuple[tuple[str, bool], ...]  # ((HF name, transpose?), ...), stored tensor first.


@functools.cache
def hf_names(config: llama_config.LlamaConfig) -> dict[str, Names]:
    """Our parameter path -> its HF names (stored tensor, then tied copies), for every param."""
    embedding = [("model.embed_tokens.weight", False)]
    if config.tie_word_embeddings:
        embedding.append(("lm_head.weight", False))
    table: dict[str, Names] = {"embed_tokens": tuple(embedding)}
    for i in range(config.num_layers):
        for module in _LAYER_KERNELS:
            path = f"layers_{i}/{module.replace('.', '/')}/kernel"
            table[path] = ((f"model.layers.{i}.{module}.weight", True),)
        for module in _LAYER_NORMS:
            table[f"layers_{i}/{module}/scale"] = ((f"model.layers.{i}.{module}.weight", False),)
    table["norm/scale"] = (("model.norm.weight", False),)
    if not config.tie_word_embeddings:
        table["lm_head/kernel"] = (("lm_head.weight", True),)
    return table


@functools.cache
def _from_hf(config: llama_config.LlamaConfig) -> dict[str, tuple[str, bool] | None]:
    """`hf_names` inverted: HF name -> (our path, transpose?), None for a tensor to skip."""
    inverse: dict[str, tuple[str, bool] | None] = {}
    for path, ((stored, transpose), *copies) in hf_names(config).items():
        inverse[stored] = (path, transpose)
        for copy, _ in copies:
            inverse[copy] = None
    for i in range(config.num_layers):
        inverse[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = None
    return inverse


def hf_to_llama_name(config: llama_config.LlamaConfig, hf_name: str) -> tuple[str, bool] | None:
    """Maps an HF LLaMA tensor name to (our path, transpose?); None for tensors to skip.

    Raises:
      KeyError: `hf_name` belongs to no parameter of this model.
    """
    return _from_hf(config)[hf_name]


def llama_to_hf_name(config: llama_config.LlamaConfig, path: str) -> tuple[str, bool]:
    """The inverse of `hf_to_llama_name`: (HF name, transpose?) for one of our paths.

    Raises:
      KeyError: `path` is no parameter of `llama.Llama(config)`.
    """
    return hf_names(config)[path][0]
