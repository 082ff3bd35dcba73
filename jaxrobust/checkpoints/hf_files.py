"""The files of an HF model directory, checked before anything is trusted.

A `.safetensors` file is an 8-byte little-endian header length, a JSON header
(`{name: {dtype, shape, data_offsets}}`) and the tensors' bytes. Its header is
checked against the file as a whole before a tensor is read: every dtype known,
every byte length equal to dtype x shape, every tensor inside the file, no two
overlapping; and every read must return the bytes it asked for. A truncated,
empty or garbled file, a sharded index naming a missing shard or a broken
`config.json` raises `CheckpointError` naming the file and the problem, instead
of loading uninitialised memory (which a short `readinto` used to leave in
place) or failing with a bare `struct.error` / `OverflowError` /
`JSONDecodeError`.

`WeightsDigest` identifies the weights by content at little cost: each tensor's
bytes are hashed (SHA-256, hardware-accelerated where the CPU has SHA
extensions) as the loader reads them anyway, and the per-tensor hashes are
combined into one digest. It covers the tensors the model is built from (a tied
copy that is never read is not part of it) by name, dtype, shape and bytes, so
the same weights give the same digest in one file, in shards or in a `.bin`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import struct
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: a damaged file, or tensors that do not fit the model."""


_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
# At most this many header problems are listed in one error.
_MAX_LISTED = 20


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _raise_problems(path: pathlib.Path, what: str, problems: list[str]) -> None:
    if len(problems) == 1:
        raise CheckpointError(f"{path}: {what}: {problems[0]}")
    if problems:
        listed = problems[:_MAX_LISTED]
        more = len(problems) - len(listed)
        raise CheckpointError(
            f"{path}: {what} ({len(problems)} problems):\n  "
            + "\n  ".join(listed + ([f"... and {more} more"] if more else []))
        )


# ---------------------------------------------------------------------------
# Content digest.
# ---------------------------------------------------------------------------


class _TensorHash:
    """SHA-256 of one tensor's bytes, fed its leading-axis rows in order."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]):
        self.dtype, self.shape = dtype, shape
        self.rows = shape[0] if shape else 1
        self.done = 0  # Rows hashed so far.
        self.in_order = True
        self.sha = hashlib.sha256()

    def update(self, r0: int, r1: int, array: np.ndarray) -> None:
        if r0 > self.done:  # A gap: these rows cannot be hashed yet.
            self.in_order = False
        elif r1 > self.done:  # Rows already hashed (an overlapping part) are skipped.
            new = np.ascontiguousarray(array[self.done - r0 :] if self.shape else array)
            self.sha.update(new.reshape(-1).view(np.uint8))
            self.done = r1


class WeightsDigest:
    """One digest of every tensor a loader read, from the bytes as they were read.

    Pass one to a loader (`load_hf_t5(..., digest=d)`), then call `hexdigest()`.
    Tensors may be read in parts along their leading axis, in order; a part
    overlapping one already hashed is hashed once.
    """

    def __init__(self):
        self._tensors: dict[str, _TensorHash] = {}

    def update(self, name: str, rows: slice | None, array: np.ndarray, shape: tuple) -> None:
        """Adds `array`, rows `rows` (None = all) of tensor `name` of full shape `shape`."""
        h = self._tensors.get(name)
        if h is None:
            h = self._tensors[name] = _TensorHash(array.dtype, tuple(shape))
        r0, r1 = (0, h.rows) if rows is None else (rows.start, rows.stop)
        h.update(r0, r1, array)

    def hexdigest(self) -> str:
        """`'sha256:<hex>'` over the sorted (name, dtype, shape, tensor hash) of every tensor.

        Raises:
          RuntimeError: a tensor was read only in part or out of order (a loader bug:
            the digest would not describe the weights).
        """
        partial = sorted(n for n, h in self._tensors.items() if not h.in_order or h.done < h.rows)
        if partial:
            raise RuntimeError(f"weights digest: tensors not read whole and in order: {partial}")
        combined = hashlib.sha256()
        for name in sorted(self._tensors):
            h = self._tensors[name]
            entry = f"{name}\t{h.dtype.name}\t{list(h.shape)}\t{h.sha.hexdigest()}\n"
            combined.update(entry.encode())
        return "sha256:" + combined.hexdigest()

    def __len__(self) -> int:
        return len(self._tensors)


# ---------------------------------------------------------------------------
# safetensors.
# ---------------------------------------------------------------------------


def _read_exactly(f, buffer: memoryview) -> int:
    """Reads into all of `buffer` unless the file ends first; returns the bytes read."""
    got = 0
    while got < len(buffer):
        n = f.readinto(buffer[got:])
        if not n:
            break
        got += n
    return got


class SafetensorsFile:
    """Reads tensors of a `.safetensors` file on demand, bfloat16 included.

    The header is checked against the file before anything else (see the module
    docstring). Uses plain reads into fresh buffers rather than a memory map:
    mapped file pages would count towards the process's resident memory on top
    of the device copies.

    Raises:
      CheckpointError: on opening, a damaged file; on `get`, a short read.
    """

    def __init__(self, path: PathLike):
        self.path = pathlib.Path(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 8:
                    raise self._error(
                        f"{size} bytes, too short for a safetensors file "
                        "(8-byte header length, header, data): empty or truncated"
                    )
                (n,) = struct.unpack("<Q", f.read(8))
                if n > size - 8:
                    raise self._error(
                        f"header length {n} exceeds the {size - 8} bytes after it: "
                        "truncated, or not a safetensors file"
                    )
                raw = f.read(n)
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot read: {e}") from None
        try:
            header = json.loads(raw.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError both.
            problem = f"the {n}-byte header is not JSON ({e}): not a safetensors file"
            raise self._error(problem) from None
        if not isinstance(header, dict):
            raise self._error(f"the header is a JSON {type(header).__name__}, not an object")
        header.pop("__metadata__", None)
        self._base = 8 + n
        self._data_bytes = size - 8 - n
        self._header = header
        self._check_header()

    def _error(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {problem}")

    def _check_header(self) -> None:
        problems, spans, beyond = [], [], []
        for name, info in self._header.items():
            if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
                problems.append(f"tensor {name}: entry {info!r} lacks dtype, shape or data_offsets")
                continue
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in _ST_DTYPES:
                problems.append(
                    f"tensor {name}: dtype {dtype!r} is not one of {', '.join(_ST_DTYPES)}"
                )
                continue
            if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
                problems.append(f"tensor {name}: shape {shape!r} is not a list of sizes")
                continue
            if (
                not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]
            ):
                problems.append(f"tensor {name}: data_offsets {offsets!r} is not [start, end]")
                continue
            start, end = offsets
            want = int(np.prod(shape, dtype=object)) * np.dtype(_ST_DTYPES[dtype]).itemsize
            if end - start != want:
                problems.append(
                    f"tensor {name}: {end - start} bytes, expected {want} for {shape} {dtype}"
                )
            elif end > self._data_bytes:
                beyond.append((end, name))
            elif end > start:
                spans.append((start, end, name))
        if beyond:
            end, name = max(beyond)
            problems.insert(
                0,
                f"truncated: the header places {len(beyond)} tensors (e.g. {name}) up to byte "
                f"{end} of the data, which holds {self._data_bytes} bytes "
                f"({end - self._data_bytes} missing)",
            )
        spans.sort()
        for (s0, e0, a), (s1, e1, b) in zip(spans, spans[1:], strict=False):
            if s1 < e0:
                problems.append(f"tensors {a} [{s0}, {e0}) and {b} [{s1}, {e1}) overlap")
        _raise_problems(self.path, "damaged safetensors file", problems)

    def keys(self) -> list[str]:
        return list(self._header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._header[name]["shape"])

    def get(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor, or only `rows` of its leading axis (one contiguous read)."""
        info = self._header[name]
        dtype = np.dtype(_ST_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        start = info["data_offsets"][0]
        n = shape[0] if shape else 1
        r0, r1 = (0, n) if rows is None else (rows.start, rows.stop)
        if not 0 <= r0 <= r1 <= n:
            raise IndexError(f"{self.path}: rows [{r0}, {r1}) of tensor {name} with {n} rows")
        row_bytes = (int(np.prod(shape[1:])) if shape else 1) * dtype.itemsize
        out = np.empty(((r1 - r0),) + shape[1:] if shape else (), dtype)
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        offset = self._base + start + r0 * row_bytes
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                got = _read_exactly(f, buffer)
        except OSError as e:
            raise self._error(f"cannot read tensor {name}: {e}") from None
        if got != len(buffer):
            raise self._error(
                f"tensor {name}: read {got} of {len(buffer)} bytes at offset {offset}: "
                "the file was truncated or replaced while loading"
            )
        return out


# ---------------------------------------------------------------------------
# An HF directory: one file, shards or PyTorch pickles.
# ---------------------------------------------------------------------------


def _read_json(path: pathlib.Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from None
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError both.
        raise CheckpointError(f"{path}: not a JSON {what} ({e})") from None


class HFTensors:
    """The tensors of an HF model directory, whatever its file layout.

    Accepts `model.safetensors`, a sharded `model.safetensors.index.json`, or
    `pytorch_model.bin` (plain or sharded; needs torch). Every tensor read
    through `get` is added to `digest` when one is given.
    """

    def __init__(self, directory: PathLike, digest: WeightsDigest | None = None):
        d = pathlib.Path(directory)
        self.directory = d
        self.digest = digest
        self._where: dict[str, tuple[str, Callable[[], np.ndarray], tuple[int, ...]]] = {}
        self._problems: list[str] = []
        if (d / "model.safetensors").exists():
            self._add_safetensors(d / "model.safetensors")
        elif (d / "model.safetensors.index.json").exists():
            self._add_sharded(d / "model.safetensors.index.json", self._add_safetensors)
        elif (d / "pytorch_model.bin").exists():
            self._add_torch(d / "pytorch_model.bin")
        elif (d / "pytorch_model.bin.index.json").exists():
            # Sharded `.bin` (e.g. the original Vicuna / Alpaca uploads).
            self._add_sharded(d / "pytorch_model.bin.index.json", self._add_torch)
        else:
            found = sorted(p.name for p in d.iterdir()) if d.is_dir() else "no such directory"
            raise CheckpointError(
                f"{d}: expected model.safetensors, model.safetensors.index.json, "
                f"pytorch_model.bin or pytorch_model.bin.index.json; found {found}"
            )
        _raise_problems(d, "inconsistent checkpoint files", self._problems)

    def _add(self, file: str, name: str, read: Callable, shape: tuple[int, ...]) -> None:
        if name in self._where:
            self._problems.append(f"tensor {name} is in both {self._where[name][0]} and {file}")
        self._where[name] = (file, read, shape)

    def _add_sharded(self, index_path: pathlib.Path, add: Callable[[pathlib.Path], None]) -> None:
        index = _read_json(index_path, "shard index")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) for v in weight_map.values()
        ):
            raise CheckpointError(
                f"{index_path}: no 'weight_map' object of tensor name -> shard file name"
            )
        shards = sorted(set(weight_map.values()))
        bad = [s for s in shards if pathlib.PurePath(s).name != s or s in (".", "..")]
        if bad:
            raise CheckpointError(f"{index_path}: shard names {bad} are not plain file names")
        missing = [s for s in shards if not (index_path.parent / s).is_file()]
        if missing:
            raise CheckpointError(
                f"{index_path}: names shard files that are missing: {', '.join(missing)}"
            )
        for shard in shards:
            add(index_path.parent / shard)
        for name, shard in sorted(weight_map.items()):
            if self._where.get(name, (None,))[0] != shard:
                self._problems.append(
                    f"{index_path.name} puts tensor {name} in {shard}, which does not hold it"
                )

    def _add_safetensors(self, path: pathlib.Path) -> None:
        f = SafetensorsFile(path)
        for k in f.keys():
            self._add(path.name, k, lambda rows, k=k, f=f: f.get(k, rows), f.shape(k))

    def _add_torch(self, path: pathlib.Path) -> None:
        try:
            import torch
        except ImportError as e:
            raise CheckpointError(f"{path}: reading .bin checkpoints needs torch") from e
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as e:  # torch raises RuntimeError, pickle errors, EOFError, ...
            raise CheckpointError(
                f"{path}: cannot read as a PyTorch checkpoint: {type(e).__name__}: {e}"
            ) from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")

        def get(k, rows):
            t = state[k] if rows is None else state[k][rows]
            if t.dtype == torch.bfloat16:  # numpy has no bfloat16: the same bits, viewed.
                return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            return t.numpy()

        for k, t in state.items():
            if not isinstance(t, torch.Tensor):
                self._problems.append(f"{path.name}: entry {k} is a {type(t).__name__}")
                continue
            self._add(path.name, k, lambda rows, k=k: get(k, rows), tuple(t.shape))

    def names(self) -> list[str]:
        return list(self._where)

    def file(self, name: str) -> str:
        return self._where[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name][2]

    def get(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor, or `rows` of its leading axis."""
        array = self._where[name][1](rows)
        if self.digest is not None:
            self.digest.update(name, rows, array, self.shape(name))
        return array


# ---------------------------------------------------------------------------
# config.json.
# ---------------------------------------------------------------------------


def read_hf_config(directory: PathLike) -> dict[str, Any]:
    """The `config.json` of an HF model directory, as a dict.

    Raises:
      CheckpointError: no such file, not JSON, or not a JSON object.
    """
    path = pathlib.Path(directory) / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory}: no config.json (expected an HF model directory)")
    config = _read_json(path, "model config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: a JSON {type(config).__name__}, not an object")
    return config


def config_from_hf(
    directory: PathLike, from_hf_config: Callable[..., Any], **overrides: Any
) -> Any:
    """`from_hf_config(config.json, **overrides)`, its failures named by the file.

    Raises:
      CheckpointError: `read_hf_config`'s, or a field missing or of the wrong kind.
    """
    hf = read_hf_config(directory)
    path = pathlib.Path(directory) / "config.json"
    try:
        return from_hf_config(hf, **overrides)
    except KeyError as e:
        raise CheckpointError(f"{path}: no {e.args[0]!r} field") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot make a model config of it: {e}") from None
