"""Training's files: Orbax checkpoints of the trainable state (staged locally and copied
up on stores Orbax cannot write) and TensorBoard event files on any store."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any

import jax
import tqdm
from etils import epath

from jaxrobust.parallel import distributed
from jaxrobust.storage import files
from jaxrobust.training.optimizer import merge, subset


def say(line: str) -> None:
    """A console line (stdout), printed above the progress bar when one is shown."""
    tqdm.tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


class _StoreEventWriter:
    """tensorboardX's record writer on any store: `files.AppendFile` (appends and fsyncs
    locally; an object is rewritten whole at each flush)."""

    def __init__(self, path: str):
        self._file = files.AppendFile(path)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        if not self._file._f.closed:  # noqa: SLF001
            self._file.sync()

    def close(self) -> None:
        self.flush()
        self._file.close()


class _StoreEventWriterFactory:
    def open(self, path: str) -> _StoreEventWriter:
        return _StoreEventWriter(path)

    def directory_check(self, path: str) -> None:
        files.path(path).mkdir(parents=True, exist_ok=True)


def summary_writer(directory: epath.Path):
    """A tensorboardX `SummaryWriter` on `directory` (local or any store)."""
    from tensorboardX import SummaryWriter, record_writer

    if not files.is_local(directory):
        scheme = os.fspath(directory).split(":", 1)[0]
        record_writer.register_writer_factory(scheme, _StoreEventWriterFactory())
    return SummaryWriter(os.fspath(directory))


def orbax_writes(directory: epath.Path) -> bool:
    """Orbax reads and writes this folder itself (local disks and gs://)."""
    return files.is_local(directory) or os.fspath(directory).startswith("gs://")


UPLOADED = ".uploaded"  # Marks a staged checkpoint step copied whole onto its store.


class Checkpoints:
    """The run's Orbax checkpoints: trainable params, optimizer state and step, plus the
    data position as JSON. Frozen parameters are not saved (they come from the base
    model), so a PT checkpoint holds the prompt alone."""

    def __init__(self, directory: epath.Path, keep: int, mask: Any):
        import orbax.checkpoint as ocp

        self.ocp, self.directory, self.mask = ocp, directory, mask
        # Orbax reads and writes local and gs:// folders; other stores are staged.
        self.staging = (
            None if orbax_writes(directory) else pathlib.Path(tempfile.mkdtemp(prefix="jaxrobust-"))
        )
        where = directory
        if self.staging is not None:
            where = self.staging
            if directory.is_dir():
                for step in directory.iterdir():
                    if (step / UPLOADED).exists():
                        files.download_tree(step, self.staging / step.name)
                        (self.staging / step.name / UPLOADED).unlink()
        self.manager = ocp.CheckpointManager(
            where, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def _saved(self, state: dict) -> dict:
        return {
            "step": state["step"],
            "trainable": subset(state["params"], self.mask),
            "opt_state": state["opt_state"],
        }

    def restore_latest(self, state: dict) -> dict:
        """`state` with the latest checkpoint's trainable params, optimizer state and step
        (restored into `state`'s shardings); `state` itself when there is none."""
        ocp, at = self.ocp, self.manager.latest_step()
        if at is None:
            return state
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, self._saved(state))
        restored = self.manager.restore(
            at,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )["state"]
        say(f"resumed at step {at} from {self.directory}")
        return {
            "step": restored["step"],
            "params": merge(state["params"], restored["trainable"]),
            "opt_state": restored["opt_state"],
        }

    def save(self, state: dict, step: int, position: dict) -> None:
        """A collective: every process calls it; Orbax decides who writes what."""
        ocp = self.ocp
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(self._saved(state)), data=ocp.args.JsonSave(position)
            ),
        )
        self.manager.wait_until_finished()
        if self.staging is not None and distributed.is_writer():
            self._upload(step)
        say(f"checkpoint saved step={step}")

    def _upload(self, step: int) -> None:
        """Copies a staged step onto the store (marker last) and drops the steps Orbax
        dropped locally."""
        files.upload_tree(self.staging / str(step), self.directory / str(step))
        files.write_atomic(self.directory / str(step) / UPLOADED, b"")
        kept = {p.name for p in self.staging.iterdir()}
        for old in self.directory.iterdir():
            if old.name.isdigit() and old.name not in kept:
                old.rmtree()

    def close(self) -> None:
        self.manager.close()
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


# ---------------------------------------------------------------------------
# The program.
# ---------------------------------------------------------------------------
