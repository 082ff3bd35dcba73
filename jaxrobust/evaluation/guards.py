"""What stops an evaluation before it writes something wrong: the output folder's lock, one
run identity per model name, and finite scores.

* `writer_lock`: one run per output folder at a time. Process 0 alone takes the
  folder's lock (`storage.files.lock_folder`; a second run is refused naming the
  holder's host, pid and start time), and every process learns whether it did.
* `check_identity`: one output folder holds one run per model name. Every record
  file (complete or `.partial`) under `records/<model>/` names in its header the
  settings and weights that made it (`options.result_config`); a run whose
  settings differ from what the folder holds for that model name is refused,
  naming the settings, before it writes anything. Else `report` would print one
  row mixing two runs (another LIMIT, another checkpoint, new weights copied over
  the old path) and an observed-unobserved gap between them. Settings are checked
  before the model loads; the weights' content digest once it has loaded.
* `check_model_json`: the report-facing fields of `model.json` (series, size,
  observed collections) are part of the identity too: rewriting them would regroup
  records already complete.
* `check_finite`: a NaN or infinite score stops the run, naming task, template and
  example (every process holds the gathered chunk, so all stop together).

Checks that read files run on process 0 alone and their verdict is shared
(`on_writer`), so every process stops with the same message.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
from etils import epath

from jaxrobust.parallel import distributed
from jaxrobust.storage import files

T = TypeVar("T")
# ModelSpec fields the report groups and labels rows by (`analysis.scoring`).
REPORT_FIELDS = ("series", "params_b", "observed_collections")


class RunIdentityError(ValueError):
    """This run's settings differ from the run the output folder holds for the model name."""


class NonFiniteScoreError(ValueError):
    """A NaN or infinite score; names task, template and example."""


# ---------------------------------------------------------------------------
# Process 0 decides, every process stops.
# ---------------------------------------------------------------------------


def on_writer(check: Callable[[], T]) -> T | None:
    """`check()` on process 0 alone: its result there (None elsewhere). An exception it
    raises is raised on every process: process 0's own, elsewhere a RuntimeError
    quoting it, so no process goes on to wait for the others."""
    result, error = None, None
    if distributed.is_writer():
        try:
            result = check()
        except Exception as e:  # noqa: BLE001 (re-raised below, on every process)
            error = e
    message = from_writer(f"{type(error).__name__}: {error}" if error is not None else "")
    if error is not None:
        raise error
    if message:
        raise RuntimeError(f"process 0 stopped the run: {message}")
    return result


def from_writer(value: Any) -> Any:
    """Process 0's JSON-able `value`, on every process."""
    return distributed.gather_json([value] if distributed.is_writer() else [])[0]


@contextlib.contextmanager
def writer_lock(folder: str | epath.Path, command: str) -> Iterator[None]:
    """Holds `folder`'s lock (taken by process 0 alone) for the block; raises
    `files.LockedError` on every process when another run holds it."""
    lock = on_writer(lambda: files.lock_folder(folder, command))
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


# ---------------------------------------------------------------------------
# One run per model name.
# ---------------------------------------------------------------------------


def held_headers(model_dir: epath.Path) -> dict[str, dict]:
    """File name -> header of every record file (complete or `.partial`) in `model_dir`.

    Only first lines are read; a file whose first line is no header (damaged) is
    left to `resume.evaluate_file`, which recomputes it.
    """
    held: dict[str, dict] = {}
    if not model_dir.is_dir():
        return held
    for path in sorted(model_dir.iterdir()):
        if not path.name.endswith((".jsonl", ".jsonl.partial")):
            continue
        with path.open("rb") as f:
            first = f.readline()
        try:
            header = json.loads(first)
        except ValueError:
            continue
        if isinstance(header, dict) and header.get("kind") == "header":
            if isinstance(header.get("config"), dict):
                held[path.name] = header
    return held


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else repr(value)


_ABSENT = object()


def check_identity(
    model: str,
    model_dir: epath.Path,
    held: dict[str, dict],
    wanted: Callable[[str], dict],
) -> None:
    """Refuses this run when a held header's config differs from this run's.

    Args:
      model: the model name.
      model_dir: `records/<model>/` (for the message).
      held: `held_headers(model_dir)`.
      wanted: task -> this run's config for a file of that task; keys it leaves
        out are not compared (the weights' digest before the model has loaded).

    Raises:
      RunIdentityError: naming each differing setting, its value there and here.
    """
    differ: dict[str, str] = {}
    for name, header in sorted(held.items()):
        theirs = header["config"]
        for key, here in sorted(wanted(str(header.get("task", ""))).items()):
            there = theirs.get(key, _ABSENT)
            if there != here and key not in differ:
                differ[key] = f"{key}: {_show(there)} there ({name}), {here!r} here"
    if differ:
        raise RunIdentityError(
            f"{model_dir} holds model {model!r} evaluated with other settings than this "
            f"run's: {'; '.join(differ.values())}. An output folder holds one run per model "
            "name (a report row would mix the two): use another OUTPUT_DIR, or another "
            "ModelSpec.name for this run. Nothing was written."
        )


def held_weights(model: str, model_dir: epath.Path, held: dict[str, dict]) -> str | None:
    """The weights digest every held file names (None when the folder holds none).

    Raises:
      RunIdentityError: the files name several digests, or none (written before
        weights were identified by content): the folder cannot say which weights
        its records are from.
    """
    digests = {name: h["config"].get("weights_digest") for name, h in sorted(held.items())}
    distinct = set(digests.values())
    if not distinct:
        return None
    if len(distinct) == 1 and None not in distinct:
        return distinct.pop()
    named = "; ".join(f"{name}: {d!r}" for name, d in list(digests.items())[:4])
    raise RunIdentityError(
        f"{model_dir} holds records of model {model!r} that name "
        + (
            "no weights digest (written before weights were identified by content)"
            if None in distinct
            else "different weights"
        )
        + f" ({named}): new records cannot be shown to come from the same weights. Use "
        "another OUTPUT_DIR. Nothing was written."
    )


def check_weights(model: str, model_dir: epath.Path, held: str | None, loaded: str) -> None:
    """Refuses weights whose content digest differs from the one the folder's files name.

    Raises:
      RunIdentityError: naming both digests.
    """
    if held is not None and held != loaded:
        raise RunIdentityError(
            f"{model_dir} holds model {model!r} evaluated with other weights: weights_digest "
            f"{held!r} there, {loaded!r} here (another checkpoint, or new weights at the same "
            "path). An output folder holds one run per model name: use another OUTPUT_DIR, "
            "or another ModelSpec.name for these weights. Nothing was written for it."
        )


def check_model_json(path: epath.Path, spec: dict, has_records: bool) -> bool:
    """Whether `model.json` needs (re)writing; refuses a change of its report-facing
    fields (`REPORT_FIELDS`) while the folder holds records of the model.

    Raises:
      RunIdentityError: naming the fields, their values there and here.
    """
    spec = json.loads(json.dumps(spec))  # Tuples as JSON reads them back.
    try:
        there = json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        there = None
    if there == spec:
        return False
    if there is not None and has_records:
        differ = [
            f"{k}: {there.get(k)!r} there, {spec[k]!r} here"
            for k in REPORT_FIELDS
            if there.get(k) != spec.get(k)
        ]
        if differ:
            raise RunIdentityError(
                f"{path} describes model {spec['name']!r} otherwise ({'; '.join(differ)}); the "
                "report groups the records already there by it: use another OUTPUT_DIR or "
                "another ModelSpec.name. Nothing was written."
            )
    return True


# ---------------------------------------------------------------------------
# Finite scores.
# ---------------------------------------------------------------------------


def check_finite(header: dict, rows: list[dict], pooled: np.ndarray | None) -> None:
    """Raises `NonFiniteScoreError` for the first NaN or infinite score of a scored chunk.

    Every process holds the whole gathered chunk, so all raise together.
    """
    for r in rows:
        for i, s in enumerate(r.get("scores", ())):
            if not math.isfinite(s):
                options = r.get("options") or []
                option = repr(options[i]) if i < len(options) else f"#{i}"
                raise NonFiniteScoreError(
                    f"task {header['task']}, template {r.get('template_id', '?')!r}, example "
                    f"{r['example_id']!r}: option {option} scored {s}. A NaN or infinite "
                    "score is a broken model or input (a checkpoint vocabulary smaller than "
                    "the tokenizer's ids, a dtype overflow), never a result; the chunk was "
                    "not written"
                )
    if pooled is not None and not np.isfinite(pooled).all():
        ids = [r["example_id"] for r in rows]
        raise NonFiniteScoreError(
            f"task {header['task']}, template {header.get('template_id', '?')!r}: the pooled "
            f"encoder states of examples {ids[0]!r}..{ids[-1]!r} are not finite; the chunk "
            "was not written"
        )
