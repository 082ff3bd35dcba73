"""HF T5 and LLaMA directories: load into our parameter layout, export for `from_pretrained`.

The loaders take an optional `WeightsDigest`, which hashes each tensor as it
is read (`hf_files`); `inference.loading.load_model` keeps it as
`LoadedModel.weights_digest`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import traverse_util

from jaxrobust.checkpoints.hf_files import HFTensors, PathLike, WeightsDigest, config_from_hf
from jaxrobust.checkpoints.placing import abstract_param_shapes, assemble, hf_items, hf_source
from jaxrobust.models import llama as llama_lib
from jaxrobust.models import llama_config, llama_hf, t5_config, t5_hf
from jaxrobust.models import t5 as t5_lib
from jaxrobust.storage import files

# ---------------------------------------------------------------------------
# HF T5 directories.
# ---------------------------------------------------------------------------


def t5_param_shapes(config: t5_config.T5Config) -> dict[str, tuple[int, ...]]:
    """`{'encoder/.../kernel': shape}` of a T5 of `config` (nothing allocated)."""
    return abstract_param_shapes(
        lambda: t5_lib.T5(config).init(jax.random.PRNGKey(0), *t5_lib.dummy_inputs())
    )


def load_hf_t5(
    directory: PathLike,
    shardings: Any = None,
    dtype: Any = jnp.float32,
    config: t5_config.T5Config | None = None,
    digest: WeightsDigest | None = None,
    **config_overrides: Any,
) -> tuple[t5_config.T5Config, dict[str, Any]]:
    """Loads an HF `T5ForConditionalGeneration` directory into T5X-named params.

    Args:
      directory: holds `config.json` and the weights.
      shardings: optional `NamedSharding` tree like the params (see
        `partitioning.init_sharded` / `logical_to_shardings`); None keeps the
        default device.
      dtype: parameter dtype on device.
      config: use this config instead of deriving it from `config.json`.
      digest: when given, every tensor read is added to it (`WeightsDigest`).

    Returns:
      (config, params).

    Raises:
      CheckpointError: a damaged file or `config.json` (`hf_files`), or tensors
        that do not fit the config (all listed at once, nothing read).
    """
    config = config or config_from_hf(directory, t5_config.from_hf_config, **config_overrides)
    tensors = HFTensors(directory, digest)
    names = set(tensors.names())

    def items():
        yield from hf_items(tensors, functools.partial(t5_hf.hf_to_t5x_name, config))
        if not config.logits_via_embedding and "lm_head.weight" not in names:
            # HF ties `lm_head` to `shared` when the file holds no separate copy.
            yield "decoder/logits_dense/kernel", hf_source(tensors, "shared.weight", True)

    return config, assemble(t5_param_shapes(config), items(), shardings, dtype, str(directory))


def export_hf_t5(params: Any, config: t5_config.T5Config, directory: PathLike) -> None:
    """Writes `config.json` + `model.safetensors` that HF `from_pretrained` loads."""
    tensors: dict[str, np.ndarray] = {}
    for path, value in traverse_util.flatten_dict(params, sep="/").items():
        value = np.asarray(jax.device_get(value))
        # HF deduplicates tied tensors on save; write the embedding once.
        (name, transpose), *_ = t5_hf.t5x_to_hf_names(config, path)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    hf_config = t5_config.to_hf_config(config)
    hf_config["scale_decoder_outputs"] = config.logits_via_embedding
    _write_hf_directory(directory, hf_config, tensors)


def _write_hf_directory(directory: PathLike, hf_config: dict, tensors: dict) -> None:
    """`config.json` and `model.safetensors`, each written atomically."""
    from safetensors.numpy import save_file

    d = epath.Path(directory)
    files.write_atomic(d / "config.json", json.dumps(hf_config, indent=2))
    with files.atomic_path(d / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


# ---------------------------------------------------------------------------
# HF LLaMA directories.
# ---------------------------------------------------------------------------


def llama_param_shapes(config: llama_config.LlamaConfig) -> dict[str, tuple[int, ...]]:
    """`{'layers_0/.../kernel': shape}` of a LLaMA of `config` (nothing allocated)."""
    return abstract_param_shapes(lambda: llama_lib.init_fn(config)(jax.random.PRNGKey(0)))


def load_hf_llama(
    directory: PathLike,
    shardings: Any = None,
    dtype: Any = jnp.float32,
    config: llama_config.LlamaConfig | None = None,
    digest: WeightsDigest | None = None,
    **config_overrides: Any,
) -> tuple[llama_config.LlamaConfig, dict[str, Any]]:
    """Loads an HF `LlamaForCausalLM` directory tensor by tensor into our params.

    Same contract, `digest` and errors as `load_hf_t5`: every missing, unexpected or
    mis-shaped tensor is reported in one `CheckpointError`. HF's q/k rows need
    no permutation (our RoPE is HF's rotate-half, see `models/llama.py`).

    Returns:
      (config, params).
    """
    config = config or config_from_hf(directory, llama_config.from_hf_config, **config_overrides)
    tensors = HFTensors(directory, digest)

    items = hf_items(tensors, functools.partial(llama_hf.hf_to_llama_name, config))
    return config, assemble(llama_param_shapes(config), items, shardings, dtype, str(directory))


def export_hf_llama(params: Any, config: llama_config.LlamaConfig, directory: PathLike) -> None:
    """Writes `config.json` + `model.safetensors` that HF `LlamaForCausalLM` loads."""
    tensors: dict[str, np.ndarray] = {}
    for path, value in traverse_util.flatten_dict(params, sep="/").items():
        value = np.asarray(jax.device_get(value))
        name, transpose = llama_hf.llama_to_hf_name(config, path)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    _write_hf_directory(directory, llama_config.to_hf_config(config), tensors)
