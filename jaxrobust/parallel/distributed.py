"""Multi-host start-up: JAX's own multi-process runtime, one program per host.

Every host runs the same command. `initialize` joins them before anything
touches a JAX backend:

- TPU VM slices: `jax.distributed.initialize()` with no arguments; JAX reads
  the slice's metadata.
- SLURM (GPU clusters): recognised from `SLURM_JOB_ID` / `SLURM_NTASKS`; JAX's
  SLURM detection supplies coordinator, process count and id.
- Anything else (GPU clusters without SLURM, CPU tests on loopback): explicit
  coordinator address, process count and id, from arguments or from
  `JAXROBUST_COORDINATOR`, `JAXROBUST_NUM_PROCESSES`, `JAXROBUST_PROCESS_ID`.
- One host: nothing to do.

On CPU, cross-process collectives use gloo. TensorFlow (SeqIO's input
pipeline) is kept off accelerators, and log lines name the process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxrobust.parallel.cluster import Cluster, resolve_cluster  # noqa: F401 (public here too)

_STARTED: Cluster | None = None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Cluster:
    """Joins the other hosts (idempotent); call before any other JAX call."""
    global _STARTED
    if _STARTED is not None:
        return _STARTED
    cluster = resolve_cluster(os.environ, coordinator, num_processes, process_id)
    if cluster.kind != "single":
        if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        if cluster.kind == "explicit":
            jax.distributed.initialize(
                cluster.coordinator, cluster.num_processes, cluster.process_id
            )
        else:
            jax.distributed.initialize()
    hide_accelerators_from_tensorflow()
    setup_logging()
    _STARTED = cluster
    return cluster


def hide_accelerators_from_tensorflow() -> None:
    """SeqIO's TensorFlow must not take GPU/TPU memory that JAX uses."""
    if "tensorflow" not in sys.modules:
        return  # `jaxrobust.tasks.registry` hides them when it imports TensorFlow.
    tf = sys.modules["tensorflow"]
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):
            pass  # Already initialised, or no such device type.


def is_writer() -> bool:
    """Only process 0 writes files (records, reports, checkpoint metadata)."""
    return jax.process_index() == 0


class _ProcessFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.process_label = f"{jax.process_index()}/{jax.process_count()}"
        return True


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines start with `[process i/n]`, so interleaved host logs stay readable."""
    root = logging.getLogger("jaxrobust")
    if any(getattr(h, "_jaxrobust", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._jaxrobust = True  # type: ignore[attr-defined]
    handler.addFilter(_ProcessFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s [process %(process_label)s] %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    # Records still propagate (pytest's caplog listens on the root logger), but a
    # plain console handler there (`logging.basicConfig`) would print them twice.
    for other in logging.getLogger().handlers:
        if type(other) is logging.StreamHandler:
            other.addFilter(lambda r: not r.name.startswith("jaxrobust"))


# ---------------------------------------------------------------------------
# Collectives and per-host shares (identities on one host).
# ---------------------------------------------------------------------------


def process() -> tuple[int, int]:
    """(this process's index, the process count)."""
    return jax.process_index(), jax.process_count()


def broadcast_int(value: int) -> int:
    """Process 0's value, on every process."""
    if process()[1] == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


def decided_by_writer(decide: Callable[[], int]) -> int:
    """`decide()` run on process 0 alone (it may read or move shared files), its result on
    every process: how one look at the file system becomes every process's choice."""
    return broadcast_int(decide() if is_writer() else 0)


def gather_json(local: list[Any]) -> list[Any]:
    """Concatenates JSON-able lists from all processes in process order."""
    if process()[1] == 1:
        return local
    from jax.experimental import multihost_utils

    raw = np.frombuffer(json.dumps(local).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.int64(raw.size))
    # Padded to a power of two: each new shape is a new all-gather program to compile.
    padded = np.zeros(1 << max(10, int(np.max(sizes) - 1).bit_length()), np.uint8)
    padded[: raw.size] = raw
    every = multihost_utils.process_allgather(padded)
    return [x for p, n in enumerate(sizes) for x in json.loads(every[p][: int(n)].tobytes())]


def host_share(chunk: Sequence[Any], index: int, count: int) -> list[Any]:
    """Process `index`'s share of a chunk: every `count`-th example from `index`.

    The same interleaving as SeqIO's `ShardInfo(index, num_shards=count)` (and
    `tf.data.Dataset.shard`), applied to each chunk, so shares differ by at most
    one example and `interleave` restores the chunk's order exactly.
    """
    return list(chunk[index::count])


def interleave(shares: Sequence[Sequence[Any]]) -> list[Any]:
    """Inverse of `host_share`: the chunk, in order, from every process's share."""
    out: list[Any] = [None] * sum(len(s) for s in shares)
    for p, share in enumerate(shares):
        out[p :: len(shares)] = share
    return out


def agree_max(local: np.ndarray) -> np.ndarray:
    """Element-wise max of `local` over processes (identity on one host).

    The engine's processes agree this way on the number of steps and on each
    step's bucket shapes, so every process makes the same jitted calls.
    """
    if process()[1] == 1:
        return local
    from jax.experimental import multihost_utils

    return np.max(multihost_utils.process_allgather(local), axis=0)


def local_rows(arr: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in order."""
    if process()[1] == 1:
        return np.asarray(arr)
    shards = {s.index[0].start or 0: np.asarray(s.data) for s in arr.addressable_shards}
    return np.concatenate([shards[k] for k in sorted(shards)], axis=0)


def gather_rows(local: np.ndarray, n_local_max: int) -> list[np.ndarray]:
    """Every process's `[n_p, D]` float rows (process order); pads to `n_local_max`."""
    if process()[1] == 1:
        return [local]
    from jax.experimental import multihost_utils

    padded = np.zeros((n_local_max,) + local.shape[1:], local.dtype)
    padded[: len(local)] = local
    sizes = multihost_utils.process_allgather(np.int64(len(local)))
    every = multihost_utils.process_allgather(padded)
    return [every[p][: int(n)] for p, n in enumerate(sizes)]
