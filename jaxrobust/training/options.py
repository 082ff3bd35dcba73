"""The options of a training run: the loss terms (`LossOptions`) and what trains and how
(`TrainOptions`).

Frozen dataclasses, one comment per field; `gin_configs/runs/train_prompt.gin`
binds them as `training.LossOptions` and `training.TrainOptions` (the data side,
`training.DataOptions`, lives in `training/data.py`).

`run_settings` is what a workdir's checkpoints depend on (recorded as
`train_settings.json`); a resume compares it (`settings_difference`) and is
refused when it differs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

OBJECTIVES = ("options", "target")


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The loss terms and their weights (`training.losses`)."""

    ce_weight: float = 1.0  # Task cross-entropy (options, or target tokens).
    kl_weight: float = 0.0  # KL(p_original || p_paraphrase); Sun et al.'s lambda.
    rep_weight: float = 0.0  # 1 - cosine of pooled encoder states, original vs paraphrase.
    ce_rows: str = "all"  # CE on 'all' rows or on the 'original' rows only.
    stop_gradient_original: bool = True  # No gradient through the original side of KL/rep.
    average: bool = False  # Option scores: mean per-token log-likelihood instead of the sum.
    # What the task CE is over: 'options', the answer options' scores (a softmax over
    # them, as rank classification scores); 'target', the gold target's tokens over the
    # whole vocabulary (teacher forcing: T5's and Flan's fine-tuning loss). Tasks without
    # options always use the target. Held-out checks score the options either way.
    objective: str = "options"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"LossOptions.objective {self.objective!r}: expected one of {OBJECTIVES}"
            )


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """What trains, the optimizer, the schedule and the bookkeeping."""

    # Regexes (re.fullmatch) over '/'-joined parameter paths; a match trains.
    # PT: ('prompt/.*',); FT: ('model/.*',); both: ('.*',).
    trainable: tuple[str, ...] = ("prompt/.*",)
    prompt_length: int = 20  # P; 0 = no prompt (plain fine-tuning).
    # 'vocab' (sampled token embeddings), 'text:<words>' (their embeddings), 'file:<x.npy>'.
    prompt_init: str = "vocab"
    prompt_init_population: int | None = 5000  # 'vocab' samples the first rows only.
    optimizer: str = "adam"  # 'sgd', 'adam' or 'adafactor'.
    learning_rate: float = 0.3  # Peak; prompt tuning uses ~0.3, fine-tuning ~1e-4.
    warmup_steps: int = 0  # Linear warm-up to `learning_rate`, then `decay`.
    decay: str = "constant"  # After warm-up: 'constant', 'linear' or 'cosine' (to 0 at num_steps).
    grad_clip: float = 0.0  # Clip by global norm; 0 = no clipping.
    num_steps: int = 1000
    checkpoint_every: int = 100  # Also at the end.
    keep_checkpoints: int = 2
    log_every: int = 10  # Console line and TensorBoard scalars.
    eval_every: int = 0  # Held-out evaluation; 0 = at the end only.
    model_parallel: int = 1  # Size of the mesh's `model` axis.
    seed: int = 0  # Prompt initialisation.


# TrainOptions fields a resumed run may change: bookkeeping, not what is trained.
BOOKKEEPING = (
    "num_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "eval_every",
    "model_parallel",
)
# ModelSpec fields that only label the model (its weights enter as their digest).
LABELS = ("name", "series", "params_b", "observed_collections", "soft_prompt")


def run_settings(model: Any, loss: LossOptions, options: TrainOptions, digest: str | None) -> dict:
    """What a workdir's checkpoints depend on, besides the data (`template_split.json`),
    as JSON reads it back: the `ModelSpec` `model` but its labels, the base weights'
    content digest, the loss and the training options but their bookkeeping."""
    return json.loads(
        json.dumps(
            {
                "model": {k: v for k, v in dataclasses.asdict(model).items() if k not in LABELS},
                "weights_digest": digest,
                "loss": dataclasses.asdict(loss),
                "train": {
                    k: v for k, v in dataclasses.asdict(options).items() if k not in BOOKKEEPING
                },
            }
        )
    )


def settings_difference(there: dict, here: dict, with_weights: bool) -> list[str]:
    """'group.field: x there, y here' for each setting that differs between two
    `run_settings`; the weights' digest only when `with_weights`."""
    differ = []
    for group in ("model", "loss", "train"):
        a, b = there.get(group, {}), here[group]
        differ += [
            f"{group}.{k}: {a.get(k)!r} there, {b.get(k)!r} here"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    if with_weights and there.get("weights_digest") != here["weights_digest"]:
        differ.append(
            f"weights_digest: {there.get('weights_digest')!r} there, "
            f"{here['weights_digest']!r} here"
        )
    return differ
