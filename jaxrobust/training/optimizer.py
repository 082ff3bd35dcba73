"""What trains and how: a regex mask over parameter paths, masked Optax chains, and the
trainable part of a parameter tree (what checkpoints hold).

Freezing follows big_vision's recipe (`big_vision/optax.py`): `trainable_mask`
turns `TrainOptions.trainable` (regexes over '/'-joined paths such as
`prompt/prompt` or `model/encoder/layers_0/attention/query/kernel`) into a tree
of bools, and `make_optimizer` gives trainable leaves the optimizer and frozen
ones `optax.set_to_zero`, so frozen parameters get neither optimizer state nor
updates. `subset` / `merge` cut the trainable leaves out of a tree and put them
back (a PT checkpoint holds the prompt, not the model).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import optax
from flax import traverse_util

from jaxrobust.training.options import TrainOptions


def trainable_mask(params: Any, patterns: Sequence[str]) -> Any:
    """A tree of Python bools: does the parameter's '/'-joined path match a pattern?

    Raises:
      ValueError: no parameter matches any pattern (the message lists some paths).
    """
    compiled = [re.compile(p) for p in patterns]
    flat = traverse_util.flatten_dict(params, sep="/")
    mask = {k: any(c.fullmatch(k) for c in compiled) for k in flat}
    if not any(mask.values()):
        raise ValueError(
            f"trainable patterns {list(patterns)} match no parameter of {list(flat)[:8]}..."
        )
    return traverse_util.unflatten_dict(mask, sep="/")


def learning_rate_schedule(options: TrainOptions) -> optax.Schedule:
    """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then `decay`: constant,
    or linear / cosine down to 0 at `num_steps`."""
    lr, warm = options.learning_rate, options.warmup_steps
    rest = max(options.num_steps - warm, 1)
    after = {
        "constant": lambda: optax.constant_schedule(lr),
        "linear": lambda: optax.linear_schedule(lr, 0.0, rest),
        "cosine": lambda: optax.cosine_decay_schedule(lr, rest),
    }
    if options.decay not in after:
        raise ValueError(f"decay {options.decay!r}: expected one of {sorted(after)}")
    if not warm:
        return after[options.decay]()
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warm), after[options.decay]()], [warm]
    )


def make_optimizer(options: TrainOptions, mask: Any) -> optax.GradientTransformation:
    """Masked Optax chains: the optimizer on trainable leaves, `set_to_zero` (no state) on
    frozen ones; the schedule of `learning_rate_schedule`; optional clipping."""
    schedule = learning_rate_schedule(options)
    make = {
        "sgd": lambda: optax.sgd(schedule),
        "adam": lambda: optax.adam(schedule),
        "adafactor": lambda: optax.adafactor(schedule),
    }
    if options.optimizer not in make:
        raise ValueError(f"optimizer {options.optimizer!r}: expected one of {sorted(make)}")
    chain = [optax.clip_by_global_norm(options.grad_clip)] if options.grad_clip > 0 else []
    chain.append(make[options.optimizer]())
    labels = jax.tree_util.tree_map(lambda m: "train" if m else "frozen", mask)
    return optax.multi_transform(
        {"train": optax.chain(*chain), "frozen": optax.set_to_zero()}, labels
    )


def subset(tree: Any, mask: Any) -> dict:
    """The leaves of `tree` where `mask` is True, as a nested dict (for checkpoints)."""
    flat = traverse_util.flatten_dict(tree)
    keep = traverse_util.flatten_dict(mask)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if keep[k]})


def merge(tree: Any, part: dict) -> Any:
    """`tree` with the leaves of `part` (from `subset`) put back."""
    flat = traverse_util.flatten_dict(tree)
    flat.update(traverse_util.flatten_dict(part))
    return traverse_util.unflatten_dict(flat)
