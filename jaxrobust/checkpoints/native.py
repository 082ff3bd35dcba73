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
from jaxrobust.checkpoints.hf_files import CheckpointError, PathLike
from jaxrobust.checkpoints.placing import Source, assemble
from jaxrobust.models import t5_config

# ---------------------------------------------------------------------------
# T5X checkpoints.
# ---------------------------------------------------------------------------


def _is_ts_spec(x: Any) -> bool:
    return isinstance(x, dict) and {"driver", "kvstore"} <= set(x)


def load_t5x(
    path: PathLike,
    config: t5_config.T5Config,
    shardings: Any = None,
    dtype: Any = jnp.float32,
) -> dict[str, Any]:
    """Loads the parameters of a T5X checkpoint, with no renaming.

    Accepts the legacy single msgpack file (`checkpoint_N` holding every array)
    and the tensorstore layout (a directory with a msgpack `checkpoint` index
    whose large leaves are zarr specs, one zarr array per parameter beside it).
    The optimizer state is ignored.
    """
    p = pathlib.Path(path)
    index = p / "checkpoint" if p.is_dir() else p
    if not index.exists():
        raise CheckpointError(f"{path}: no T5X checkpoint file (expected {index})")
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
    flat = traverse_util.flatten_dict(target, sep="/", is_leaf=lambda _, x: _is_ts_spec(x))

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

    def shape_of(leaf):
        return tuple(leaf["metadata"]["shape"]) if _is_ts_spec(leaf) else np.shape(leaf)

    items = (
        (k, Source(f"{k} [{index.name}]", shape_of(v), functools.partial(read, v)))
        for k, v in flat.items()
    )
    return assemble(t5_param_shapes(config), items, shardings, dtype, str(index))


# ---------------------------------------------------------------------------
# Orbax.
# ---------------------------------------------------------------------------


def save_params(params: Any, directory: PathLike) -> None:
    """Saves a params tree with Orbax (atomic: written to a temp dir, then renamed)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(pathlib.Path(directory).absolute(), params, force=True)


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
        return ckptr.restore(
            pathlib.Path(directory).absolute(), jax.tree_util.tree_map(abstract, target)
        )
