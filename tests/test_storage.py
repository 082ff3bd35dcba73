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
