"""One record file brought to completion, resumably, and the run's progress line.

A record file is a header line, record lines, a `chunk` line after every
committed chunk of examples, and a footer holding the record count and the
SHA-256 of every byte before it. It is written as `<file>.partial` (appended and
fsynced one chunk at a time) and renamed onto its final name only once the
footer is in, so a final name never holds a partial file. A re-run:

* skips a complete file whose header matches this run (never opens it for
  writing, so its inode and mtime stay);
* finishes a `.partial` from its last committed chunk. Chunks are fixed slices
  of the example list, each scored by one engine call, so a resumed file is
  byte-identical to an uninterrupted run's. Chunking is not part of a run's
  identity: a `.partial` written with another CHUNK_SIZE keeps its committed
  records (they do not depend on it) and goes on in the new chunk size (logged;
  its chunk lines then differ from an uninterrupted run's, its records do not);
  one made with other settings or data restarts, with a warning naming them;
* recomputes a final file that fails its checks (bad JSON, missing footer,
  checksum or count mismatch), after logging a `records.RecordsError` that names
  it; the bad file is kept beside it as `<file>.corrupt`;
* refuses (`records.RecordsError`) a complete file made with a different
  configuration (checkpoint, split, scoring mode, data): use a new output
  directory (`guards.check_identity` refuses such a run before it starts).

Every scored chunk is checked before it is written (`guards.check_finite`: a NaN
or infinite score stops the run), and an exception from the scorer names the
task, template and examples it was scoring.

Decisions about a file are made by process 0, the only process that touches
record files, and broadcast (`distributed.decided_by_writer`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import numpy as np
import tqdm
from etils import epath

from jaxrobust.evaluation import guards
from jaxrobust.parallel import distributed
from jaxrobust.storage import records

log = logging.getLogger(__name__)


class Progress:
    """The run's progress bar: examples done, rate and ETA (tqdm, on stderr).

    Shown only where someone watches: on a terminal (tqdm's `disable=None`), by
    process 0; never in a file the run writes. Complete and resumed files count
    as done at once, so the ETA is the scoring still to do.
    """

    def __init__(self, total: int, enabled: bool = True, file=None):
        """A bar over `total` examples.

        Args:
          enabled: False hides it everywhere; True shows it on a terminal only.
          file: the stream (default stderr); a bar on a non-terminal stream is hidden.
        """
        self.total, self.done = total, 0
        self._bar = tqdm.tqdm(
            total=total,
            unit="ex",
            desc="eval",
            file=file if file is not None else sys.stderr,
            disable=None if enabled else True,
            dynamic_ncols=True,
            leave=True,
        )

    def update(self, n: int, label: str) -> None:
        """Counts `n` more examples done, now on `label` (a task)."""
        self.done += n
        self._bar.set_postfix_str(label, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


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
    touches the file system and decides (`distributed.decided_by_writer`).

    Raises:
      records.RecordsError: a complete file made with other settings.
    """
    if distributed.decided_by_writer(lambda: _check_final(path, header)):
        if progress:
            progress.update(len(examples), f"{header['task']} (complete)")
        return "skipped"
    writer = records.PartialWriter(path, header, chunk_size) if distributed.is_writer() else None
    try:
        start = distributed.decided_by_writer(lambda: writer.n_done)
        if progress and start:
            progress.update(start, f"{header['task']} (resumed)")
        for lo in range(start, len(examples), chunk_size):
            chunk = examples[lo : lo + chunk_size]
            try:
                rows, pooled = score(chunk)
            except Exception as e:
                e.add_note(
                    f"while scoring task {header['task']} (template {header.get('template_id')!r}"
                    f"), examples {chunk[0].get('example_id')!r}..{chunk[-1].get('example_id')!r}"
                    f" ({lo}..{lo + len(chunk) - 1} of {len(examples)})"
                )
                raise
            guards.check_finite(header, rows, pooled)
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


def _check_final(path: epath.Path, header: dict) -> int:
    """1 if `path` is complete and this run's; 0 if absent or corrupt (moved aside)."""
    if not path.exists():
        return 0
    try:
        existing = records.read_records(path)
    except records.RecordsError as e:
        log.error("%s; recomputing it (the bad file is kept as %s.corrupt)", e, path.name)
        path.replace(path.with_name(path.name + ".corrupt"))
        return 0
    if existing.header != header:
        diff = sorted(
            k for k in set(header) | set(existing.header) if header.get(k) != existing.header.get(k)
        )
        raise records.RecordsError(
            path,
            f"complete, but made with other settings ({', '.join(diff)} differ); "
            "write to a new output directory or delete the file",
        )
    return 1


def is_complete(path: epath.Path, header: dict) -> bool:
    """Whether process 0 holds a verified file with this header (every process gets the
    answer); unlike `evaluate_file`, moves and refuses nothing."""

    def matches() -> int:
        try:
            return int(path.exists() and records.read_records(path).header == header)
        except records.RecordsError:
            return 0

    return bool(distributed.decided_by_writer(matches))
