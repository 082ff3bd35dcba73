"""The robustness evaluation runner: models x tasks -> per-example record files.

`run` scores every (model, task) pair, where a task is one data set under one
instruction template (`jr:<dataset>:<format>:<template>`; mixtures expand to
their tasks), and writes one JSONL file per pair:

    <output_dir>/records/<model>/<task with ':' as '__'>.jsonl
    <output_dir>/records/<model>/model.json      the ModelSpec (report reads it)
    <output_dir>/runs/run-<UTC time>-<pid>.json  one per run: model, checkpoint,
        package version, git commit, gin config, data fingerprints, per-file status

where <model> is the model name with '/' as '__' (`records.model_dirname`).

Each record file is brought to completion by `resume.evaluate_file`, which
skips, resumes, recomputes or refuses it (see there); `options.file_header` is
what a file's header records about the run.

A sampled design (`EvalOptions.design_budget`) scores only the cells
`sampled_design` draws: each file then holds its template's sampled examples.

Before anything is loaded or written, `run` checks what it can: the options
(`EvalOptions`), the batch size against the mesh, that every task has
examples, the output folder's lock (one run at a time, `guards.writer_lock`)
and, per model name, that the folder holds no run with other settings
(`guards.check_identity`); the weights' content digest is checked as soon as
they have loaded, before that model's first file is written. A refused run
leaves the folder as it was.

Multi-host: every process reads the task's examples (they are cheap; every
process checks the data fingerprints agree) and runs the engine on its share of
each chunk (`distributed.host_share`: SeqIO's `ShardInfo(index=process_index,
num_shards=process_count)` interleaving, per chunk). The engine pads the short
host with dummy batches, so all processes run the same steps with the same
shapes. Process 0 gathers the shares back into chunk order and is the only
writer of record files and run metadata; resume decisions are made by process
0 and broadcast. The records do not depend on the process count: a 2-host run's
files are byte-equal to a 1-host run's on the same mesh (tests/test_multihost.py).

`output_dir` (and soft-prompt files) may be `gs://` paths: files go through
`etils.epath`, as SeqIO's and Orbax's do (see `storage/files.py` for what
atomic means on an object store).

Gin never appears here: `gin_configs/runs/eval.gin` binds `run`, `ModelSpec`
and `EvalOptions` through dynamic registration, and `jaxrobust.main` calls it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import importlib.metadata
import logging
import os
import pathlib
import re
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from etils import epath

from jaxrobust.analysis.metrics import INVALID_LABEL
from jaxrobust.data import tuning
from jaxrobust.evaluation import examples as examples_lib
from jaxrobust.evaluation import guards, resume
from jaxrobust.evaluation import options as options_lib
from jaxrobust.evaluation.options import EvalOptions
from jaxrobust.inference.loading import ModelSpec
from jaxrobust.models import prompts
from jaxrobust.parallel import distributed
from jaxrobust.storage import files, records

RUNS_DIR = "runs"
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------


def build_engine(spec: ModelSpec, options: EvalOptions):
    """The engine on the model `spec` names (`inference.load_model`), sized by `options`,
    and the weights' content digest (`LoadedModel.weights_digest`)."""
    from jaxrobust import inference

    model = inference.load_model(spec, make_mesh(options))
    engine = model.engine(batch_size=options.batch_size, max_input_len=options.max_input_len)
    return engine, model.weights_digest


def make_mesh(options: EvalOptions):
    """The evaluation mesh; its data axis must divide the batch (checked here, before a
    model loads, naming the settings)."""
    import jax

    from jaxrobust.parallel import partitioning

    devices = jax.device_count()
    if devices % options.model_parallel:
        raise ValueError(
            f"MODEL_PARALLEL={options.model_parallel} does not divide the {devices} devices"
        )
    data, processes = devices // options.model_parallel, jax.process_count()
    if options.batch_size % data or options.batch_size % processes:
        raise ValueError(
            f"BATCH_SIZE={options.batch_size} must be a multiple of the mesh's data axis "
            f"({data} = {devices} devices / MODEL_PARALLEL {options.model_parallel}) and of "
            f"the process count ({processes})"
        )
    return partitioning.make_mesh(data=-1, model=options.model_parallel)


def load_soft_prompt(spec: ModelSpec) -> tuple[np.ndarray | None, str]:
    """The spec's prefix embeddings `[P, D]` and their file's SHA-256 ('' when none)."""
    if not spec.soft_prompt:
        return None, ""
    return prompts.read_prompt(spec.soft_prompt)


# ---------------------------------------------------------------------------
# Scoring one chunk.
# ---------------------------------------------------------------------------


def _to_record(ex: dict, result) -> dict:
    pred = int(result.prediction)
    labels = ex["option_labels"]
    predicted_label = labels[pred] if 0 <= pred < len(labels) else INVALID_LABEL
    return {
        "example_id": ex["example_id"],
        "template_id": ex["template_id"],
        "provenance": ex["provenance"],
        "options": ex["options"],
        "option_labels": labels,
        "scores": [float(s) for s in result.scores],
        "prediction": pred,
        "predicted_label": predicted_label,
        "gold_index": int(ex["answer_index"]),
        "gold_label": ex["label"],
        "negative_label": ex["negative_label"],
        "correct": predicted_label == ex["label"],
        "truncated": bool(result.truncated),
        "protected_cut": bool(result.protected_cut),
        "generated": result.generated,
    }


def make_scorer(
    engine, options: EvalOptions, soft_prompt: np.ndarray | None = None
) -> Callable[[list[dict]], tuple[list[dict], np.ndarray | None]]:
    """chunk of examples -> (records, pooled-state sum or None); a collective call."""
    # The engine wraps inputs in the model's prompt format (`build_engine`).
    kwargs: dict[str, Any] = {"mode": options.mode, "average": options.average}
    if soft_prompt is not None:
        kwargs["prefix_embeddings"] = soft_prompt
    rank, count = distributed.process()

    def score(chunk: list[dict]) -> tuple[list[dict], np.ndarray | None]:
        # Per-host input sharding: each process scores its share (the engine
        # pads the short host with dummy batches, so all run the same steps with
        # the same shapes), and the shares are gathered back into chunk order.
        mine = distributed.host_share(chunk, rank, count)
        inputs = [examples_lib.model_input(ex) for ex in mine]
        for ex in mine:
            if not ex["options"]:
                raise ValueError(
                    f"template {ex['template_id']!r} ({ex['dataset']}) renders no answer "
                    f"options for example {ex['example_id']!r}; rank classification needs them"
                )
        try:
            results = engine.rank_classify(inputs, [ex["options"] for ex in mine], **kwargs)
        except ValueError as e:
            # The engine counts this host's share ("example 3: ..."); name the example.
            m = re.match(r"example (\d+): (.*)", str(e), re.S)
            if not m or int(m[1]) >= len(mine):
                raise
            ex = mine[int(m[1])]
            raise ValueError(
                f"template {ex['template_id']!r} ({ex['dataset']}), example "
                f"{ex['example_id']!r}: {m[2]}"
            ) from e
        local = [_to_record(ex, r) for ex, r in zip(mine, results, strict=True)]
        pooled = None
        if options.record_pooled:
            # Per-example states summed in chunk order: the same float64 sum
            # whatever the process count.
            kind = "first_step" if options.record_pooled == "decoder_first" else "pool"
            states = engine.pooled_encoder_states(inputs, kind)  # [n_local, D] float32
            rows = distributed.gather_rows(states, -(-options.chunk_size // count))
            pooled = np.asarray(distributed.interleave(rows), np.float64).sum(0)
        return distributed.interleave(distributed.gather_json([local])), pooled

    return score


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


def _git_commit() -> str:
    here = pathlib.Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(
    models: Sequence[ModelSpec],
    mixtures: Sequence[str],
    output_dir: str,
    options: EvalOptions = EvalOptions(),
    task_modules: Sequence[str] = ("jaxrobust.tasks",),
    gin_config: str = "",
    prefix_embeddings: np.ndarray | None = None,
) -> dict[str, dict[str, str]]:
    """Evaluates every model on every task of `mixtures`; see the module docstring.

    Args:
      models: what to evaluate.
      mixtures: task and mixture names (`jr:semeval:re#unobserved`, ...).
      output_dir: where `records/` and `runs/` go.
      options: reading and scoring options.
      task_modules: modules imported first; they register the tasks.
      gin_config: the operative gin config, stored in the run metadata.
      prefix_embeddings: a learned soft prompt `[P, D]` prefixed to every
        model's input embeddings (overrides `ModelSpec.soft_prompt`); its hash
        enters the record headers, so name such a model apart (`flan-t5-xl+sp`).

    Returns:
      model name -> task -> 'skipped' / 'resumed' / 'written'.

    Raises:
      ValueError: a setting out of range, a task without examples.
      files.LockedError: another run holds the output folder.
      guards.RunIdentityError: the folder holds a model name evaluated otherwise.
      guards.NonFiniteScoreError: a NaN or infinite score.
    """
    # The models' own collections first, so their banks' observed:<name> loads.
    tuning.declare_names([c for m in models for c in m.observed_collections])
    for module in task_modules:
        importlib.import_module(module)
    out = epath.Path(output_dir)
    make_mesh(options)  # The batch against the mesh, before anything loads.
    tasks = examples_lib.resolve_tasks(mixtures)
    splits = {t: examples_lib.task_split(t, options) for t in tasks}
    examples = {t: examples_lib.task_examples(t, options) for t in tasks}
    examples_lib.check_not_empty(examples, splits, options)
    fingerprints = {t: examples_lib.data_fingerprint(ex) for t, ex in examples.items()}
    examples_lib.check_same_data(fingerprints)
    examples, grids = sampled_design(tasks, splits, examples, options)
    rank, count = distributed.process()
    log.info(
        "%d tasks, %d examples each for %d models; process %d of %d scores its share",
        len(tasks),
        max(len(ex) for ex in examples.values()),
        len(models),
        rank,
        count,
    )
    with guards.writer_lock(out, "eval"):
        return _run_locked(
            models,
            tasks,
            splits,
            examples,
            fingerprints,
            out,
            options,
            gin_config,
            prefix_embeddings,
            grids,
        )


def _soft_prompt(spec: ModelSpec, prefix_embeddings: np.ndarray | None):
    if prefix_embeddings is None:
        return load_soft_prompt(spec)
    raw = np.ascontiguousarray(prefix_embeddings, np.float32).tobytes()
    return np.asarray(prefix_embeddings), hashlib.sha256(raw).hexdigest()


def _wanted(config: dict, splits: dict[str, str], options: EvalOptions) -> Callable[[str], dict]:
    """task -> the config this run gives a file of that task (for `guards.check_identity`):
    its resolved split; no weights digest (not loaded yet)."""
    from jaxrobust.tasks import registry

    base = {k: v for k, v in config.items() if k not in ("split", "weights_digest")}
    base.setdefault("design", _FullGrid())  # A full run is refused a sampled run's folder.

    def wanted(task: str) -> dict:
        if task in splits:
            return {**base, "split": splits[task]}
        try:  # A task of an earlier run: compare the split this run would use for it.
            return {**base, "split": registry.split_for(task, options.split)}
        except (KeyError, ValueError):
            return base

    return wanted


class _FullGrid:
    """A full run's ``design`` for `guards.check_identity`: equal to a header without one."""

    def __eq__(self, other) -> bool:
        return other is guards._ABSENT or isinstance(other, _FullGrid)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return "None (the full grid)"


def sampled_design(
    tasks: Sequence[str],
    splits: dict[str, str],
    examples: dict[str, list[dict]],
    options: EvalOptions,
) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """The examples each task scores under `options`' design, and each task's grid.

    A full run (``design_budget`` None) keeps every example and has no grids. A
    sampled run draws, per data set grid (the tasks of one data set, split and
    example list, templates in name order), `design.sample_cells` at the budget
    and seed; each task keeps its sampled examples in their order.
    """
    if options.design_budget is None:
        return examples, {}
    from jaxrobust.evaluation import design

    grids: dict[tuple, list[str]] = {}
    for t in sorted(tasks):
        ex = examples[t]
        key = (ex[0]["dataset"], splits[t], tuple(str(e["example_id"]) for e in ex))
        grids.setdefault(key, []).append(t)
    kept, shapes = dict(examples), {}
    for (_, _, ids), members in grids.items():
        mask = design.sample_cells(
            len(members), len(ids), options.design_budget, options.design_seed
        )
        shape = {"templates": len(members), "examples": len(ids), "cells": int(mask.sum())}
        for row, t in enumerate(members):
            kept[t] = [examples[t][i] for i in design.cells_of(mask, row)]
            shapes[t] = shape
    return kept, shapes


def _run_locked(
    models, tasks, splits, examples, fingerprints, out, options, gin_config, prefix, grids
):
    writer0 = distributed.is_writer()
    # ------------------------------------------------ every model's identity, up front
    plans = []
    for spec in models:
        soft, sha = _soft_prompt(spec, prefix)
        config = options_lib.result_config(spec, options, sha)
        model_dir = records.model_dir(out, spec.name)

        def check(spec=spec, config=config, model_dir=model_dir) -> str | None:
            held = guards.held_headers(model_dir)
            guards.check_identity(spec.name, model_dir, held, _wanted(config, splits, options))
            guards.check_model_json(model_dir / "model.json", dataclasses.asdict(spec), bool(held))
            return guards.held_weights(spec.name, model_dir, held)

        held_digest = guards.from_writer(guards.on_writer(check))
        plans.append((spec, soft, config, model_dir, held_digest))

    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {
        "started": started.isoformat(),
        "package_version": importlib.metadata.version("jaxrobust"),
        "git_commit": _git_commit(),
        "gin_config": gin_config,
        "options": dataclasses.asdict(options),
        "splits": splits,
        "data_fingerprints": fingerprints,
        "models": {},
    }
    run_path = out / RUNS_DIR / f"run-{started:%Y%m%dT%H%M%S}-{os.getpid()}.json"
    statuses: dict[str, dict[str, str]] = {}
    total = sum(len(ex) for ex in examples.values()) * len(models)
    progress = resume.Progress(total, enabled=options.progress and writer0)
    for spec, soft, config, model_dir, held_digest in plans:

        def header(task: str, digest: str | None, config=config) -> dict:
            per_task = {**config, "split": splits[task], "weights_digest": digest}
            return options_lib.file_header(
                task, examples[task], fingerprints[task], per_task, grids.get(task)
            )

        paths = {t: records.records_path(out, spec.name, t) for t in tasks}
        # Complete files are found without loading the model: the weights they name are
        # the folder's (every held file names the same; `guards.check_identity`).
        done = held_digest is not None and all(
            resume.is_complete(paths[t], header(t, held_digest)) for t in tasks
        )
        digest, score = held_digest, None
        if not done:
            engine, digest = build_engine(spec, options)
            # Every process knows both digests: all refuse together.
            guards.check_weights(spec.name, model_dir, held_digest, digest)
            score = make_scorer(engine, options, soft)
        # ------------------------------------------- accepted: the first writes
        meta["models"][spec.name] = {
            "spec": dataclasses.asdict(spec),
            "result_config": {**config, "weights_digest": digest},
        }
        if writer0:
            spec_json = dataclasses.asdict(spec)
            if guards.check_model_json(model_dir / "model.json", spec_json, has_records=False):
                files.write_json(model_dir / "model.json", spec_json)
            files.write_json(run_path, meta)
        statuses[spec.name] = {}
        for task in tasks:
            statuses[spec.name][task] = resume.evaluate_file(
                paths[task],
                header(task, digest),
                examples[task],
                score or _unreachable,
                options.chunk_size,
                progress,
            )
        meta["models"][spec.name]["files"] = statuses[spec.name]
        if writer0:
            files.write_json(run_path, meta)
    progress.close()
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    if writer0:
        files.write_json(run_path, meta)
    return statuses


def _unreachable(chunk: list[dict]):
    raise AssertionError("a complete file was about to be scored")
