"""The file layer: whole-file atomic writes and durable appends, locally or on object stores.

Every file jaxrobust writes for later reading (record files, run metadata,
reports, template splits, exported checkpoints, the study's stages) goes
through here, so a reader never sees half a file:

* `write_atomic` / `write_json`: the bytes go to `<name>.tmp`, which is then
  renamed onto the final name.
* `atomic_path`: the same for writers that need a file name (safetensors'
  `save_file`, a tokenizer trainer filling a directory).
* `AppendFile`: a file grown chunk by chunk, each chunk durable once synced,
  renamed onto its final name when complete (the record files' `.partial`).

Paths go through `etils.epath` (the file-system layer SeqIO and Orbax use), so
they may be `gs://` buckets (backed by `tf.io.gfile`, or `gcsfs` when
TensorFlow is absent). Object stores cannot append or rename atomically: there
an `AppendFile` is kept in memory and rewritten whole at each sync (a resume
after a preemption still finds every synced chunk), and a rename is a
server-side copy then a delete. The final object therefore appears whole or
not at all (an object write is atomic); a crash between copy and delete leaves
a stale temporary next to a complete file, which a re-run ignores.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from etils import epath

PathLike = str | os.PathLike


def is_local(path: PathLike) -> bool:
    """A path on a local file system (append, fsync and atomic rename work)."""
    return "://" not in os.fspath(path)


def write_atomic(path: PathLike, data: bytes | str) -> None:
    """Writes a file whole: `<name>.tmp`, then a rename onto `path` (os.replace
    locally; copy + delete on object stores, where the object appears whole)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def write_json(path: PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON with sorted keys and a final newline (`write_atomic`)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_path(path: PathLike, directory: bool = False) -> Iterator[pathlib.Path]:
    """A local path to write `path`'s contents to; they move onto `path` on success.

    For writers that take a file name rather than bytes. Locally the temporary
    is `<name>.tmp` beside `path` (a stale one from a crash is removed first)
    and the rename is atomic. On an object store a file is written to a local
    temporary and then uploaded whole (`write_atomic`); directories are local
    only (an object store has no atomic directory rename). On an exception the
    temporary is removed and `path` is left as it was.

    Args:
      path: the final file or directory.
      directory: the writer fills a directory (the temporary is not created).
    """
    if not is_local(path):
        if directory:
            raise ValueError(f"{path}: a directory is written atomically on local disks only")
        with tempfile.TemporaryDirectory() as scratch:
            tmp = pathlib.Path(scratch) / epath.Path(path).name
            yield tmp
            write_atomic(path, tmp.read_bytes())
        return
    final = pathlib.Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, final)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class AppendFile:
    """A file grown by appends, durable at each `sync`; `commit` renames it into place.

    Locally the file is appended to and fsynced; on an object store it is kept
    in memory and rewritten whole at each `sync`.
    """

    def __init__(self, path: PathLike, keep: int = 0):
        """Opens `path` for appending.

        Args:
          path: the file being grown (e.g. `<final>.partial`).
          keep: bytes of an existing `path` to keep; what follows them is
            dropped. 0 starts an empty file.
        """
        self.path = epath.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.local = is_local(path)
        if self.local:
            mode = "r+b" if keep else "w+b"
            self._f = open(os.fspath(self.path), mode)  # noqa: SIM115 (closed in commit / close)
        else:
            self._f = io.BytesIO(self.path.read_bytes() if keep else b"")
        if keep:
            self._f.truncate(keep)
            self._f.seek(keep)

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def sync(self) -> None:
        """Makes everything written so far durable."""
        if not self.local:
            self.path.write_bytes(self._f.getvalue())
            return
        self._f.flush()
        os.fsync(self._f.fileno())

    def contents(self) -> bytes:
        """Every byte written so far (kept and appended)."""
        self._f.seek(0)
        return self._f.read()

    def commit(self, final: PathLike) -> None:
        """Syncs, closes and renames the file onto `final` (atomic locally)."""
        self.sync()
        self._f.close()
        self.path.replace(epath.Path(final))

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
