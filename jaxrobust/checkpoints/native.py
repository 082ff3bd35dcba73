"""Native checkpoints: T5X's (legacy msgpack and tensorstore) and our Orbax params."""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from jaxrobust.checkpoints.hf import t5_param_shapes
from jaxrobust.checkpoints.hf_files import CheckpointError, PathLike, WeightsDigest
from jaxrobust.checkpoints.placing import Source, assemble
from jaxrobust.models import t5_config
from jaxrobust.storage import files

# ---------------------------------------------------------------------------
# T5X checkpoints.
# ---------------------------------------------------------------------------


def _is_ts_spec(x: Any) -> bool:
    return isinstance(x, dict) and {"driver", "kvstore"} <= set(x)


def is_t5x(path: PathLike) -> bool:
    """A T5X checkpoint: a legacy msgpack file, or a folder holding a `checkpoint` index
    and no HF `config.json`."""
    p = pathlib.Path(path)
    if p.is_file():
        return p.suffix not in (".json", ".safetensors", ".bin")
    return (p / "checkpoint").is_file() and not (p / "config.json").exists()


def t5x_config(
    path: PathLike, config: t5_config.T5Config | None, where: str = ""
) -> t5_config.T5Config:
    """The config to load `path` with: `config` (a preset or a given config.json), else a
    `config.json` beside the checkpoint; the vocabulary size is the checkpoint's own
    (its `token_embedder/embedding` rows).

    Raises:
      CheckpointError: no config given and none beside the checkpoint.
    """
    p = pathlib.Path(path)
    if config is None:
        beside = (p if p.is_dir() else p.parent) / "config.json"
        if not beside.exists():
            raise CheckpointError(
                f"{where or path}: a T5X checkpoint holds no model config: give a preset "
                f"(ModelSpec.preset, e.g. 'flan-t5-xl'), a config.json path as the preset, or "
                f"put an HF config.json beside it ({beside})"
            )
        config = t5_config.from_hf_config(json.loads(beside.read_text()))
    _, flat = _t5x_target(path)
    embedding = flat.get("token_embedder/embedding")
    if embedding is None:
        raise CheckpointError(f"{path}: no token_embedder/embedding in the T5X checkpoint")
    rows = embedding["metadata"]["shape"][0] if _is_ts_spec(embedding) else np.shape(embedding)[0]
    return config.replace(vocab_size=int(rows))


def _t5x_target(path: PathLike) -> tuple[pathlib.Path, dict[str, Any]]:
    """(index file, flat parameter tree) of a T5X checkpoint."""
    p = pathlib.Path(path)
    index = p / "checkpoint" if p.is_dir() else p
    if not index.exists():
        raise CheckpointError(f"{path}: no T5X checkpoint file (expected {index})")
    stat = index.stat()
    return index, _read_index(str(index), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _read_index(index: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """The flat parameter tree of a T5X index file; the last one read is kept (keyed by
    its modification time and size), so `t5x_config` then `load_t5x` read it once;
    `load_t5x` drops it when done."""
    index = pathlib.Path(index)
    state = serialization.msgpack_restore(index.read_bytes())
    if "optimizer" in state and "target" in state["optimizer"]:
        target = state["optimizer"]["target"]
    elif "target" in state:
        target = state["target"]
    else:
        raise CheckpointError(
            f"{index}: expected parameters under 'optimizer/target' or 'target', "
            f"found top-level keys {sorted(state)}"
        )
    return traverse_util.flatten_dict(target, sep="/", is_leaf=lambda _, x: _is_ts_spec(x))


def load_t5x(
    path: PathLike,
    config: t5_config.T5Config,
    shardings: Any = None,
    dtype: Any = jnp.float32,
    digest: WeightsDigest | None = None,
) -> dict[str, Any]:
    """Loads the parameters of a T5X checkpoint, with no renaming.

    Accepts the legacy single msgpack file (`checkpoint_N` holding every array)
    and the tensorstore layout (a directory with a msgpack `checkpoint` index
    whose large leaves are zarr specs, one zarr array per parameter beside it).
    The optimizer state is ignored.

    Args:
      digest: a `WeightsDigest` fed every tensor as read (T5X names).
    """
    index, flat = _t5x_target(path)

    def read(leaf, part):
        if _is_ts_spec(leaf):
            import tensorstore as ts

            spec = json.loads(json.dumps(leaf))
            kv = spec["kvstore"]
            if not str(kv.get("path", "")).startswith(("/", "gs://")):
                # T5X writes paths relative to the checkpoint directory.
                kv.update(driver="file", path=str(index.parent / kv["path"]))
                kv.pop("bucket", None)
            store = ts.open(spec, open=True, read=True).result()
            return (store if part is None else store[part]).read().result()
        return np.asarray(leaf if part is None else leaf[part])

    def read_hashed(name, leaf, part):
        array = read(leaf, part)
        if digest is not None:
            digest.update(name, part, array, shape_of(leaf))
        return array

    def shape_of(leaf):
        return tuple(leaf["metadata"]["shape"]) if _is_ts_spec(leaf) else np.shape(leaf)

    items = (
        (k, Source(f"{k} [{index.name}]", shape_of(v), functools.partial(read_hashed, k, v)))
        for k, v in flat.items()
    )
    try:
        return assemble(t5_param_shapes(config), items, shardings, dtype, str(index))
    finally:
        _read_index.cache_clear()


# ---------------------------------------------------------------------------
# Orbax.
# ---------------------------------------------------------------------------


def save_params(params: Any, directory: PathLike) -> None:
    """Saves a params tree with Orbax (atomic: written to a temp dir, then renamed)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(files.path(directory), params, force=True)


def restore_params(directory: PathLike, target: Any) -> Any:
    """Restores a params tree saved by `save_params` straight into shardings.

    Args:
      target: a tree of `jax.ShapeDtypeStruct` with `sharding` set (or arrays
        whose shapes, dtypes and shardings to copy).
    """
    import orbax.checkpoint as ocp

    def abstract(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(files.path(directory), jax.tree_util.tree_map(abstract, target))
