"""The options of a training run: the loss terms (`LossOptions`) and what trains and how
(`TrainOptions`).

Frozen dataclasses, one comment per field; `gin_configs/runs/train_prompt.gin`
binds them as `training.LossOptions` and `training.TrainOptions` (the data side,
`training.DataOptions`, lives in `training/data.py`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The loss terms and their weights (`training.losses`)."""

    ce_weight: float = 1.0  # Task cross-entropy (options, or target tokens).
    kl_weight: float = 0.0  # KL(p_original || p_paraphrase); Sun et al.'s lambda.
    rep_weight: float = 0.0  # 1 - cosine of pooled encoder states, original vs paraphrase.
    ce_rows: str = "all"  # CE on 'all' rows or on the 'original' rows only.
    stop_gradient_original: bool = True  # No gradient through the original side of KL/rep.
    average: bool = False  # Option scores: mean per-token log-likelihood instead of the sum.


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
    warmup_steps: int = 0  # Linear warm-up, then constant.
    grad_clip: float = 0.0  # Clip by global norm; 0 = no clipping.
    num_steps: int = 1000
    checkpoint_every: int = 100  # Also at the end.
    keep_checkpoints: int = 2
    log_every: int = 10  # Console line and TensorBoard scalars.
    eval_every: int = 0  # Held-out evaluation; 0 = at the end only.
    model_parallel: int = 1  # Size of the mesh's `model` axis.
    seed: int = 0  # Prompt initialisation.
