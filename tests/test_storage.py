"""The file layer (`storage.files`): whole-file writes leave either the old file or the new
one, never a mix; appends survive a reopen at a committed offset; the object-store path
(whole rewrites, rename = copy + delete) gives the same bytes as the local one."""

import os

import pytest
from etils import epath

from jaxrobust.storage import files


def test_write_atomic_writes_bytes_and_text_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "x.bin"  # Missing parents are made.
    files.write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    files.write_atomic(path, "héllo")
    assert path.read_bytes() == "héllo".encode()
    assert sorted(os.listdir(path.parent)) == ["x.bin"]


def test_write_json_format_is_indented_sorted_with_newline(tmp_path):
    files.write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    files.write_atomic(path, "old")

    def broken_replace(self, target):
        raise OSError("disk gone")

    monkeypatch.setattr(type(epath.Path(path)), "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        files.write_atomic(path, "new")
    assert path.read_text() == "old"


def test_is_local():
    assert files.is_local("/tmp/x") and files.is_local("relative/x")
    assert not files.is_local("gs://bucket/x") and not files.is_local("s3://b/x")


def test_atomic_path_file_and_directory(tmp_path):
    final = tmp_path / "w.bin"
    with files.atomic_path(final) as tmp:
        assert tmp == tmp_path / "w.bin.tmp"
        tmp.write_bytes(b"abc")
        assert not final.exists()  # Nothing under the final name until the block ends.
    assert final.read_bytes() == b"abc" and not tmp.exists()

    stale = tmp_path / "d.tmp"
    stale.mkdir()
    (stale / "junk").write_text("from a crash")
    d = tmp_path / "d"
    with files.atomic_path(d, directory=True) as tmp:
        assert not tmp.exists()  # The stale temporary was removed.
        tmp.mkdir()
        (tmp / "f").write_text("1")
    assert os.listdir(d) == ["f"] and not stale.exists()


def test_atomic_path_exception_leaves_target_untouched(tmp_path):
    final = tmp_path / "w.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert final.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["w.bin"]


def test_atomic_path_on_an_object_store_uploads_a_local_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "is_local", lambda path: False)
    final = epath.Path(tmp_path) / "remote" / "w.bin"
    with files.atomic_path(final) as tmp:
        assert not str(tmp).startswith(str(tmp_path))  # A scratch file, not beside `final`.
        tmp.write_bytes(b"xyz")
    assert final.read_bytes() == b"xyz"
    assert sorted(os.listdir(tmp_path / "remote")) == ["w.bin"]
    with (
        pytest.raises(ValueError, match="local disks only"),
        files.atomic_path(final, directory=True),
    ):
        pass


@pytest.mark.parametrize("local", [True, False])
def test_append_file_keeps_a_prefix_and_commits(tmp_path, monkeypatch, local):
    if not local:
        monkeypatch.setattr(files, "is_local", lambda path: False)
    partial = epath.Path(tmp_path) / "f.partial"
    f = files.AppendFile(partial)
    f.write(b"head\n")
    f.sync()
    f.write(b"chunk1\n")
    f.sync()
    f.write(b"half a chu")  # Never synced: a preemption here.
    f.close()
    if not local:  # Each sync rewrote the whole object; unsynced bytes never reach it.
        assert partial.read_bytes() == b"head\nchunk1\n"
    f = files.AppendFile(partial, keep=len(b"head\nchunk1\n"))
    f.write(b"chunk2\n")
    assert f.contents() == b"head\nchunk1\nchunk2\n"
    f.write(b"end\n")
    f.commit(tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"head\nchunk1\nchunk2\nend\n"
    assert os.listdir(tmp_path) == ["f"]


# ---------------------------------------------------------------------------
# Whole runs on an object store: fsspec's in-memory file system (`memory://`).
# ---------------------------------------------------------------------------


def test_memory_urls_are_an_object_store_path_not_a_local_folder():
    """epath knows no memory://; the file layer registers it (before: KeyError), and
    `files.path` keeps URLs (pathlib's absolute() made gs://b/x the local ./gs:/b/x)."""
    p = epath.Path("memory://h5-paths/a/b.txt")
    assert os.fspath(p) == "memory://h5-paths/a/b.txt" and os.fspath(p.parent.parent) == (
        "memory://h5-paths"
    )
    files.write_atomic(p, "x")
    assert p.read_text() == "x" and not files.is_local(p)
    assert os.fspath(files.path("gs://b/x")) == "gs://b/x"
    assert os.fspath(files.path("rel/x")) == os.path.abspath("rel/x")
    with files.local_copy("memory://h5-paths/a") as local:
        assert (local / "b.txt").read_text() == "x"
    assert not os.path.exists("memory:") and not os.path.exists("gs:")


@pytest.mark.heavy
def test_eval_report_and_train_prompt_on_an_object_store(tmp_path, monkeypatch):
    """The checkpoint, eval's output folder, the report, training's workdir (Orbax,
    TensorBoard, the prompt) and the trained prompt read back by eval, all on memory://;
    the records are byte-equal to the same run on a local disk, and nothing lands in a
    local folder named after the URL."""
    import sys
    import uuid

    import jax
    from flax import linen as nn

    from jaxrobust import inference, main
    from jaxrobust.inference.tokenizer import ByteTokenizer

    fixtures = os.path.join(os.path.dirname(__file__), "fixtures")
    monkeypatch.syspath_prepend(fixtures)
    monkeypatch.chdir(tmp_path)  # A ./memory: folder would show up here.
    assert sys.path[0] == fixtures
    bucket = f"memory://h5-{uuid.uuid4().hex[:8]}"
    family = inference.get_family("t5")
    config = family.get_preset("tiny", vocab_size=ByteTokenizer().vocab_size)
    params = nn.meta.unbox(jax.jit(family.init(config))(jax.random.PRNGKey(0)))["params"]
    family.export_hf(params, config, tmp_path / "ckpt")
    files.upload_tree(tmp_path / "ckpt", f"{bucket}/ckpt")

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    gin = [f"--gin_search_paths={repo}"]

    def eval_argv(out, *extra):
        return [
            "eval",
            *gin,
            "--gin_file=gin_configs/runs/eval.gin",
            "--gin_file=gin_configs/tiny.gin",
            "--gin.MIXTURES=['jr:toyqa:qa:toyqa_o1', 'jr:toyqa:qa:toyqa_u1']",
            f"--gin.OUTPUT_DIR='{out}'",
            "--gin.TASK_MODULES=['eval_tasks']",
            *extra,
        ]

    ckpt = f"--gin.TINY_CHECKPOINT='{bucket}/ckpt'"
    assert main.main(eval_argv(f"{bucket}/out", ckpt)) == 0
    assert main.main(eval_argv(tmp_path / "local", f"--gin.TINY_CHECKPOINT='{tmp_path}/ckpt'")) == 0
    remote = epath.Path(f"{bucket}/out/records/tiny-t5")
    local = tmp_path / "local/records/tiny-t5"
    names = sorted(p.name for p in local.iterdir())
    assert sorted(p.name for p in remote.iterdir()) == names
    for name in names:  # Equal but for the checkpoint's name (and the footer's checksum).
        there, here = (remote / name).read_text(), (local / name).read_text()
        there = there.replace(f"{bucket}/ckpt", "CKPT").splitlines()[:-1]
        assert there == here.replace(f"{tmp_path}/ckpt", "CKPT").splitlines()[:-1], name
    assert main.main(["report", f"--output_dir={bucket}/out"]) == 0
    assert "tiny-t5" in epath.Path(f"{bucket}/out/report/summary.md").read_text()

    work = f"{bucket}/work"
    train = [
        "train_prompt",
        *gin,
        "--gin_file=gin_configs/runs/train_prompt.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.TASK='jr:toysent:qa'",
        f"--gin.WORKDIR='{work}'",
        "--gin.TASK_MODULES=['train_tasks']",
        "--gin.NUM_HELD_OUT=1",
        ckpt,
    ]
    assert main.main(train) == 0
    w = epath.Path(work)
    for name in ("prompt.npy", "metrics.json", "template_split.json", "train_settings.json"):
        assert (w / name).exists(), name
    assert sorted(p.name for p in (w / "checkpoints").iterdir()) == ["2", "4"]
    assert (w / "checkpoints/4/.uploaded").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in (w / "tb").iterdir())
    metrics = (w / "metrics.json").read_bytes()
    assert main.main(train) == 0  # Finished: the resume reads the store's checkpoints.
    assert (w / "metrics.json").read_bytes() == metrics
    prompt = [
        "--gin.evaluation.ModelSpec.name='tiny-t5+pt'",
        f"--gin.evaluation.ModelSpec.soft_prompt='{work}/prompt.npy'",
    ]
    assert main.main(eval_argv(f"{bucket}/out", ckpt, *prompt)) == 0
    assert (epath.Path(f"{bucket}/out/records/tiny-t5+pt") / names[0]).exists()
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "local"]
