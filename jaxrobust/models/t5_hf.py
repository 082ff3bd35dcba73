"""HF <-> T5X parameter names of T5: one table, read in both directions.

`hf_names(config)` lists, for every T5X parameter path of `t5.T5(config)`,
its HF `T5ForConditionalGeneration` tensor names: first the tensor HF stores,
then the tied copies HF may also write (the embedding appears as `shared`,
`encoder.embed_tokens`, `decoder.embed_tokens` and, for T5 v1.0, `lm_head`).
`t5x_to_hf_names` reads the table forwards (export), `hf_to_t5x_name` reads
it backwards (load): a tied copy maps to None (skipped), a name not in the
table raises KeyError, which `checkpoints.hf_items` reports as unexpected.

HF stores `nn.Linear` weights `[out, in]` and `relative_attention_bias` as
`[buckets, N]`; T5X stores `[in, out]` and `[N, buckets]`: every 2-D tensor
but the embedding is transposed (the bool beside each name).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from jaxrobust.models import t5_config

# HF attention projection -> T5X kernel module.
_HF_ATTN = {"q": "query", "k": "key", "v": "value", "o": "out"}

Names = tuple[tuple[str, bool], ...]  # ((HF name, transpose?), ...), stored tensor first.


def _layer_rows(config: t5_config.T5Config, stack: str) -> Iterator[tuple[str, str, bool]]:
    """(T5X path under `layers_i/`, HF name under `block.i.layer.`, transpose?) of one layer."""
    if stack == "encoder":
        attentions = [(0, "SelfAttention", "attention", "pre_attention_layer_norm")]
        mlp_sub = 1
    else:
        attentions = [
            (0, "SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
            (1, "EncDecAttention", "encoder_decoder_attention", "pre_cross_attention_layer_norm"),
        ]
        mlp_sub = 2
    for sub, hf_attn, attn, norm in attentions:
        yield f"{norm}/scale", f"{sub}.layer_norm.weight", False
        for hf, ours in _HF_ATTN.items():
            yield f"{attn}/{ours}/kernel", f"{sub}.{hf_attn}.{hf}.weight", True
    yield "pre_mlp_layer_norm/scale", f"{mlp_sub}.layer_norm.weight", False
    acts = config.mlp_activations
    inputs = ["wi"] if len(acts) == 1 else [f"wi_{i}" for i in range(len(acts))]
    for kernel in [*inputs, "wo"]:
        yield f"mlp/{kernel}/kernel", f"{mlp_sub}.DenseReluDense.{kernel}.weight", True


@functools.cache
def hf_names(config: t5_config.T5Config) -> dict[str, Names]:
    """T5X parameter path -> its HF names (stored tensor, then tied copies), for every param."""
    embedding = ["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
    if config.logits_via_embedding:
        embedding.append("lm_head.weight")
    table: dict[str, Names] = {"token_embedder/embedding": tuple((n, False) for n in embedding)}
    if not config.logits_via_embedding:
        table["decoder/logits_dense/kernel"] = (("lm_head.weight", True),)
    layers = {"encoder": config.num_encoder_layers, "decoder": config.num_decoder_layers}
    for stack, num_layers in layers.items():
        # HF keeps the relative position table in block 0's self-attention only.
        relpos = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        table[f"{stack}/relpos_bias/rel_embedding"] = ((relpos, True),)
        table[f"{stack}/{stack}_norm/scale"] = ((f"{stack}.final_layer_norm.weight", False),)
        for i in range(num_layers):
            for path, hf, transpose in _layer_rows(config, stack):
                table[f"{stack}/layers_{i}/{path}"] = (
                    (f"{stack}.block.{i}.layer.{hf}", transpose),
                )
    return table


@functools.cache
def _from_hf(config: t5_config.T5Config) -> dict[str, tuple[str, bool] | None]:
    """`hf_names` inverted: HF name -> (T5X path, transpose?), None for a tied copy."""
    inverse: dict[str, tuple[str, bool] | None] = {}
    for path, ((stored, transpose), *copies) in hf_names(config).items():
        inverse[stored] = (path, transpose)
        for copy, _ in copies:
            inverse[copy] = None
    return inverse


def hf_to_t5x_name(config: t5_config.T5Config, hf_name: str) -> tuple[str, bool] | None:
    """Maps an HF T5 tensor name to (T5X path, transpose?); None for tied copies.

    Raises:
      KeyError: `hf_name` names no tensor of this model (any string, however
        short or malformed; `checkpoints.hf_items` reports it as unexpected).
    """
    return _from_hf(config)[hf_name]


def t5x_to_hf_names(config: t5_config.T5Config, path: str) -> list[tuple[str, bool]]:
    """The inverse of `hf_to_t5x_name`: HF names (stored tensor first, then tied copies).

    Raises:
      KeyError: `path` is no parameter of `t5.T5(config)`.
    """
    return list(hf_names(config)[path])
