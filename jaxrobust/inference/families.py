"""Model families: what the rest of jaxrobust needs to know about an architecture.

A `Family` names, in one frozen dataclass, everything the model factory
(`inference.loading.load_model`), the engine and the trainer need from an
architecture: its config type and presets, reading HF `config.json`, random
initialisation, logical axes, HF checkpoint loading and export, the engine's
adapter and the differentiable scorers that training uses. Nothing else in the
library dispatches on a family: `ModelSpec.family` is looked up here by name,
an `Engine` or a loss finds the family of its config by the config's type.

The built-in families are declared at the end of their inference modules
(`inference.t5.FAMILY`, `inference.llama.FAMILY`) and imported when first asked
for: adding one is one new module plus one line in `_BUILTIN`. A family defined
outside the package is registered with `register_family(Family(...))` from a
module the run imports (e.g. `EvalOptions`/`train`'s `task_modules`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

# Built-in families: name -> the module whose `FAMILY` declares it (imported lazily).
_BUILTIN = {
    "t5": "jaxrobust.inference.t5",
    "llama": "jaxrobust.inference.llama",
}


@dataclasses.dataclass(frozen=True)
class Family:
    """One architecture as the library sees it. `C` below is `config_class`.

    The scorers take `(config, params, batch, prefix_embeddings)`, where `batch`
    is what the family's adapter's `rank_batch` builds (flattened to rows) and
    `prefix_embeddings` is a soft prompt `[P, D]` or None; they are jittable and
    differentiable in `params` and the prompt.
    """

    name: str  # `ModelSpec.family`, e.g. 't5'.
    config_class: type  # Its config dataclass; it must have `emb_dim` (the soft-prompt width).
    get_preset: Callable[..., Any]  # (preset name, **field overrides) -> C.
    init: Callable[[Any], Callable[[Any], Any]]  # C -> (rng -> variables), logically boxed.
    param_logical_axes: Callable[[Any], Any]  # C -> logical axis names, a tree like params.
    logical_dims: Callable[[Any], dict]  # C -> every size of each logical axis.
    # (C, tokenizer, prompt_formats.PromptFormat) -> the engine's adapter: text -> ids,
    # batch layouts (`rank_batch`), jittable functions (see `inference.engine`).
    make_adapter: Callable[[Any, Any, Any], Any]
    # (C, params, batch, prefix, average=False) -> [B, O] option log-likelihoods.
    option_log_likelihoods: Callable[..., Any]
    # (C, params, batch with 'targets' [N, 1, L], prefix) -> [N, L, V] teacher-forced
    # log-probabilities of each row's one target (training on tasks without options).
    target_log_probs: Callable[..., Any]
    pooled_states: Callable[..., Any]  # (C, params, batch, prefix) -> [N, D] float32.
    token_embedding: Callable[[Any], Any]  # params -> the input embedding table [V, D].
    # HF checkpoints; None for a family that has none (random weights only, PT only).
    from_hf_config: Callable[..., Any] | None = None  # (config.json dict, **overrides) -> C.
    # (directory, shardings=, dtype=, config=, digest=) -> (C, params); every tensor read
    # is added to `digest` (a `checkpoints.WeightsDigest`) when it is not None.
    load_hf: Callable[..., tuple[Any, Any]] | None = None
    export_hf: Callable[[Any, Any, Any], None] | None = None  # (params, C, directory).


_REGISTRY: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Makes `family` known by its name and config type; returns it.

    Registering the same declaration again is a no-op; another family under a
    taken name or config type is an error.
    """
    for other in _REGISTRY.values():
        if other == family:
            return family
        if family.name == other.name or family.config_class is other.config_class:
            raise ValueError(
                f"family {family.name!r} ({family.config_class.__name__}) clashes with the "
                f"registered family {other.name!r} ({other.config_class.__name__})"
            )
    _REGISTRY[family.name] = family
    return family


def _load_builtin(name: str) -> None:
    if name in _BUILTIN and name not in _REGISTRY:
        register_family(importlib.import_module(_BUILTIN[name]).FAMILY)


def known_families() -> list[str]:
    """Names of the built-in and registered families."""
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_family(name: str) -> Family:
    """The family called `name` (`ModelSpec.family`).

    Raises:
      ValueError: no such family (the message lists the known ones).
    """
    _load_builtin(name)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown model family {name!r}; known: {', '.join(known_families())} "
            "(a new one is declared with inference.families.register_family)"
        )
    return _REGISTRY[name]


def for_config(config: Any) -> Family:
    """The family whose config type is `type(config)` (the engine's and the loss's dispatch)."""
    for name in _BUILTIN:
        _load_builtin(name)
    for family in _REGISTRY.values():
        if type(config) is family.config_class:
            return family
    raise TypeError(
        f"no model family has config type {type(config).__name__}; registered: "
        + ", ".join(f"{f.name} ({f.config_class.__name__})" for f in _REGISTRY.values())
    )
