"""The robustness evaluation runner: models x tasks -> per-example record files.

`run` scores every (model, task) pair, where a task is one data set under one
instruction template (`jr:<dataset>:<format>:<template>`; mixtures expand to
their tasks), and writes one JSONL file per pair:

    <output_dir>/records/<model>/<task with ':' as '__'>.jsonl
    <output_dir>/records/<model>/model.json      the ModelSpec (report reads it)
    <output_dir>/runs/run-<UTC time>-<pid>.json  one per run: model, checkpoint,
        package version, git commit, gin config, data fingerprints, per-file status

A record file is a header line, record lines, a `chunk` line after every
committed chunk of examples, and a footer holding the record count and the
SHA-256 of every byte before it. It is written as `<file>.partial` (appended and
fsynced one chunk at a time) and renamed onto its final name only once the
footer is in, so a final name never holds a partial file. A re-run:

* skips a complete file whose header matches this run (never opens it for
  writing, so its inode and mtime stay);
* finishes a `.partial` from its last committed chunk. Chunks are fixed slices
  of the example list, each scored by one engine call, so a resumed file is
  byte-identical to an uninterrupted run's;
* recomputes a final file that fails its checks (bad JSON, missing footer,
  checksum or count mismatch), after logging a `records.RecordsError` that names
  it;
  the bad file is kept beside it as `<file>.corrupt`;
* refuses (`records.RecordsError`) a complete file made with a different configuration
  (checkpoint, split, scoring mode, data): use a new output directory.

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
import io
import logging
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from etils import epath

from jaxrobust.analysis.metrics import INVALID_LABEL
from jaxrobust.parallel import distributed
from jaxrobust.storage import files, records

RUNS_DIR = "runs"
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Options.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate; gin binds one per `gin_configs/models/*.gin`."""

    name: str  # Label in paths, records and report rows, e.g. 'flan-t5-xl'.
    family: str = "t5"  # Architecture: 't5' or 'llama'.
    preset: str = ""  # Preset (models/t5_config.py, llama_config.py); random-weight shapes.
    checkpoint: str = ""  # HF directory; '' = random weights of `preset` (tests, demos).
    tokenizer: str = ""  # '' = the checkpoint's; 'byte' = ByteTokenizer; else an HF dir.
    prompt_format: str = "none"  # prompt_formats name wrapping each input (LLaMA family).
    series: str = ""  # Size-curve grouping, e.g. 'flan-t5'; '' = no curve.
    params_b: float = 0.0  # Parameters in billions (x axis of the size curve).
    # Collections whose observed:<c> templates it was tuned on; "*" = any, () = none.
    observed_collections: tuple[str, ...] = ("*",)
    soft_prompt: str = ""  # .npy file of learned prefix embeddings [P, D]; '' = none.
    seed: int = 0  # Random-weight init seed (no checkpoint).
    dtype: str = "float32"  # Parameter dtype on device ('float32' or 'bfloat16').


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How tasks are read and scored; the result-changing fields enter each file's header."""

    split: str = "test"  # Split of every task.
    limit: int | None = None  # First `limit` examples of each task; None = all.
    render_seed: int = 0  # Seed of templates' random choices (tasks.examples).
    mode: str = "standard"  # Engine.rank_classify mode: 'standard', 'sun' or 'ni'.
    average: bool = False  # 'standard' mode: mean per-token log-likelihood.
    batch_size: int = 32  # Global rows per engine step.
    max_input_len: int = 512  # Encoder tokens; longer inputs are truncated (and flagged).
    model_parallel: int = 1  # Size of the mesh's `model` axis.
    chunk_size: int = 256  # Examples per committed chunk (the resume granularity).
    record_pooled: bool = False  # Also store per-chunk sums of pooled encoder states.
    progress: bool = True  # Progress line with ETA on stderr (process 0).


def result_config(model: ModelSpec, options: EvalOptions, prompt_sha: str) -> dict:
    """The settings a record file's contents depend on (compared on re-runs)."""
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
    }


# ---------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------


def _tokenizer(spec: ModelSpec):
    from jaxrobust.inference import tokenizer

    if spec.tokenizer == "byte":
        return tokenizer.ByteTokenizer()
    directory = spec.tokenizer or spec.checkpoint
    if not directory:
        raise ValueError(
            f"model {spec.name!r}: random weights need ModelSpec.tokenizer ('byte' or an "
            "HF tokenizer directory)"
        )
    return tokenizer.HFTokenizer(directory)


def build_engine(spec: ModelSpec, options: EvalOptions):
    """Loads (or randomly initialises) a model into an `inference.Engine`."""
    import jax
    import jax.numpy as jnp

    from jaxrobust import checkpoints, inference
    from jaxrobust.models import llama, llama_config, t5, t5_config
    from jaxrobust.parallel import partitioning

    if spec.family not in ("t5", "llama"):
        raise ValueError(f"model {spec.name!r}: unknown family {spec.family!r} (t5 or llama)")
    lib = {"t5": t5, "llama": llama}[spec.family]
    config_lib = {"t5": t5_config, "llama": llama_config}[spec.family]
    tok = _tokenizer(spec)
    mesh = partitioning.make_mesh(data=-1, model=options.model_parallel)
    rules = partitioning.standard_logical_axis_rules()
    dtype = jnp.dtype(spec.dtype)
    if spec.checkpoint:
        config = config_lib.from_hf_config(checkpoints.read_hf_config(spec.checkpoint))
    else:
        config = config_lib.get_preset(spec.preset or "tiny", vocab_size=tok.vocab_size)
    # Axes the mesh does not divide (a 32001-row vocabulary, the byte tokenizer's
    # 259) are replicated.
    rules = partitioning.fit_rules_to_dims(rules, mesh, lib.logical_dims(config))
    if spec.checkpoint:
        shardings = partitioning.logical_to_shardings(lib.param_logical_axes(config), mesh, rules)
        load = {"t5": checkpoints.load_hf_t5, "llama": checkpoints.load_hf_llama}[spec.family]
        config, params = load(spec.checkpoint, shardings=shardings, dtype=dtype, config=config)
    else:
        if spec.family == "t5":
            variables = t5.T5(config).init(jax.random.PRNGKey(spec.seed), *t5.dummy_inputs())
        else:
            variables = llama.init_fn(config)(jax.random.PRNGKey(spec.seed))
        params = jax.tree_util.tree_map(
            lambda x: (x.value if hasattr(x, "value") else x).astype(dtype),
            variables["params"],
            is_leaf=lambda x: hasattr(x, "value"),
        )
    return inference.Engine(
        config,
        params,
        tok,
        mesh=mesh,
        rules=rules,
        batch_size=options.batch_size,
        max_input_len=options.max_input_len,
        prompt_format=spec.prompt_format,
    )


def load_soft_prompt(spec: ModelSpec) -> tuple[np.ndarray | None, str]:
    """The spec's prefix embeddings `[P, D]` and their SHA-256 ('' when none)."""
    if not spec.soft_prompt:
        return None, ""
    raw = epath.Path(spec.soft_prompt).read_bytes()
    prompt = np.load(io.BytesIO(raw))
    if prompt.ndim != 2:
        raise ValueError(
            f"{spec.soft_prompt}: expected [P, D] prefix embeddings, got {prompt.shape}"
        )
    return prompt, hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------------
# Tasks.
# ---------------------------------------------------------------------------


def resolve_tasks(names: Iterable[str]) -> list[str]:
    """Expands mixtures into their tasks (order kept, duplicates dropped)."""
    import difflib

    import seqio

    from jaxrobust.tasks import registry

    out: list[str] = []
    for name in names:
        if name in registry.REGISTERED:
            found = [name]
        elif name in seqio.MixtureRegistry.names():
            found = [t.name for t in seqio.get_mixture_or_task(name).tasks]
        else:
            known = list(registry.REGISTERED) + list(seqio.MixtureRegistry.names())
            close = difflib.get_close_matches(name, known, n=5)
            raise KeyError(f"no task or mixture {name!r}; close names: {close}")
        missing = [t for t in found if t not in registry.REGISTERED]
        if missing:
            raise KeyError(f"{name!r}: tasks {missing[:5]} were not registered by jaxrobust.tasks")
        out += [t for t in found if t not in out]
    return out


def task_examples(task: str, options: EvalOptions) -> list[dict]:
    from jaxrobust.tasks import registry

    spec, template = registry.REGISTERED[task]
    return list(
        registry.examples(
            spec, template, options.split, limit=options.limit, seed=options.render_seed
        )
    )


def data_fingerprint(examples: Sequence[dict]) -> str:
    """SHA-256 of the examples' text features (what the model sees and is scored on)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(
            records.line(
                {
                    k: ex[k]
                    for k in (
                        "example_id",
                        "inputs",
                        "options",
                        "option_labels",
                        "label",
                        "answer_index",
                    )
                }
            )
        )
    return h.hexdigest()


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
    engine, spec: ModelSpec, options: EvalOptions, soft_prompt: np.ndarray | None = None
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
# Progress.
# ---------------------------------------------------------------------------


class Progress:
    """A one-line progress bar with rate and ETA on stderr."""

    def __init__(self, total: int, enabled: bool = True, every_s: float = 0.5):
        self.total, self.done, self.enabled, self.every_s = total, 0, enabled, every_s
        self.start, self.last = time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()

    def update(self, n: int, label: str) -> None:
        self.done += n
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every_s and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} examples "
            f"{rate:.1f}/s ETA {datetime.timedelta(seconds=round(eta)) if eta < 1e9 else '?'} "
            f"{label}"
        )
        sys.stderr.write(("\r" + line[:160].ljust(160)) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


# ---------------------------------------------------------------------------
# One file.
# ---------------------------------------------------------------------------


def evaluate_file(
    path: epath.Path,
    header: dict,
    examples: list[dict],
    score: Callable[[list[dict]], tuple[list[dict], np.ndarray | None]],
    chunk_size: int,
    progress: Progress | None = None,
) -> str:
    """Brings one record file to completion; returns 'skipped', 'resumed' or 'written'.

    Collective: every process calls it with the same arguments; process 0 alone
    touches the file system.
    """
    writer0 = distributed.process()[0] == 0
    status = 0  # 0: compute, 1: complete already.
    if writer0 and path.exists():
        try:
            existing = records.read_records(path)
        except records.RecordsError as e:
            log.error("%s; recomputing it (the bad file is kept as %s.corrupt)", e, path.name)
            path.replace(path.with_name(path.name + ".corrupt"))
        else:
            if existing.header != header:
                diff = sorted(
                    k
                    for k in set(header) | set(existing.header)
                    if header.get(k) != existing.header.get(k)
                )
                raise records.RecordsError(
                    path,
                    f"complete, but made with other settings ({', '.join(diff)} differ); "
                    "write to a new output directory or delete the file",
                )
            status = 1
    if distributed.broadcast_int(status) == 1:
        if progress:
            progress.update(len(examples), f"{header['task']} (complete)")
        return "skipped"
    writer = records.PartialWriter(path, header, chunk_size) if writer0 else None
    try:
        start = distributed.broadcast_int(writer.n_done if writer else 0)
        if progress and start:
            progress.update(start, f"{header['task']} (resumed)")
        for lo in range(start, len(examples), chunk_size):
            rows, pooled = score(examples[lo : lo + chunk_size])
            if writer:
                writer.append_chunk(rows, pooled)
            if progress:
                progress.update(len(rows), header["task"])
        if writer:
            writer.finish()
            log.info("wrote %s (%d records)", path, writer.n_done)
    finally:
        if writer:
            writer.close()
    return "resumed" if start else "written"


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
    tasks = resolve_tasks(mixtures)
    examples = {t: task_examples(t, options) for t in tasks}
    fingerprints = {t: data_fingerprint(ex) for t, ex in examples.items()}
    _check_same_data(fingerprints)
    rank, count = distributed.process()
    log.info(
        "%d tasks, %d examples each for %d models; process %d of %d scores its share",
        len(tasks),
        max(len(ex) for ex in examples.values()),
        len(models),
        rank,
        count,
    )
    writer0 = distributed.process()[0] == 0
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
    progress = Progress(total, enabled=options.progress and writer0)
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
        config = result_config(spec, options, sha)
        meta["models"][spec.name] = {"spec": dataclasses.asdict(spec), "result_config": config}
        if writer0:
            files.write_json(
                out / records.RECORDS_DIR / spec.name / "model.json", dataclasses.asdict(spec)
            )
            files.write_json(run_path, meta)
        engine, score = None, None
        statuses[spec.name] = {}
        for task in tasks:
            ex = examples[task]
            if not ex:
                raise ValueError(f"task {task!r} has no examples in split {options.split!r}")
            header = {
                "kind": "header",
                "format_version": records.FORMAT_VERSION,
                "task": task,
                "template_id": ex[0]["template_id"],
                "provenance": ex[0]["provenance"],
                "dataset": ex[0]["dataset"],
                "format": task.split(":")[2],
                "n_examples": len(ex),
                "data_fingerprint": fingerprints[task],
                "config": config,
            }
            path = records.records_path(out, spec.name, task)
            if engine is None and not _complete(path, header):
                engine = build_engine(spec, options)  # Only when something is left to do.
                score = make_scorer(engine, spec, options, soft)
            statuses[spec.name][task] = evaluate_file(
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


def _check_same_data(fingerprints: dict[str, str]) -> None:
    """Every process must have read the same examples (same files, same versions)."""
    every = distributed.gather_json([fingerprints])
    for p, theirs in enumerate(every):
        differ = sorted(t for t in fingerprints if theirs.get(t) != every[0].get(t))
        if differ:
            raise ValueError(
                f"process {p} read other examples than process 0 for tasks {differ[:5]}: "
                "every host needs the same data directory contents"
            )


def _complete(path: epath.Path, header: dict) -> bool:
    """Whether process 0 holds a verified, matching file (all processes agree)."""
    ok = 0
    if distributed.process()[0] == 0 and path.exists():
        try:
            ok = int(records.read_records(path).header == header)
        except records.RecordsError:
            ok = 0
    return bool(distributed.broadcast_int(ok))
