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
* `lock_folder`: one writer per folder (an eval output folder, a training
  workdir); a second run is refused naming the holder.

Paths go through `etils.epath` (the file-system layer SeqIO and Orbax use), so
they may be `gs://` buckets (backed by `tf.io.gfile`, or `gcsfs` when
TensorFlow is absent). `path()` is the one constructor (local paths made
absolute, URLs kept as they are: `pathlib.Path('gs://b/x').absolute()` would
be the local `./gs:/b/x`). This module also registers fsspec's in-memory
store, `memory://`, with epath: an object store with no server, on which the
tests run whole evaluations and trainings (`tests/test_storage.py`). Readers
that need a local file name (an HF tokenizer directory, a PyTorch `.bin`)
get a local copy of an object (`local_copy`); `upload_tree` copies a local
directory onto a store (Orbax checkpoints staged locally, see
`training/trainer.py`). Object stores cannot append or rename atomically: there
an `AppendFile` is kept in memory and rewritten whole at each sync (a resume
after a preemption still finds every synced chunk), and a rename is a
server-side copy then a delete. The final object therefore appears whole or
not at all (an object write is atomic); a crash between copy and delete leaves
a stale temporary next to a complete file, which a re-run ignores.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import json
import logging
import os
import pathlib
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from etils import epath

PathLike = str | os.PathLike
log = logging.getLogger(__name__)


def is_local(path: PathLike) -> bool:
    """A path on a local file system (append, fsync and atomic rename work)."""
    return "://" not in os.fspath(path)


def path(p: PathLike) -> epath.Path:
    """`p` as an `epath.Path`: a local path made absolute, a URL (`gs://`, `memory://`)
    as it is."""
    if is_local(p):
        return epath.Path(os.path.abspath(os.fspath(p)))
    return epath.Path(os.fspath(p))


def _register_memory_store() -> None:
    """Makes `epath.Path('memory://...')` fsspec's in-memory file system (etils knows
    gs, s3, az and hf only; its fsspec backend sends every other URL to the local disk)."""
    if "memory://" in epath.register._URI_PREFIXES_TO_CLS:  # noqa: SLF001
        return
    import fsspec
    from etils.epath import backend as backend_lib
    from etils.epath import gpath

    class MemoryBackend(backend_lib._FileSystemSpecBackend):  # noqa: SLF001
        def fs(self, path):
            return fsspec.filesystem("memory")

    backend = MemoryBackend()

    class MemoryPath(gpath.PosixGPath):
        def __new__(cls, *parts):
            full = "/".join(os.fspath(p) for p in parts)
            if full.startswith("memory://"):
                full = "/memory/" + full[len("memory://") :]
            return super().__new__(cls, full)

        @property
        def _uri_scheme(self):
            return "memory" if self.parts[:2] == ("/", "memory") else None

        @property
        def _backend(self):
            return backend if self._uri_scheme else backend_lib.os_backend

    epath.register_path_cls("memory://")(MemoryPath)


_register_memory_store()


@contextlib.contextmanager
def local_copy(p: PathLike, names: tuple[str, ...] | None = None) -> Iterator[pathlib.Path]:
    """A local path holding `p`'s contents, for readers that take local file names.

    A local `p` is given as it is. An object (or a folder of objects: its files,
    or only `names` of them, not its subfolders) is copied into a temporary
    folder that is removed when the `with` ends.
    """
    if is_local(p):
        yield pathlib.Path(p)
        return
    src = path(p)
    with tempfile.TemporaryDirectory(prefix="jaxrobust-") as scratch:
        dst = pathlib.Path(scratch) / src.name
        if src.is_dir():
            dst.mkdir()
            for child in src.iterdir():
                if (names is None or child.name in names) and not child.is_dir():
                    (dst / child.name).write_bytes(child.read_bytes())
        elif src.exists():
            dst.write_bytes(src.read_bytes())
        yield dst


def upload_tree(local: PathLike, dst: PathLike, last: tuple[str, ...] = ()) -> None:
    """Copies a local folder onto `dst` (any store), file by file, each whole; files
    named in `last` (commit markers) are copied after every other."""
    local, dst = pathlib.Path(local), path(dst)
    later = []
    for item in sorted(local.rglob("*")):
        if item.is_dir():
            continue
        if item.name in last:
            later.append(item)
            continue
        write_atomic(dst / item.relative_to(local).as_posix(), item.read_bytes())
    for item in later:
        write_atomic(dst / item.relative_to(local).as_posix(), item.read_bytes())


def download_tree(src: PathLike, local: PathLike) -> None:
    """Copies `src`'s files (any store, subfolders too) into the local folder `local`."""
    src, local = path(src), pathlib.Path(local)
    local.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.is_dir():
            download_tree(item, local / item.name)
        else:
            (local / item.name).write_bytes(item.read_bytes())


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


# ---------------------------------------------------------------------------
# One writer per folder.
# ---------------------------------------------------------------------------

LOCK_NAME = ".jaxrobust.lock"
# Object stores: a lease not renewed for this long belongs to a run that is gone.
LEASE_S = 600.0


class LockedError(RuntimeError):
    """Another run holds the folder; the message names it (host, pid, start time)."""

    def __init__(self, folder: PathLike, holder: dict, how: str):
        self.folder, self.holder = os.fspath(folder), holder
        super().__init__(
            f"{folder} is in use by another run: {describe_holder(holder)} ({how}). Two runs "
            "writing one folder would interleave their files; wait for it to finish, or use "
            f"another folder (if that run is gone, delete {LOCK_NAME} there)"
        )


def describe_holder(holder: dict) -> str:
    """'`command` on host H, pid P, started T' from a lock's contents."""
    return (
        f"{holder.get('command', '?')} on host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, started {holder.get('started', '?')}"
    )


def _holder(command: str) -> dict:
    return {
        "command": command,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "token": secrets.token_hex(8),
    }


def _parse(raw: bytes) -> dict:
    try:
        holder = json.loads(raw)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True  # Someone else's live process.
    return True


class FolderLock:
    """A held folder lock (`lock_folder`); `release` (or leaving the `with`) frees it."""

    def __init__(self, folder: epath.Path, path: epath.Path, holder: dict, release_fn):
        self.folder, self.path, self.holder, self._release = folder, path, holder, release_fn

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_folder(folder: PathLike, command: str) -> FolderLock:
    """Takes `folder`'s lock for this process, or raises `LockedError` naming its holder.

    Local disks: `<folder>/.jaxrobust.lock` holds the holder (command, host, pid,
    start time) under an exclusive `flock`, which the kernel drops when the
    holder dies however it dies; a lock file left by a killed run is therefore
    taken over, with a log line naming that run (`flock` works across hosts on
    NFS; on a mount without locking, only runs on one host exclude each other).
    The lock file is removed on release, and a folder made for it is removed
    again when the run left it empty.

    Object stores (`gs://`) have no locks: the lock object is a lease, rewritten
    by a background thread every `LEASE_S / 3` seconds; a lease not renewed for
    `LEASE_S` seconds belongs to a run that is gone and is taken over (logged).
    Its check-then-write is not atomic: two runs started within the same moment
    can both pass.

    In a multi-host run process 0 alone calls this (it alone writes files).
    """
    folder = epath.Path(folder)
    if is_local(folder):
        return _lock_local(pathlib.Path(os.fspath(folder)), command)
    return _lease(folder, command)


def _lock_local(folder: pathlib.Path, command: str) -> FolderLock:
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.pread(fd, 1 << 16, 0))
            os.close(fd)
            mine = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
            raise LockedError(
                folder, holder, "this very process holds it" if mine else "it holds the lock"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # Locked a file its holder removed while releasing: take the new one.
    old = _parse(os.pread(fd, 1 << 16, 0))
    if old:
        gone = (
            "its process is gone"
            if old.get("host") == socket.gethostname() and not _pid_alive(old.get("pid"))
            else "it holds no lock any more"
        )
        log.warning("%s: taking over the lock left by %s (%s)", path, describe_holder(old), gone)
    holder = _holder(command)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
    os.fsync(fd)

    def release() -> None:
        path.unlink(missing_ok=True)  # Before the unlock: no one locks a removed file.
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # Only if the run left it empty.

    return FolderLock(epath.Path(folder), epath.Path(path), holder, release)


def _lease(folder: epath.Path, command: str) -> FolderLock:
    path = folder / LOCK_NAME
    if path.exists():
        old = _parse(path.read_bytes())
        age = time.time() - float(old.get("renewed", 0.0))
        if age < LEASE_S:
            how = f"its lease was renewed {age:.0f} s ago; it lapses after {LEASE_S:.0f} s"
            raise LockedError(folder, old, how)
        log.warning(
            "%s: taking over the lease of %s (not renewed for %.0f s)",
            path,
            describe_holder(old),
            age,
        )
    holder = _holder(command)
    stop = threading.Event()

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(json.dumps({**holder, "renewed": time.time()}).encode())

    def renew() -> None:
        while not stop.wait(LEASE_S / 3):
            try:
                write()
            except Exception as e:  # noqa: BLE001 (a missed renewal is retried; the run goes on)
                log.warning("%s: could not renew the lease: %s", path, e)

    write()
    thread = threading.Thread(target=renew, name="jaxrobust-lease", daemon=True)
    thread.start()

    def release() -> None:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            if _parse(path.read_bytes()).get("token") == holder["token"]:
                path.unlink()

    return FolderLock(folder, path, holder, release)
