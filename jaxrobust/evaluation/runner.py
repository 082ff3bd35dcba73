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
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from etils import epath

from jaxrobust.analysis.metrics import INVALID_LABEL
from jaxrobust.evaluation import examples as examples_lib
from jaxrobust.evaluation import options as options_lib
from jaxrobust.evaluation import resume
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
    """The engine on the model `spec` names (`inference.load_model`), sized by `options`."""
    from jaxrobust import inference
    from jaxrobust.parallel import partitioning

    mesh = partitioning.make_mesh(data=-1, model=options.model_parallel)
    return inference.load_model(spec, mesh).engine(
        batch_size=options.batch_size, max_input_len=options.max_input_len
    )


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
        inputs = [ex["inputs"] for ex in mine]
        for ex in mine:
            if not ex["options"]:
                raise ValueError(
                    f"template {ex['template_id']!r} ({ex['dataset']}) renders no answer "
                    "options; rank classification needs them"
                )
        results = engine.rank_classify(inputs, [ex["options"] for ex in mine], **kwargs)
        local = [_to_record(ex, r) for ex, r in zip(mine, results, strict=True)]
        pooled = None
        if options.record_pooled:
            # Per-example states summed in chunk order: the same float64 sum
            # whatever the process count.
            states = engine.pooled_encoder_states(inputs)  # [n_local, D] float32
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
    """
    for module in task_modules:
        importlib.import_module(module)
    out = epath.Path(output_dir)
    tasks = examples_lib.resolve_tasks(mixtures)
    examples = {t: examples_lib.task_examples(t, options) for t in tasks}
    fingerprints = {t: examples_lib.data_fingerprint(ex) for t, ex in examples.items()}
    examples_lib.check_same_data(fingerprints)
    rank, count = distributed.process()
    log.info(
        "%d tasks, %d examples each for %d models; process %d of %d scores its share",
        len(tasks),
        max(len(ex) for ex in examples.values()),
        len(models),
        rank,
        count,
    )
    writer0 = distributed.is_writer()
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {
        "started": started.isoformat(),
        "package_version": importlib.metadata.version("jaxrobust"),
        "git_commit": _git_commit(),
        "gin_config": gin_config,
        "options": dataclasses.asdict(options),
        "data_fingerprints": fingerprints,
        "models": {},
    }
    run_path = out / RUNS_DIR / f"run-{started:%Y%m%dT%H%M%S}-{os.getpid()}.json"
    statuses: dict[str, dict[str, str]] = {}
    total = sum(len(ex) for ex in examples.values()) * len(models)
    progress = resume.Progress(total, enabled=options.progress and writer0)
    for spec in models:
        if prefix_embeddings is not None:
            soft, sha = (
                np.asarray(prefix_embeddings),
                hashlib.sha256(
                    np.ascontiguousarray(prefix_embeddings, np.float32).tobytes()
                ).hexdigest(),
            )
        else:
            soft, sha = load_soft_prompt(spec)
        config = options_lib.result_config(spec, options, sha)
        meta["models"][spec.name] = {"spec": dataclasses.asdict(spec), "result_config": config}
        if writer0:
            files.write_json(
                records.model_dir(out, spec.name) / "model.json", dataclasses.asdict(spec)
            )
            files.write_json(run_path, meta)
        engine, score = None, None
        statuses[spec.name] = {}
        for task in tasks:
            ex = examples[task]
            if not ex:
                raise ValueError(f"task {task!r} has no examples in split {options.split!r}")
            header = options_lib.file_header(task, ex, fingerprints[task], config)
            path = records.records_path(out, spec.name, task)
            if engine is None and not resume.is_complete(path, header):
                engine = build_engine(spec, options)  # Only when something is left to do.
                score = make_scorer(engine, options, soft)
            statuses[spec.name][task] = resume.evaluate_file(
                path, header, ex, score or _unreachable, options.chunk_size, progress
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
