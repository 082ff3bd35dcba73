"""The evaluation runner: verified record files, resume after a crash or a kill,
corrupt files recomputed, never silently used.

The end-to-end runs use the toy tasks of `tests/fixtures/eval_tasks.py` (no data
directory needed) and a random-weight tiny T5 through `gin_configs/tiny.gin`.
"""

import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from jaxrobust import evaluation
from jaxrobust.storage import records

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
N_FILES = 8  # 2 toy tasks x 4 templates.


def eval_args(out: pathlib.Path) -> list[str]:
    return [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toyqa:qa#all', 'jr:toyre:re#all']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['eval_tasks']",
    ]


def run_in_process(out: pathlib.Path) -> None:
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    from jaxrobust import main

    assert main.main(eval_args(out)) == 0


def record_files(out: pathlib.Path) -> dict[str, bytes]:
    files = sorted((out / "records" / "tiny-t5").glob("*.jsonl"))
    return {p.name: p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pathlib.Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    run_in_process(out)
    assert len(record_files(out)) == N_FILES
    return out


# ---------------------------------------------------------------------------
# The file format, without a model.
# ---------------------------------------------------------------------------


def _header(n: int, **extra) -> dict:
    return {
        "kind": "header",
        "format_version": records.FORMAT_VERSION,
        "schema_version": records.SCHEMA_VERSION,
        "task": "jr:x:qa:t1",
        "n_examples": n,
        "config": {"model": "m"},
        **extra,
    }


def _fake_scorer(fail_at: int | None = None):
    calls = []

    def score(chunk):
        calls.append(len(chunk))
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("simulated crash")
        rows = [
            {
                "example_id": ex["example_id"],
                "scores": [float(ex["i"]) / 3, -1.5],
                "predicted_label": "yes",
                "gold_label": "yes",
                "correct": True,
            }
            for ex in chunk
        ]
        return rows, np.array([1.0, 2.0 / 3])

    return score, calls


EXAMPLES = [{"example_id": f"e{i}", "i": i} for i in range(10)]


def test_complete_file_reads_back(tmp_path):
    path = tmp_path / "a.jsonl"
    score, _ = _fake_scorer()
    assert evaluation.evaluate_file(path, _header(10), EXAMPLES, score, 4) == "written"
    f = records.read_records(path)
    assert [r["example_id"] for r in f.records] == [f"e{i}" for i in range(10)]
    assert f.records[1]["scores"][0] == 1 / 3  # floats round-trip exactly
    np.testing.assert_allclose(f.pooled_sum, [3.0, 2.0])  # 3 chunks
    assert not path.with_name("a.jsonl.partial").exists()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda b: b[: len(b) // 2], "no footer"),  # truncated mid-file
        (lambda b: b[:-5], "no footer"),  # footer cut
        (lambda b: b.replace(b'"e3"', b'"e9"'), "checksum mismatch"),  # edited record
        (lambda b: b"", "no footer"),  # empty
    ],
)
def test_damaged_file_is_named(tmp_path, damage, problem):
    path = tmp_path / "a.jsonl"
    evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(records.RecordsError, match=problem) as e:
        records.read_records(path)
    assert str(path) in str(e.value)


def test_crash_then_resume_equals_uninterrupted(tmp_path):
    ref = tmp_path / "ref.jsonl"
    evaluation.evaluate_file(ref, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    path = tmp_path / "b.jsonl"
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer(fail_at=3)[0], 4)
    partial = path.with_name("b.jsonl.partial")
    assert not path.exists() and partial.exists()
    # A kill in the middle of a write leaves half a line after the last commit.
    with open(partial, "ab") as f:
        f.write(b'{"kind":"record","example_id":"e8","sco')
    score, calls = _fake_scorer()
    assert evaluation.evaluate_file(path, _header(10), EXAMPLES, score, 4) == "resumed"
    assert calls == [2]  # only the last chunk was computed again
    assert path.read_bytes() == ref.read_bytes()
    # Complete: skipped without being opened for writing.
    before = os.stat(path)
    assert evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer()[0], 4) == "skipped"
    after = os.stat(path)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_disk_full_mid_file_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """ENOSPC while a chunk is made durable: the run stops with the OS error, the
    committed chunks stay, and a re-run with space again ends byte-identical."""
    import errno

    from jaxrobust.storage import files

    ref = tmp_path / "ref.jsonl"
    evaluation.evaluate_file(ref, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    syncs, real_sync = [0], files.AppendFile.sync

    def full_disk(self):
        syncs[0] += 1
        if syncs[0] == 3:  # header + first chunk are durable; the second chunk is not
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(self)

    monkeypatch.setattr(files.AppendFile, "sync", full_disk)
    path = tmp_path / "d.jsonl"
    with pytest.raises(OSError, match="No space left"):
        evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    assert not path.exists()
    monkeypatch.setattr(files.AppendFile, "sync", real_sync)
    score, calls = _fake_scorer()
    assert evaluation.evaluate_file(path, _header(10), EXAMPLES, score, 4) == "resumed"
    assert sum(calls) < len(EXAMPLES)  # committed work was kept
    assert path.read_bytes() == ref.read_bytes()


def test_partial_from_other_settings_restarts_saying_what_differs(tmp_path, caplog):
    path = tmp_path / "c.jsonl"
    with pytest.raises(RuntimeError):
        evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer(fail_at=2)[0], 4)
    score, calls = _fake_scorer()
    new = _header(10, data_fingerprint="new", config={"model": "m", "limit": 3})
    with caplog.at_level(logging.WARNING, logger="jaxrobust.storage.records"):
        evaluation.evaluate_file(path, new, EXAMPLES, score, 4)
    assert calls == [4, 4, 2]
    assert records.read_records(path).header["data_fingerprint"] == "new"
    assert "config.limit, data_fingerprint differ" in caplog.text
    assert "its records are dropped" in caplog.text


def test_partial_from_another_chunk_size_keeps_its_records(tmp_path, caplog):
    """Chunking is not part of a file's identity: committed records stay (logged)."""
    ref = tmp_path / "ref.jsonl"
    evaluation.evaluate_file(ref, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    path = tmp_path / "e.jsonl"
    with pytest.raises(RuntimeError):
        evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer(fail_at=3)[0], 4)
    score, calls = _fake_scorer()
    with caplog.at_level(logging.INFO, logger="jaxrobust.storage.records"):
        assert evaluation.evaluate_file(path, _header(10), EXAMPLES, score, 3) == "resumed"
    assert calls == [2]  # Examples 8 and 9 only: the 8 committed records were kept.
    assert "keeps its 8 committed records, written in chunks of 4; goes on in chunks of 3" in (
        caplog.text
    )
    assert records.read_records(path).records == records.read_records(ref).records


def test_complete_file_from_other_settings_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    evaluation.evaluate_file(path, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    with pytest.raises(records.RecordsError, match="config differ") as e:
        evaluation.evaluate_file(
            path, _header(10, config={"model": "other"}), EXAMPLES, _fake_scorer()[0], 4
        )
    assert str(path) in str(e.value)


def _without_schema(n: int) -> dict:
    header = _header(n)
    del header["schema_version"]
    return header


def test_file_from_before_schema_versions_reads_as_schema_1_and_is_kept(tmp_path):
    """Complete files written before headers carried `schema_version` read as schema 1;
    a run of a later schema refuses such a file by name (its header differs: its config
    lacks fields the new one has) and leaves it as it was."""
    assert records.SCHEMA_VERSION == 3
    path = tmp_path / "old.jsonl"
    evaluation.evaluate_file(path, _without_schema(10), EXAMPLES, _fake_scorer()[0], 4)
    assert b"schema_version" not in path.read_bytes()
    assert records.read_records(path).header["schema_version"] == 1
    before, score = path.read_bytes(), _fake_scorer()
    with pytest.raises(records.RecordsError, match="schema_version differ"):
        evaluation.evaluate_file(path, _header(10), EXAMPLES, score[0], 4)
    assert score[1] == [] and path.read_bytes() == before


def test_partial_from_before_schema_versions_restarts_with_a_versioned_header(tmp_path):
    """Its header line differs from the new one, so it is recomputed from the start (a
    resumed file keeping the old header line would not equal an uninterrupted run's)."""
    ref = tmp_path / "ref.jsonl"
    evaluation.evaluate_file(ref, _header(10), EXAMPLES, _fake_scorer()[0], 4)
    path = tmp_path / "old.jsonl"
    with pytest.raises(RuntimeError):
        evaluation.evaluate_file(path, _without_schema(10), EXAMPLES, _fake_scorer(2)[0], 4)
    score, calls = _fake_scorer()
    assert evaluation.evaluate_file(path, _header(10), EXAMPLES, score, 4) == "written"
    assert calls == [4, 4, 2] and path.read_bytes() == ref.read_bytes()
    assert json.loads(path.read_bytes().splitlines()[0])["schema_version"] == records.SCHEMA_VERSION


@pytest.mark.parametrize("schema", [records.SCHEMA_VERSION + 1, 0, "1"])
def test_unknown_schema_is_refused_by_name(tmp_path, schema):
    path = tmp_path / "new.jsonl"
    evaluation.evaluate_file(
        path, _header(10, schema_version=schema), EXAMPLES, _fake_scorer()[0], 4
    )
    with pytest.raises(records.RecordsError, match="record schema") as e:
        records.read_records(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------
# The runner on a tiny model.
# ---------------------------------------------------------------------------


def test_reference_run_records(reference):
    files = record_files(reference)
    assert len(files) == N_FILES
    f = records.read_records(reference / "records" / "tiny-t5" / "jr__toyre__re__toyre_u1.jsonl")
    assert f.header["provenance"] == "unobserved" and f.header["n_examples"] == 8
    r = f.records[0]
    assert set(r) >= {
        "example_id",
        "template_id",
        "provenance",
        "scores",
        "prediction",
        "predicted_label",
        "gold_label",
        "truncated",
        "correct",
    }
    assert r["predicted_label"] == r["option_labels"][int(np.argmax(r["scores"]))]
    (meta_path,) = (reference / "runs").glob("run-*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["git_commit"] and meta["package_version"]
    assert "evaluation.ModelSpec.preset = 'tiny'" in meta["gin_config"]
    assert set(meta["data_fingerprints"]) == {
        json.loads(b.splitlines()[0])["task"] for b in files.values()
    }


KILL_POINT = "driver: waiting to be killed"
DRIVER = f"""
import sys, threading
from jaxrobust import main
from jaxrobust.evaluation import runner
stop_at = int(sys.argv[1])
make_scorer = runner.make_scorer
def hanging(*args, **kwargs):
    score, calls = make_scorer(*args, **kwargs), [0]
    def wrapped(chunk):
        calls[0] += 1
        if calls[0] == stop_at:  # The test kills us while we wait here, forever.
            print({KILL_POINT!r}, flush=True)
            threading.Event().wait()
        return score(chunk)
    return wrapped
runner.make_scorer = hanging
sys.exit(main.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig, stop_at", [(signal.SIGKILL, 6), (signal.SIGTERM, 12)])
def test_kill_and_rerun(reference, tmp_path, sig, stop_at):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(REPO)])}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(stop_at), *eval_args(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # No deadline: reading blocks until the driver reports the kill point (or ends);
    # a hang is pytest-timeout's to stop.
    output = []
    for line in proc.stdout:
        output.append(line)
        if KILL_POINT in line:  # (a progress line without a newline may precede it)
            break
    else:
        proc.wait()
        pytest.fail(f"driver ended before the kill point:\n{''.join(output)[-3000:]}")
    proc.send_signal(sig)
    assert proc.wait() == -sig
    proc.stdout.close()
    # 2 chunks (4 examples each) per file: (stop_at - 1) // 2 files are complete,
    # and with an odd number of committed chunks a .partial holds one.
    done = sorted((out / "records" / "tiny-t5").glob("*.jsonl"))
    partials = sorted((out / "records" / "tiny-t5").glob("*.partial"))
    assert len(done) == (stop_at - 1) // 2 and len(partials) == 1
    stats = {p.name: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in done}

    run_in_process(out)

    assert record_files(out) == record_files(reference)  # byte for byte
    assert {
        p: (
            os.stat(out / "records" / "tiny-t5" / p).st_ino,
            os.stat(out / "records" / "tiny-t5" / p).st_mtime_ns,
        )
        for p in stats
    } == stats
    assert not list((out / "records" / "tiny-t5").glob("*.partial"))
    runs = sorted((out / "runs").glob("run-*.json"))
    files = json.loads(runs[-1].read_text())["models"]["tiny-t5"]["files"]
    statuses = sorted(files.values())
    assert statuses.count("skipped") == len(done) and statuses.count("resumed") == 1


def test_corrupt_and_truncated_files_are_recomputed(reference, tmp_path, caplog):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    model_dir = out / "records" / "tiny-t5"
    corrupt = model_dir / "jr__toyqa__qa__toyqa_o2.jsonl"
    truncated = model_dir / "jr__toyre__re__toyre_o1.jsonl"
    # One edited value (a flipped flag): the checksum no longer matches.
    corrupt.write_bytes(corrupt.read_bytes().replace(b'"truncated":false', b'"truncated":true', 1))
    truncated.write_bytes(truncated.read_bytes()[:700])
    for path in (corrupt, truncated):
        with pytest.raises(records.RecordsError) as e:
            records.read_records(path)
        assert str(path) in str(e.value)
    with caplog.at_level(logging.ERROR, logger="jaxrobust.evaluation"):
        run_in_process(out)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert str(corrupt) in logged and str(truncated) in logged
    assert record_files(out) == record_files(reference)
    assert corrupt.with_name(corrupt.name + ".corrupt").exists()
    assert truncated.with_name(truncated.name + ".corrupt").exists()


def test_default_split_is_each_data_sets_own_and_headers_name_it(tmp_path):
    """EvalOptions.split None: every task is read in its data set's standard evaluation
    split (`registry.split_for`; here 'validation', the set has no test split), and the
    record header names the split it was read in."""
    from jaxrobust.tasks import registry

    assert evaluation.EvalOptions().split is None
    sys.path.insert(0, str(FIXTURES))
    import eval_tasks

    def read(split):
        if split != "validation":
            raise AssertionError(f"read split {split!r}")
        return eval_tasks._qa_rows(split)[:4]

    spec = registry.TaskSpec(
        dataset="toyval",
        format="qa",
        splits=("train", "validation"),
        read=read,
        prepare=eval_tasks._qa_prepare,
        sample=eval_tasks._qa_rows("test")[0],
        family="toyqa",
    )
    task = registry.register(spec, eval_tasks.QA_BANK[0])
    args = eval_args(tmp_path)
    args[3] = f"--gin.MIXTURES=['{task}']"
    from jaxrobust import main

    assert main.main(args) == 0
    path = records.records_path(tmp_path, "tiny-t5", task)
    header = records.read_records(path).header
    assert header["config"]["split"] == "validation" and header["n_examples"] == 4
    (run,) = (tmp_path / "runs").glob("run-*.json")
    assert json.loads(run.read_text())["splits"] == {task: "validation"}
