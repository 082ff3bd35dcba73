"""Device mesh, logical axis rules, and sharded parameter creation.

Model code names array axes logically (`embed`, `mlp`, `heads`, `joined_kv`,
`vocab`, `batch`, ...). This module alone knows the mesh axes (`data`,
`model`) and the rule table between the two, which follows
`t5x/partitioning.py::standard_logical_axis_rules`.

`partition(fn, mesh, rules, ...)` is how every sharded function is jitted: it
traces and runs `fn` under the mesh and the rules (which
`nn.with_logical_constraint` reads while tracing), so no caller has to enter
them by hand.

The recipe for parameters that never exist unsharded:
`jax.eval_shape(init)` -> logical specs -> `NamedSharding`s -> `partition(init,
out_shardings=...)`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA, MODEL = "data", "model"
LogicalRules = Sequence[tuple[str, str | None]]


def standard_logical_axis_rules(shard_embed_over_data: bool = False) -> tuple:
    """T5X's standard rules (1-D parameter partitioning, data-parallel batch).

    Args:
      shard_embed_over_data: also split `embed` over the `data` axis (T5X's
        `parameter_partitioning_dims=2`, for models too large to replicate
        across data-parallel replicas, e.g. XXL on small slices).
    """
    rules = [
        ("batch", DATA),
        ("vocab", MODEL),
        ("mlp", MODEL),
        ("heads", MODEL),
        # Key/value heads of grouped-query attention (LLaMA): often fewer than
        # the model-parallel devices, so replicated; their kernels still split
        # over `joined_kv`.
        ("kv_heads", None),
        ("kv", None),
        ("joined_kv", MODEL),
        ("embed", DATA if shard_embed_over_data else None),
        ("relpos_buckets", None),
        ("length", None),
        ("layers", None),
        ("prompt", None),
        ("prompt_embed", None),
    ]
    return tuple(rules)


def fit_rules_to_dims(rules: LogicalRules, mesh: Mesh, dims: dict[str, Sequence[int]]) -> tuple:
    """Replicates the logical axes whose sizes the mesh axis would not divide.

    JAX arrays must split evenly, and some checkpoints have sizes that do not:
    Alpaca's and WizardLM-7B's vocabulary of 32001 rows cannot go over a `model`
    axis of 2, 4 or 8. Such an axis is mapped to None (replicated) instead.

    Args:
      dims: logical axis name -> every size it takes in the model (e.g. from
        `llama.logical_dims`).
    """
    out = []
    for name, mesh_axis in rules:
        sizes = dims.get(name, ())
        n = 1
        for ax in (mesh_axis,) if isinstance(mesh_axis, str) else (mesh_axis or ()):
            n *= mesh.shape[ax]
        out.append((name, None if any(s % n for s in sizes) else mesh_axis))
    return tuple(out)


def make_mesh(data: int = -1, model: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A `(data, model)` mesh over all devices of all hosts (or `devices`).

    Args:
      data: data-parallel size; -1 takes what `model` leaves.
      model: model-parallel size.
      devices: defaults to `jax.devices()`, every process's devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if data == -1:
        if n % model:
            raise ValueError(f"model={model} does not divide the {n} devices")
        data = n // model
    if data * model != n:
        raise ValueError(f"mesh data={data} x model={model} needs {data * model} devices, got {n}")
    return jax.make_mesh(
        (data, model),
        (DATA, MODEL),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
        devices=devices,
    )


def single_device_mesh() -> Mesh:
    """A 1 x 1 mesh over the first device: "one device" in tests and benchmarks."""
    return make_mesh(1, 1, devices=jax.devices()[:1])


@contextlib.contextmanager
def _active(mesh: Mesh, rules: LogicalRules) -> Iterator[None]:
    """Makes `mesh` and `rules` the context for tracing model code.

    `nn.with_logical_constraint` in the model reads both while a function is
    traced; `partition` enters this context around every call.
    """
    # `jax.set_mesh` (JAX >= 0.7) is also a context manager; older JAX has use_mesh.
    set_mesh = getattr(jax, "set_mesh", None) or jax.sharding.use_mesh
    with set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def partition(fn: Callable, mesh: Mesh, rules: LogicalRules, **jit_kwargs: Any) -> Callable:
    """`jax.jit(fn, **jit_kwargs)` that traces and runs under `mesh` and `rules`.

    Every call enters the mesh and the rules before calling the jitted function,
    so the logical constraints in model code resolve to the mesh's axes however
    and wherever the result is called.

    Args:
      fn: the function to jit.
      jit_kwargs: passed to `jax.jit` (`in_shardings`, `out_shardings`,
        `donate_argnums`, `static_argnums`, ...).
    """
    jitted = jax.jit(fn, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _active(mesh, rules):
            return jitted(*args, **kwargs)

    return call


def logical_to_shardings(logical_specs: Any, mesh: Mesh, rules: LogicalRules) -> Any:
    """Maps a tree of logical `PartitionSpec`s (or axis-name tuples) to `NamedSharding`s."""

    def one(spec):
        spec = PartitionSpec(*spec) if isinstance(spec, tuple) else spec
        mesh_spec = nn.logical_to_mesh_axes(spec, rules)
        return NamedSharding(mesh, mesh_spec)

    return jax.tree_util.tree_map(
        one, logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec | tuple)
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def put_replicated(value: np.ndarray, mesh: Mesh) -> jax.Array:
    """`value` on every device of `mesh` (every process passes the same value)."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, replicated(mesh), lambda index: value[index])


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading (batch) axis over `data`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA, *([None] * (ndim - 1))))


def init_sharded(
    init_fn: Callable[[jax.Array], Any], rng: jax.Array, mesh: Mesh, rules: LogicalRules
) -> tuple[Any, Any]:
    """Creates parameters directly in their shardings.

    Args:
      init_fn: `rng -> variables` whose parameters carry logical partitioning
        metadata (`nn.with_logical_partitioning`).

    Returns:
      (unboxed `params` tree, its `NamedSharding` tree).
    """
    abstract = jax.eval_shape(init_fn, rng)
    specs = nn.get_partition_spec(abstract)
    shardings = logical_to_shardings(specs, mesh, rules)
    variables = partition(init_fn, mesh, rules, out_shardings=shardings)(rng)
    variables = nn.meta.unbox(variables)
    return variables["params"], shardings["params"]


def shard_params(params: Any, shardings: Any) -> Any:
    """Places an existing (host or device) params tree into `shardings`."""
    return jax.tree_util.tree_map(lambda x, s: jax.device_put(x, s), params, shardings)


def put_global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """Builds a global array, batch over `data`, from this process's local rows.

    Every process passes the same-shaped slab; the global batch is their
    concatenation in process order.
    """
    sharding = batch_sharding(mesh, local.ndim)
    return jax.make_array_from_process_local_data(sharding, local)
