"""Several seeds of the built-in study at once, one process per seed on CPUs of its own.

The study pins itself to `StudyOptions.cpu_threads` CPUs so that its bytes do
not depend on the machine's core count (`pipeline.run`). A machine with more
CPUs than that would sit idle through a several-seeds run, so `run_seeds`
starts one worker process per seed, each pinned to its own `cpu_threads` CPUs
before JAX starts, as many at a time as the CPUs allow. Each worker runs
exactly what the sequential loop would (`pipeline.run_one` with the seed's
options), so the results are the same bytes either way
(tests/test_study_repro.py).

A worker's output goes to ``<seed folder>/study.log``; the parent echoes each
worker's stage lines (with their timings) prefixed by the seed, and a worker
that fails stops the run with its log's tail. Re-running resumes as the
sequential loop does: each seed's finished stages are skipped.

    python -m jaxrobust.study.workers OPTIONS_JSON CPUS [GIN_CONFIG_FILE]

is the worker's own command line (what `run_seeds` starts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from jaxrobust.storage import files

POLL_SECONDS = 2.0  # How often the parent looks at its workers and their logs.


def options_from_json(path: pathlib.Path):
    """The `pipeline.StudyOptions` written by `dataclasses.asdict` (lists back to tuples)."""
    from jaxrobust.study import pipeline

    raw = json.loads(pathlib.Path(path).read_text())
    known = {f.name: f for f in dataclasses.fields(pipeline.StudyOptions)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown study options {unknown}; expected StudyOptions fields")
    default = pipeline.StudyOptions()
    values = {k: tuple(v) if isinstance(getattr(default, k), tuple) else v for k, v in raw.items()}
    return pipeline.StudyOptions(**values)


def cpu_slots(allowed: Sequence[int], per_worker: int) -> list[list[int]]:
    """Disjoint groups of `per_worker` CPUs from `allowed` (the remainder unused)."""
    allowed = sorted(allowed)
    if per_worker < 1:
        raise ValueError(f"per_worker {per_worker}: expected at least 1 CPU per worker")
    n = len(allowed) // per_worker
    return [allowed[i * per_worker : (i + 1) * per_worker] for i in range(n)]


@dataclasses.dataclass
class _Worker:
    seed: int
    folder: pathlib.Path
    cpus: list[int]
    process: subprocess.Popen
    log: Any
    offset: int = 0


def _echo(worker: _Worker) -> None:
    """Prints the worker's new '[study]' lines, prefixed with its seed."""
    path = worker.folder / "study.log"
    with open(path, "rb") as f:
        f.seek(worker.offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1  # Whole lines only; the rest is read next time.
    worker.offset += end
    for line in chunk[:end].decode("utf-8", "replace").splitlines():
        if line.startswith("[study]"):
            print(f"[seed {worker.seed}] {line[len('[study] ') :]}", flush=True)


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_seeds(options, gin_config: str, allowed: Sequence[int]) -> list[pathlib.Path]:
    """Runs `options.seeds` as worker processes on `allowed` CPUs; returns the seed folders.

    Raises:
      RuntimeError: a worker failed (its seed, exit status and log's tail).
    """
    out = pathlib.Path(options.output_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    slots = cpu_slots(allowed, options.cpu_threads)
    pending = list(options.seeds)
    folders = [out / f"seed_{s}" for s in options.seeds]
    running: list[_Worker] = []
    free = list(slots)
    print(
        f"[study] seeds {list(options.seeds)}: {len(slots)} at a time, each on "
        f"{options.cpu_threads} CPU(s) of its own (logs: seed_<s>/study.log)",
        flush=True,
    )
    try:
        while pending or running:
            while pending and free:
                seed, cpus = pending.pop(0), free.pop(0)
                running.append(_start(options, seed, out / f"seed_{seed}", cpus, gin_config))
            time.sleep(POLL_SECONDS)
            for w in list(running):
                _echo(w)
                code = w.process.poll()
                if code is None:
                    continue
                w.log.close()
                running.remove(w)
                free.append(w.cpus)
                if code:
                    raise RuntimeError(
                        f"study seed {w.seed} failed (exit status {code}); the end of "
                        f"{w.folder / 'study.log'}:\n{_tail(w.folder / 'study.log')}"
                    )
                print(f"[study] seed {w.seed}: done ({w.folder})", flush=True)
    finally:
        for w in running:  # Only after a failure: stop the others.
            w.process.kill()
            w.process.wait()
            w.log.close()
    return folders


def _start(options, seed: int, folder: pathlib.Path, cpus: list[int], gin_config: str) -> _Worker:
    folder.mkdir(parents=True, exist_ok=True)
    sub = dataclasses.replace(options, seed=seed, seeds=(), output_dir=str(folder))
    spec = folder / "worker_options.json"
    files.write_json(spec, dataclasses.asdict(sub))
    argv = [sys.executable, "-m", "jaxrobust.study.workers", str(spec), ",".join(map(str, cpus))]
    if gin_config:
        gin_file = folder / "worker_config.gin"
        files.write_atomic(gin_file, gin_config)
        argv.append(str(gin_file))
    log = open(folder / "study.log", "ab")  # noqa: SIM115  (closed when the worker ends)
    offset = log.tell()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    print(f"[study] seed {seed}: started on CPU {cpus} ({folder})", flush=True)
    return _Worker(seed, folder, cpus, process, log, offset)


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    cpus = [int(c) for c in argv[1].split(",")]
    os.sched_setaffinity(0, cpus)  # Before JAX starts its CPU backend.
    from jaxrobust.study import pipeline

    options = options_from_json(pathlib.Path(argv[0]))
    gin_config = pathlib.Path(argv[2]).read_text() if len(argv) == 3 else ""
    pipeline.run_one(options, gin_config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
