"""Placing checked tensors on devices: shapes first, then one tensor at a time.

Every loader reads one tensor at a time and places it straight into its target
sharding (`jax.make_array_from_callback`, so on many hosts each host only
materialises its own shards), keeping peak host memory near the size of the
parameters themselves. Names and shapes are checked against the model's
abstract parameters (`jax.eval_shape`) before anything is read; every mismatch
is reported at once with the parameter path, the expected and found shapes and
the file.

Loading shows a progress bar (bytes placed, rate, ETA; tqdm on stderr) on a
terminal, in process 0 only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import traverse_util

from jaxrobust.checkpoints.hf_files import CheckpointError, HFTensors


def abstract_param_shapes(init_fn: Callable[[], Any]) -> dict[str, tuple[int, ...]]:
    """`{'a/b/kernel': shape}` of the params `init_fn()` would create (nothing allocated)."""
    abstract = jax.eval_shape(init_fn)
    params = jax.tree_util.tree_map(
        lambda x: x.value if hasattr(x, "value") else x,
        abstract["params"],
        is_leaf=lambda x: hasattr(x, "value"),
    )
    flat = traverse_util.flatten_dict(params, sep="/")
    return {k: tuple(v.shape) for k, v in flat.items()}


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one parameter comes from.

    `read(part)` returns the parameter in our layout, or (when `part` is a
    slice) only that slice along `chunk_axis`: the axis that is contiguous in
    the file, so a part is one sequential read.
    """

    origin: str  # For messages: tensor name and file.
    shape: tuple[int, ...]  # In our layout; checked before anything is read.
    read: Callable[[slice | None], np.ndarray]
    chunk_axis: int = 0


# Large tensors are read in parts of about this size, so a transposed tensor is
# assembled on the host with no second full-size temporary.
CHUNK_BYTES = 4 * 2**20


# XLA's CPU client uses a host buffer with this alignment as the device buffer
# itself instead of copying it.
_CPU_ALIGNMENT = 64


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + _CPU_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % _CPU_ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _read_whole(source: Source, out: np.ndarray) -> np.ndarray:
    """Fills `out` from `source`, a part of about `CHUNK_BYTES` at a time."""
    if out.nbytes <= CHUNK_BYTES or not source.shape:
        out[...] = source.read(None)
        return out
    axis = source.chunk_axis
    n = source.shape[axis]
    step = max(1, n * CHUNK_BYTES // out.nbytes)
    for start in range(0, n, step):
        index = [slice(None)] * out.ndim
        index[axis] = slice(start, min(n, start + step))
        out[tuple(index)] = source.read(index[axis])
    return out


@functools.partial(jax.jit, donate_argnums=0, static_argnums=3)
def _write_part(buffer: jax.Array, part: jax.Array, offset: jax.Array, axis: int) -> jax.Array:
    return jax.lax.dynamic_update_slice_in_dim(buffer, part, offset, axis)


def _stream_to_device(source: Source, device_sharding: jax.sharding.Sharding, dtype) -> jax.Array:
    """Writes a tensor in parts into a donated buffer on one device.

    The host never holds more than a part. Parts have one shape (the last
    overlaps its predecessor): one compilation per tensor shape.
    """
    nbytes = int(np.prod(source.shape)) * dtype.itemsize
    axis = source.chunk_axis
    n = source.shape[axis]
    step = max(1, n * CHUNK_BYTES // nbytes)
    buffer = jnp.zeros(source.shape, dtype, device=device_sharding)
    for start in range(0, n, step):
        start = min(start, n - step)
        part = np.asarray(source.read(slice(start, start + step)), dtype=dtype)
        buffer = _write_part(buffer, jax.device_put(part, device_sharding), start, axis)
    return buffer


def _place(source: Source, sharding: jax.sharding.Sharding | None, dtype) -> jax.Array:
    """Puts one tensor on its device(s), holding it on the host at most once.

    - One CPU device: the tensor is read into a suitably aligned host buffer,
      which XLA's CPU client adopts as the device buffer (no copy at all).
    - One accelerator: a large tensor is streamed in parts (`_stream_to_device`).
    - Several devices: each device copies its shard out of one host array.
    """
    dtype = np.dtype(dtype)
    devices = sharding.device_set if sharding is not None else {jax.devices()[0]}
    nbytes = int(np.prod(source.shape)) * dtype.itemsize
    if len(devices) == 1:
        if next(iter(devices)).platform == "cpu":
            # device_put(x, None) leaves the array uncommitted, as before.
            return jax.device_put(
                _read_whole(source, _aligned_empty(source.shape, dtype)), sharding
            )
        if source.shape and nbytes > 4 * CHUNK_BYTES:
            device_sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
            return _stream_to_device(source, device_sharding, dtype)
    array = _read_whole(source, np.empty(source.shape, dtype))
    if sharding is None:
        # Not jnp.asarray: it stages a second host copy (measured: 3x the tensor).
        return jax.device_put(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def assemble(
    expected: dict[str, tuple[int, ...]],
    items: Iterator[tuple[str | None, Source]],
    shardings: Any,
    dtype: Any,
    where: str,
) -> dict[str, Any]:
    """Checks tensors against `expected` shapes and places them; raises on mismatch.

    Args:
      expected: from `abstract_param_shapes`.
      items: (param path, or None where the name maps to no parameter; source).
      shardings: a tree like the params of target shardings, or None.
    """
    flat_shardings = traverse_util.flatten_dict(shardings, sep="/") if shardings is not None else {}
    out: dict[str, jax.Array] = {}
    seen: set[str] = set()
    problems: list[str] = []
    itemsize = np.dtype(dtype).itemsize
    bar = tqdm.tqdm(
        total=sum(math.prod(s) for s in expected.values()) * itemsize,
        unit="B",
        unit_scale=True,
        desc=f"loading {os.path.basename(str(where).rstrip('/')) or where}",
        file=sys.stderr,
        disable=None if jax.process_index() == 0 else True,
        dynamic_ncols=True,
    )
    with bar:
        _place_all(items, expected, flat_shardings, dtype, where, out, seen, problems, bar)
    for path in sorted(set(expected) - seen):
        problems.append(f"missing tensor for {path} (expected shape {expected[path]}) in {where}")
    if problems:
        raise CheckpointError(
            f"checkpoint {where} does not match the model ({len(problems)} problems):\n  "
            + "\n  ".join(problems)
        )
    return traverse_util.unflatten_dict(out, sep="/")


def _place_all(items, expected, flat_shardings, dtype, where, out, seen, problems, bar) -> None:
    """`assemble`'s loop: checks each tensor, places it while nothing is wrong."""
    itemsize = np.dtype(dtype).itemsize
    for path, source in items:
        if path not in expected:
            target = f" (-> {path})" if path else ""
            problems.append(f"unexpected tensor {source.origin}{target} in {where}")
            continue
        seen.add(path)
        want = expected[path]
        if tuple(source.shape) != want:
            problems.append(
                f"{path}: expected shape {want}, found {tuple(source.shape)} "
                f"({source.origin} in {where})"
            )
            continue
        if not problems:  # Nothing is read once the checkpoint is known to be bad.
            out[path] = _place(source, flat_shardings.get(path), dtype)
            bar.update(math.prod(want) * itemsize)


def hf_source(tensors: HFTensors, name: str, transpose: bool) -> Source:
    """A 2-D-or-less HF tensor, transposed to our `[in, out]` layout if asked."""
    shape = tensors.shape(name)
    origin = f"{name} [{tensors.file(name)}]"
    if not transpose:
        return Source(origin, shape, lambda part: tensors.get(name, part), 0)

    def read(part):
        return np.ascontiguousarray(tensors.get(name, part).T)

    # File rows are our columns: parts run along our last axis.
    return Source(origin, shape[::-1], read, len(shape) - 1)


def hf_items(
    tensors: HFTensors, to_path: Callable[[str], tuple[str, bool] | None]
) -> Iterator[tuple[str | None, Source]]:
    """(param path, source) for every tensor of an HF directory, for `assemble`.

    `to_path(hf_name)` gives (param path, transpose), None for a tensor that
    maps to no parameter and is skipped, or raises KeyError for an unknown name
    (yielded with path None: `assemble` reports it as unexpected).
    """
    for name in tensors.names():
        try:
            mapped = to_path(name)
        except KeyError:
            yield None, hf_source(tensors, name, False)
            continue
        if mapped is not None:
            yield mapped[0], hf_source(tensors, name, mapped[1])
