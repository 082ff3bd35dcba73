"""Loading and saving model parameters: HF directories, T5X checkpoints, Orbax.

Every loader reads one tensor at a time and places it straight into its target
sharding (`jax.make_array_from_callback`, so on many hosts each host only
materialises its own shards), keeping peak host memory near the size of the
parameters themselves. Names and shapes are checked against the model's
abstract parameters (`jax.eval_shape`); every mismatch is reported at once with
the parameter path, the expected and found shapes and the file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import struct
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from etils import epath
from flax import serialization, traverse_util

from jaxrobust.models import llama as llama_lib
from jaxrobust.models import llama_config, llama_hf, t5_config, t5_hf
from jaxrobust.models import t5 as t5_lib
from jaxrobust.storage import files

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: missing, extra or mis-shaped tensors."""


# ---------------------------------------------------------------------------
# Reading tensors one by one.
# ---------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class SafetensorsFile:
    """Reads tensors of a `.safetensors` file on demand, bfloat16 included.

    Uses plain reads into fresh buffers rather than a memory map: mapped file
    pages would count towards the process's resident memory on top of the
    device copies.
    """

    def __init__(self, path: PathLike):
        self.path = pathlib.Path(path)
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        self._base = 8 + n
        header.pop("__metadata__", None)
        self._header = header

    def keys(self) -> list[str]:
        return list(self._header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._header[name]["shape"])

    def get(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor, or only `rows` of its leading axis (one contiguous read)."""
        info = self._header[name]
        dtype = np.dtype(_ST_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        start, end = info["data_offsets"]
        if end - start != int(np.prod(shape)) * dtype.itemsize:
            raise CheckpointError(
                f"{self.path}: tensor {name} has {end - start} bytes, expected "
                f"{int(np.prod(shape)) * dtype.itemsize} for {list(shape)} {info['dtype']}"
            )
        r0, r1 = (0, shape[0] if shape else 1) if rows is None else (rows.start, rows.stop)
        row_bytes = (int(np.prod(shape[1:])) if shape else 1) * dtype.itemsize
        out = np.empty(((r1 - r0),) + shape[1:] if shape else (), dtype)
        with open(self.path, "rb") as f:
            f.seek(self._base + start + r0 * row_bytes)
            f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        return out


class HFTensors:
    """The tensors of an HF model directory, whatever its file layout.

    Accepts `model.safetensors`, a sharded `model.safetensors.index.json`, or
    `pytorch_model.bin` (needs torch).
    """

    def __init__(self, directory: PathLike):
        d = pathlib.Path(directory)
        self.directory = d
        self._where: dict[str, tuple[str, Callable[[], np.ndarray], tuple[int, ...]]] = {}
        if (d / "model.safetensors").exists():
            self._add_safetensors(d / "model.safetensors")
        elif (d / "model.safetensors.index.json").exists():
            index = json.loads((d / "model.safetensors.index.json").read_text())
            for shard in sorted(set(index["weight_map"].values())):
                self._add_safetensors(d / shard)
        elif (d / "pytorch_model.bin").exists():
            self._add_torch(d / "pytorch_model.bin")
        elif (d / "pytorch_model.bin.index.json").exists():
            # Sharded `.bin` (e.g. the original Vicuna / Alpaca uploads).
            index = json.loads((d / "pytorch_model.bin.index.json").read_text())
            for shard in sorted(set(index["weight_map"].values())):
                self._add_torch(d / shard)
        else:
            found = sorted(p.name for p in d.iterdir()) if d.is_dir() else "no such directory"
            raise CheckpointError(
                f"{d}: expected model.safetensors, model.safetensors.index.json, "
                f"pytorch_model.bin or pytorch_model.bin.index.json; found {found}"
            )

    def _add_safetensors(self, path: pathlib.Path) -> None:
        f = SafetensorsFile(path)
        for k in f.keys():
            self._where[k] = (path.name, lambda rows, k=k, f=f: f.get(k, rows), f.shape(k))

    def _add_torch(self, path: pathlib.Path) -> None:
        try:
            import torch
        except ImportError as e:
            raise CheckpointError(f"{path}: reading .bin checkpoints needs torch") from e
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)

        def get(k, rows):
            t = state[k] if rows is None else state[k][rows]
            return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()

        for k, t in state.items():
            self._where[k] = (path.name, lambda rows, k=k: get(k, rows), tuple(t.shape))

    def names(self) -> list[str]:
        return list(self._where)

    def file(self, name: str) -> str:
        return self._where[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name][2]

    def get(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor, or `rows` of its leading axis."""
        return self._where[name][1](rows)


def read_hf_config(directory: PathLike) -> dict[str, Any]:
    path = pathlib.Path(directory) / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory}: no config.json (expected an HF model directory)")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------
# Placing tensors.
# ---------------------------------------------------------------------------


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


def _t5_shapes(config: t5_config.T5Config) -> dict[str, tuple[int, ...]]:
    return abstract_param_shapes(
        lambda: t5_lib.T5(config).init(jax.random.PRNGKey(0), *t5_lib.dummy_inputs())
    )


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
    for path in sorted(set(expected) - seen):
        problems.append(f"missing tensor for {path} (expected shape {expected[path]}) in {where}")
    if problems:
        raise CheckpointError(
            f"checkpoint {where} does not match the model ({len(problems)} problems):\n  "
            + "\n  ".join(problems)
        )
    return traverse_util.unflatten_dict(out, sep="/")


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


# ---------------------------------------------------------------------------
# HF T5 directories.
# ---------------------------------------------------------------------------


def load_hf_t5(
    directory: PathLike,
    shardings: Any = None,
    dtype: Any = jnp.float32,
    config: t5_config.T5Config | None = None,
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

    Returns:
      (config, params).
    """
    config = config or t5_config.from_hf_config(read_hf_config(directory), **config_overrides)
    tensors = HFTensors(directory)
    names = set(tensors.names())

    def items():
        yield from hf_items(tensors, functools.partial(t5_hf.hf_to_t5x_name, config))
        if not config.logits_via_embedding and "lm_head.weight" not in names:
            # HF ties `lm_head` to `shared` when the file holds no separate copy.
            yield "decoder/logits_dense/kernel", hf_source(tensors, "shared.weight", True)

    return config, assemble(_t5_shapes(config), items(), shardings, dtype, str(directory))


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


def _llama_shapes(config: llama_config.LlamaConfig) -> dict[str, tuple[int, ...]]:
    return abstract_param_shapes(lambda: llama_lib.init_fn(config)(jax.random.PRNGKey(0)))


def load_hf_llama(
    directory: PathLike,
    shardings: Any = None,
    dtype: Any = jnp.float32,
    config: llama_config.LlamaConfig | None = None,
    **config_overrides: Any,
) -> tuple[llama_config.LlamaConfig, dict[str, Any]]:
    """Loads an HF `LlamaForCausalLM` directory tensor by tensor into our params.

    Same contract and errors as `load_hf_t5`: every missing, unexpected or
    mis-shaped tensor is reported in one `CheckpointError`. HF's q/k rows need
    no permutation (our RoPE is HF's rotate-half, see `models/llama.py`).

    Returns:
      (config, params).
    """
    config = config or llama_config.from_hf_config(read_hf_config(directory), **config_overrides)
    tensors = HFTensors(directory)

    items = hf_items(tensors, functools.partial(llama_hf.hf_to_llama_name, config))
    return config, assemble(_llama_shapes(config), items, shardings, dtype, str(directory))


def export_hf_llama(params: Any, config: llama_config.LlamaConfig, directory: PathLike) -> None:
    """Writes `config.json` + `model.safetensors` that HF `LlamaForCausalLM` loads."""
    tensors: dict[str, np.ndarray] = {}
    for path, value in traverse_util.flatten_dict(params, sep="/").items():
        value = np.asarray(jax.device_get(value))
        name, transpose = llama_hf.llama_to_hf_name(config, path)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    _write_hf_directory(directory, llama_config.to_hf_config(config), tensors)


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
    return assemble(_t5_shapes(config), items, shardings, dtype, str(index))


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
