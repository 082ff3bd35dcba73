"""The record file format: one JSONL file per (model, task), verified on read.

Layout of a file (one JSON object per line, keys sorted, so equal contents are
equal bytes)::

    {"kind": "header", "task": ..., "template_id": ..., "provenance": ...,
     "dataset": ..., "format": ..., "n_examples": N, "data_fingerprint": ...,
     "config": {...}, "format_version": 1, "schema_version": 1}
    {"kind": "record", "example_id": ..., "scores": [...], "prediction": ...,
     "predicted_label": ..., "gold_label": ..., "correct": ..., "truncated": ...,
     "protected_cut": ...}
    ...                                 N records in the task's example order
    {"kind": "chunk", "end": n, "pooled_sum": [...]?}   after each committed chunk
    {"kind": "footer", "n_records": N, "sha256": <hex of every byte above>}

`PartialWriter` appends committed chunks to ``<file>.partial`` (durable per
chunk) and renames it onto the final name once the footer is in, so a final
name never holds an unfinished file; `read_records` verifies a final file and
raises `RecordsError` naming it when anything is off. Files go through
`storage.files` (local disks and `gs://` buckets; see there what atomic means
on an object store). This module needs neither JAX nor the task registry, so
reports read records without them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import numpy as np
from etils import epath

from jaxrobust.storage import files

# The file's framing: header, record, chunk and footer lines and the checksum.
FORMAT_VERSION = 1
# What the lines say: the header's fields and `config`, a record's fields. Bumped
# when a field is added, removed or changes meaning. Files written before headers
# carried it are schema 1 (`read_records` reads them so). Schema 2: `config` names
# the weights by content (`weights_digest`) and `split` is the task's resolved split.
# Schema 3: records say `protected_cut` (the input did not fit with its shortenable
# part shortened, so the model's cut may have lost instruction, options or cue).
# A re-run refuses a complete file of another schema (its header differs), naming it.
SCHEMA_VERSION = 3
RECORDS_DIR = "records"
log = logging.getLogger(__name__)


class RecordsError(ValueError):
    """A record file that cannot be used; the message names the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def line(obj: dict) -> bytes:
    # sort_keys + fixed separators: equal contents give equal bytes. Python's
    # float repr round-trips, so scores read back exactly.
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


def model_dirname(model: str) -> str:
    """The folder name of a model's records: the name with each '/' written as '__'.

    `google/flan-t5-xl` -> `google__flan-t5-xl`, one folder under `records/`
    (a nested folder was skipped by the report). The mapping is reversible
    (`'__'` -> `'/'`) because a name may not contain `'__'` itself, and no name
    leaves the records folder.

    Raises:
      ValueError: an empty name; one with an empty, `.` or `..` path component
        (absolute paths, `a//b`, traversal), a backslash or a control character;
        or one containing `'__'` (reserved for '/').
    """
    problem = None
    if not isinstance(model, str) or not model:
        problem = "it is empty"
    elif any(c == "\\" or ord(c) < 32 or ord(c) == 127 for c in model):
        problem = "it holds a backslash or a control character"
    elif any(part in ("", ".", "..") for part in model.split("/")):
        problem = "it is an absolute path or has an empty, '.' or '..' component"
    elif "__" in model:
        problem = "'__' is reserved: it stands for '/' in the records folder's name"
    if problem:
        raise ValueError(
            f"model name {model!r} cannot name a records folder: {problem} "
            "(names like 'flan-t5-xl' or 'google/flan-t5-xl' can)"
        )
    return model.replace("/", "__")


def model_dir(output_dir: str | os.PathLike, model: str) -> epath.Path:
    """`<output_dir>/records/<model_dirname(model)>`: a model's record files and `model.json`."""
    return epath.Path(output_dir) / RECORDS_DIR / model_dirname(model)


def records_path(output_dir: str | os.PathLike, model: str, task: str) -> epath.Path:
    """The record file of (model, task); see `model_dir`."""
    return model_dir(output_dir, model) / (task.replace(":", "__") + ".jsonl")


@dataclasses.dataclass
class RecordFile:
    """A verified record file."""

    path: epath.Path
    # Task, template, provenance, config, data fingerprint, n_examples, versions
    # (`schema_version` filled in as 1 for files from before it was written).
    header: dict
    records: list[dict]  # One per example, in the task's order.
    pooled_sum: np.ndarray | None  # [D] sum of pooled encoder states, when recorded.


def read_records(path: str | os.PathLike) -> RecordFile:
    """Reads and verifies a complete record file.

    Raises:
      RecordsError: unreadable, not JSON, no footer, checksum or record count
        wrong; the message names the file and the problem.
    """
    path = epath.Path(path)
    try:
        data = path.read_bytes()
    except Exception as e:  # OSError locally; gfile/gcsfs raise their own types.
        raise RecordsError(path, f"cannot read: {e}") from None
    body, sep, last = data.rstrip(b"\n").rpartition(b"\n")
    try:
        footer = json.loads(last)
    except ValueError:
        footer = None
    if not sep or not isinstance(footer, dict) or footer.get("kind") != "footer":
        raise RecordsError(path, "no footer line: the file is truncated or not a record file")
    body += b"\n"
    if hashlib.sha256(body).hexdigest() != footer.get("sha256"):
        raise RecordsError(path, "checksum mismatch: the file was modified or corrupted")
    header, records, pooled = None, [], None
    for i, raw in enumerate(body.splitlines()):
        try:
            obj = json.loads(raw)
        except ValueError:
            raise RecordsError(path, f"line {i + 1} is not JSON") from None
        kind = obj.get("kind")
        if i == 0:
            if kind != "header" or obj.get("format_version") != FORMAT_VERSION:
                raise RecordsError(path, f"line 1 is not a version-{FORMAT_VERSION} header")
            schema = obj.setdefault("schema_version", 1)
            if not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
                raise RecordsError(
                    path,
                    f"record schema {schema!r}; this jaxrobust reads schemas 1 to "
                    f"{SCHEMA_VERSION} (a newer one wrote it? upgrade jaxrobust)",
                )
            header = obj
        elif kind == "record":
            records.append(obj)
        elif kind == "chunk" and obj.get("pooled_sum") is not None:
            s = np.asarray(obj["pooled_sum"], np.float64)
            pooled = s if pooled is None else pooled + s
    n = header["n_examples"]
    if len(records) != n or footer.get("n_records") != n:
        raise RecordsError(
            path, f"{len(records)} records, footer {footer.get('n_records')}, header expects {n}"
        )
    return RecordFile(path, header, records, pooled)


def _header_difference(old: bytes, new: bytes) -> str:
    """The header fields (and config fields) that differ, e.g. 'data_fingerprint, config.limit'."""
    try:
        a, b = json.loads(old), json.loads(new)
    except ValueError:
        return "its first line is no header"
    if not isinstance(a, dict):
        return "its first line is no header"
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) == b.get(k):
            continue
        if k == "config" and isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            ca, cb = a[k], b[k]
            out += [f"config.{c}" for c in sorted(set(ca) | set(cb)) if ca.get(c) != cb.get(c)]
        else:
            out.append(k)
    return ", ".join(out) + " differ"


class PartialWriter:
    """Appends committed chunks to `<final>.partial`; `finish` renames it into place.

    Each chunk is durable once appended (`files.AppendFile`: fsynced locally,
    rewritten whole on an object store), so a preempted file resumes from its
    last committed chunk.
    """

    def __init__(self, final: str | os.PathLike, header: dict, chunk_size: int):
        final = epath.Path(final)
        self.final, self.partial = final, final.with_name(final.name + ".partial")
        header_line = line(header)
        committed, self.n_done = self._committed_prefix(header_line, chunk_size)
        # Drops a half-written chunk after the last commit.
        self.f = files.AppendFile(self.partial, keep=committed)
        if not committed:
            self.f.write(header_line)
            self.f.sync()

    def _committed_prefix(self, header_line: bytes, chunk_size: int) -> tuple[int, int]:
        """(bytes, records) of the partial file up to its last chunk line; (0, 0) = restart.

        The chunk size is not part of a file's identity: committed records do not
        depend on it, so they are kept when it changed (logged; the file's chunk
        lines then follow both sizes). A header that differs restarts the file,
        with a warning naming what differs.
        """
        if not self.partial.exists():
            return 0, 0
        data = self.partial.read_bytes()
        if not data.startswith(header_line):
            log.warning(
                "%s: made with other settings or data (%s); its records are dropped and it "
                "starts again",
                self.partial,
                _header_difference(data.split(b"\n", 1)[0], header_line),
            )
            return 0, 0
        offset, n, committed, ends = len(header_line), 0, (len(header_line), 0), []
        for raw in data[offset:].split(b"\n")[:-1]:  # The last piece has no newline yet.
            offset += len(raw) + 1
            try:
                obj = json.loads(raw)
            except ValueError:
                break
            if obj.get("kind") == "record":
                n += 1
            elif obj.get("kind") == "chunk" and obj.get("end") == n:
                committed = (offset, n)
                ends.append(n)
        if ends and ends[0] != chunk_size:
            log.info(
                "%s: keeps its %d committed records, written in chunks of %d; goes on in chunks "
                "of %d (its chunk lines differ from an uninterrupted run's, its records do not)",
                self.partial,
                committed[1],
                ends[0],
                chunk_size,
            )
        return committed

    def append_chunk(self, records: list[dict], pooled_sum: np.ndarray | None) -> None:
        self.n_done += len(records)
        chunk = {"kind": "chunk", "end": self.n_done}
        if pooled_sum is not None:
            chunk["pooled_sum"] = [float(v) for v in pooled_sum]
        self.f.write(b"".join(line({"kind": "record", **r}) for r in records) + line(chunk))
        self.f.sync()

    def finish(self) -> None:
        body = self.f.contents()
        footer = {"kind": "footer", "n_records": self.n_done}
        footer["sha256"] = hashlib.sha256(body).hexdigest()
        self.f.write(line(footer))
        # The final name is complete or absent (`files.AppendFile.commit`).
        self.f.commit(self.final)

    def close(self) -> None:
        self.f.close()
