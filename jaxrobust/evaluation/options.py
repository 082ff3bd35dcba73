"""How an evaluation reads and scores tasks (`EvalOptions`), and what a record file's header
says about the run that made it (`result_config`, `file_header`).

A re-run compares a finished file's header with the one it would write: equal
headers mean the file is this run's (skip it), different ones that it was made
with other settings (refuse it). So every field that changes a record's
contents enters the header, and none that does not (batch size, chunk size,
model parallelism, progress: records are equal whatever they are). The
weights enter by content (`weights_digest`), not only by path, so new weights
copied over a checkpoint directory are another run; the split enters as each
task's resolved split.

Every option is checked when it is made (`EvalOptions.__post_init__`), so a
bad setting stops the run before anything loads, naming the setting and its
allowed values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jaxrobust.inference.loading import ModelSpec
from jaxrobust.storage import records

MODES = ("standard", "sun", "ni", "ni_free")


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How tasks are read and scored; the result-changing fields enter each file's header."""

    # Split of every task; None = each data set's standard evaluation split
    # (`tasks.registry.split_for`: SemEval test, BoolQ validation, ...).
    split: str | None = None
    limit: int | None = None  # First `limit` examples of each task; None = all.
    render_seed: int = 0  # Seed of templates' random choices (tasks.examples).
    mode: str = "standard"  # Engine.rank_classify mode: 'standard', 'sun', 'ni', 'ni_free'.
    average: bool = False  # 'standard' mode: mean per-token log-likelihood.
    batch_size: int = 32  # Global rows per engine step.
    max_input_len: int = 512  # Encoder tokens; longer inputs are truncated (and flagged).
    model_parallel: int = 1  # Size of the mesh's `model` axis.
    chunk_size: int = 256  # Examples per committed chunk (the resume granularity).
    # Also store per-chunk sums of a representation per example: True = the mean
    # encoder state, 'decoder_first' = the decoder state at the first generation
    # step (Sun et al.; T5 family); False = none.
    record_pooled: bool | str = False
    # Demonstrations before each input (Sun et al.'s one-shot experiment): 0 or 1. The
    # demonstration is rendered with the same template, drawn (seeded by render_seed)
    # from the data set's train split, else from the evaluated split, whose example
    # is then left out of scoring (`examples.with_demonstration`).
    shots: int = 0
    progress: bool = True  # Progress line with ETA on stderr (process 0).
    # Sampled design (`evaluation.design.sample_cells`): score only this share of each
    # data set's template x example grid, every template and example at least once;
    # None = the full grid. Budget and seed enter the headers (a run's identity).
    design_budget: float | None = None
    design_seed: int = 0  # Which cells a sampled design scores.

    def __post_init__(self):
        def at_least(name: str, low: int, none_means: str = "") -> None:
            value = getattr(self, name)
            if value is None and none_means:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                allowed = f"an integer >= {low}" + (
                    f", or None ({none_means})" if none_means else ""
                )
                raise ValueError(
                    f"EvalOptions.{name}={value!r}: expected {allowed} (gin: {name.upper()})"
                )

        at_least("limit", 1, "every example")
        for name in ("batch_size", "max_input_len", "model_parallel", "chunk_size"):
            at_least(name, 1)
        if self.mode not in MODES:
            raise ValueError(f"EvalOptions.mode={self.mode!r}: expected one of {MODES} (gin: MODE)")
        if self.shots not in (0, 1) or isinstance(self.shots, bool):
            raise ValueError(f"EvalOptions.shots={self.shots!r}: expected 0 or 1 (gin: SHOTS)")
        if self.record_pooled not in (False, True, "decoder_first"):
            raise ValueError(
                f"EvalOptions.record_pooled={self.record_pooled!r}: expected False, True (mean "
                "encoder state) or 'decoder_first' (gin: RECORD_POOLED)"
            )
        budget = self.design_budget
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 1
        ):
            raise ValueError(
                f"EvalOptions.design_budget={budget!r}: expected a share of the grid in (0, 1], "
                "or None for the full grid (gin: DESIGN_BUDGET)"
            )
        at_least("design_seed", 0)
        if self.split is not None and (not isinstance(self.split, str) or not self.split):
            raise ValueError(
                f"EvalOptions.split={self.split!r}: expected a split name, or None for each "
                "data set's standard evaluation split (gin: SPLIT)"
            )


def result_config(
    model: ModelSpec, options: EvalOptions, prompt_sha: str, weights_digest: str | None = None
) -> dict:
    """The settings a record file's contents depend on (compared on re-runs).

    `split` is the option as given; a file's header holds its task's resolved
    split (`runner.run`). `weights_digest` is the loaded weights' content digest,
    None until they are loaded.
    """
    return {
        "model": model.name,
        "family": model.family,
        "preset": model.preset,
        "checkpoint": model.checkpoint,
        "tokenizer": model.tokenizer,
        "prompt_format": model.prompt_format,
        "seed": model.seed if not model.checkpoint else None,
        "dtype": model.dtype,
        "soft_prompt_sha256": prompt_sha,
        "split": options.split,
        "limit": options.limit,
        "render_seed": options.render_seed,
        "mode": options.mode,
        "average": options.average,
        "max_input_len": options.max_input_len,
        "record_pooled": options.record_pooled,
        "weights_digest": weights_digest,
        **({"shots": options.shots} if options.shots else {}),  # Zero-shot headers as before.
        **({"design": design(options)} if options.design_budget is not None else {}),
    }


def design(options: EvalOptions) -> dict | None:
    """A sampled design's identity in headers: ``{"budget", "seed"}``; None = the full grid."""
    if options.design_budget is None:
        return None
    return {"budget": float(options.design_budget), "seed": options.design_seed}


def file_header(
    task: str,
    examples: Sequence[dict],
    data_fingerprint: str,
    config: dict,
    grid: dict | None = None,
) -> dict:
    """The header line of a task's record file (`storage/records.py` documents the format).

    Args:
      task: the registered task name, `jr:<dataset>:<format>:<template>`.
      examples: the task's examples in order (`examples.task_examples`).
      data_fingerprint: `examples.data_fingerprint(examples)`.
      config: `result_config(...)` of the model and options.
      grid: a sampled design's grid of this task's data set (``templates``,
        ``examples``, ``cells`` scored in all); None (and no ``grid`` key) for a
        full run. `examples` then holds only this template's sampled examples.

    A format variant's header also names its ``parent`` description and the
    ``rules`` it applied (`jaxrobust.data.formats`); other headers are unchanged.
    """
    from jaxrobust.tasks import registry

    template = registry.REGISTERED[task][1] if task in registry.REGISTERED else None
    variant = {"parent": template.parent, "rules": list(template.rules)} if template else {}
    return {
        "kind": "header",
        "format_version": records.FORMAT_VERSION,
        "schema_version": records.SCHEMA_VERSION,
        "task": task,
        "template_id": examples[0]["template_id"],
        "provenance": examples[0]["provenance"],
        "dataset": examples[0]["dataset"],
        "format": task.split(":")[2],
        "n_examples": len(examples),
        "data_fingerprint": data_fingerprint,
        "config": config,
        **(variant if variant.get("parent") else {}),
        **({"grid": grid} if grid else {}),
    }
