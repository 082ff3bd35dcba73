"""Runs that would exit 0 with wrong or mixed numbers stop instead, before they write.

One output folder holds one run per model name (another LIMIT, other weights by
content, on new templates: refused, the folder's bytes unchanged); a folder (or
training workdir) is held by one run at a time, a lock left by a killed run is
taken over; a NaN score stops the run naming task, template and example; bad
settings, macro typos and missing gin files are named before anything loads.

Runs use the toy tasks of `tests/fixtures/eval_tasks.py` and the random tiny T5
of `gin_configs/tiny.gin` (8 examples per task, chunks of 4).
"""

import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time

import flax.linen as nn
import jax
import numpy as np
import pytest
from etils import epath

from jaxrobust import inference, main
from jaxrobust.evaluation import guards, runner
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.storage import files, records

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))
import eval_tasks  # noqa: E402, F401  (registers jr:toyqa:qa and jr:toyre:re)

QA = "jr:toyqa:qa:toyqa_"


def eval_args(out, *bindings: str, tasks=("o1",)) -> list[str]:
    return [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        f"--gin.MIXTURES={[QA + t for t in tasks]!r}",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['eval_tasks']",
        *(f"--gin.{b}" for b in bindings),
    ]


def run_eval(out, *bindings: str, tasks=("o1",)) -> int:
    return main.main(eval_args(out, *bindings, tasks=tasks))


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def model_files(out) -> list[str]:
    return sorted(p.name for p in (out / "records" / "tiny-t5").iterdir())


# ---------------------------------------------------------------------------
# One run per model name (issue 19.2).
# ---------------------------------------------------------------------------


def test_another_limit_on_new_templates_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "out"
    assert run_eval(out, tasks=("o1",)) == 0
    before = snapshot(out)
    with pytest.raises(guards.RunIdentityError) as e:
        run_eval(out, "LIMIT=4", tasks=("u1",))
    message = str(e.value)
    assert "limit: 8 there (jr__toyqa__qa__toyqa_o1.jsonl), 4 here" in message
    assert "'tiny-t5'" in message and "Nothing was written" in message
    assert snapshot(out) == before  # model.json and the run files included.
    # The same settings on new templates are the same run: accepted.
    assert run_eval(out, tasks=("u1",)) == 0
    assert model_files(out) == [
        "jr__toyqa__qa__toyqa_o1.jsonl",
        "jr__toyqa__qa__toyqa_u1.jsonl",
        "model.json",
    ]


def test_another_seed_is_refused_before_loading(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run_eval(out) == 0
    before = snapshot(out)
    monkeypatch.setattr(runner, "build_engine", _must_not_load)
    with pytest.raises(guards.RunIdentityError, match="seed: 0 there .*, 1 here"):
        run_eval(out, "evaluation.ModelSpec.seed=1", tasks=("u1",))
    assert snapshot(out) == before


def test_a_changed_report_field_is_refused(tmp_path):
    out = tmp_path / "out"
    assert run_eval(out) == 0
    before = snapshot(out)
    with pytest.raises(guards.RunIdentityError, match="series: '' there, 'flan' here"):
        run_eval(out, "evaluation.ModelSpec.series='flan'", tasks=("u1",))
    assert snapshot(out) == before


def _must_not_load(*args, **kwargs):
    raise AssertionError("the model was loaded")


def _save_tiny_t5(directory: pathlib.Path, seed: int) -> None:
    family = inference.get_family("t5")
    config = family.get_preset("tiny", vocab_size=ByteTokenizer().vocab_size)
    params = nn.meta.unbox(jax.jit(family.init(config))(jax.random.PRNGKey(seed)))["params"]
    family.export_hf(params, config, directory)


def test_new_weights_at_the_same_path_are_refused(tmp_path):
    """The weights are identified by content: other weights copied over the checkpoint
    directory are another run, though every setting (the path too) is the same."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    _save_tiny_t5(ckpt, seed=0)
    assert run_eval(out, f"TINY_CHECKPOINT='{ckpt}'", tasks=("o1",)) == 0
    header = records.read_records(out / "records/tiny-t5/jr__toyqa__qa__toyqa_o1.jsonl").header
    held = header["config"]["weights_digest"]
    assert held.startswith("sha256:")
    # Same weights, new template: accepted.
    assert run_eval(out, f"TINY_CHECKPOINT='{ckpt}'", tasks=("o2",)) == 0
    before = snapshot(out)
    _save_tiny_t5(ckpt, seed=1)  # New weights, same path.
    with pytest.raises(guards.RunIdentityError) as e:
        run_eval(out, f"TINY_CHECKPOINT='{ckpt}'", tasks=("u1",))
    assert f"weights_digest {held!r} there, 'sha256:" in str(e.value)
    assert snapshot(out) == before


# ---------------------------------------------------------------------------
# One run per folder at a time (issue 19.3).
# ---------------------------------------------------------------------------

HOLDER = """
import sys
from jaxrobust.storage import files
lock = files.lock_folder(sys.argv[1], "holder-test")
print("held", flush=True)
sys.stdin.read()  # Holds the lock until the test closes the pipe.
lock.release()
"""


@pytest.fixture
def held_folder(tmp_path):
    """(folder, holder process): a subprocess holds the folder's lock until its stdin closes."""
    folder = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline() == "held\n"  # Blocks until the lock is held.
        yield folder, proc
    finally:
        proc.stdin.close()
        assert proc.wait() == 0
        proc.stdout.close()


def test_a_held_folder_is_refused_naming_the_holder(held_folder):
    folder, proc = held_folder
    with pytest.raises(files.LockedError) as e:
        files.lock_folder(folder, "eval")
    message = str(e.value)
    assert f"holder-test on host {socket.gethostname()}, pid {proc.pid}, started 20" in message
    # The eval command stops there, having written nothing.
    with pytest.raises(files.LockedError, match=f"pid {proc.pid}"):
        run_eval(folder)
    assert [p.name for p in folder.iterdir()] == [files.LOCK_NAME]
    # A training workdir likewise.
    from jaxrobust import evaluation, training

    with pytest.raises(files.LockedError, match=f"pid {proc.pid}"):
        training.train(
            evaluation.ModelSpec(name="m", tokenizer="byte"),
            str(folder),
            training.DataOptions(task="jr:none:qa"),
        )


def test_the_lock_is_free_again_after_the_holder_ends(tmp_path):
    folder = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout.readline() == "held\n"
    proc.stdin.close()
    assert proc.wait() == 0
    proc.stdout.close()
    with files.lock_folder(folder, "eval") as lock:
        assert json.loads((folder / files.LOCK_NAME).read_text())["pid"] == os.getpid()
        assert lock.holder["command"] == "eval"
    assert not folder.exists()  # Made for the lock, left empty: removed again.


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, caplog):
    folder = tmp_path / "out"
    folder.mkdir()
    pid = _dead_pid()
    stale = {"command": "eval", "host": socket.gethostname(), "pid": pid, "started": "x"}
    (folder / files.LOCK_NAME).write_text(json.dumps(stale))
    with caplog.at_level(logging.WARNING, logger="jaxrobust.storage.files"):
        lock = files.lock_folder(folder, "eval")
    logged = caplog.text
    assert "taking over the lock left by" in logged and f"pid {pid}" in logged
    assert "its process is gone" in logged
    assert json.loads((folder / files.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert os.listdir(folder) == []


def test_object_store_lease_refused_while_fresh_taken_over_when_lapsed(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(files, "is_local", lambda path: False)
    folder = epath.Path(tmp_path) / "bucket"
    folder.mkdir()
    lease = folder / files.LOCK_NAME
    other = {"command": "eval", "host": "tpu-host-3", "pid": 12, "started": "then"}
    lease.write_text(json.dumps({**other, "renewed": time.time()}))
    with pytest.raises(
        files.LockedError, match="eval on host tpu-host-3, pid 12.*lease was renewed"
    ):
        files.lock_folder(folder, "eval")
    lease.write_text(json.dumps({**other, "renewed": time.time() - 2 * files.LEASE_S}))
    with caplog.at_level(logging.WARNING, logger="jaxrobust.storage.files"):
        lock = files.lock_folder(folder, "eval")
    assert "taking over the lease of eval on host tpu-host-3, pid 12" in caplog.text
    assert json.loads(lease.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lease.exists()


# ---------------------------------------------------------------------------
# A NaN score stops the run (issue 19.4).
# ---------------------------------------------------------------------------


def test_a_nan_score_stops_the_run_naming_task_template_and_example(tmp_path, monkeypatch):
    make_scorer = runner.make_scorer

    def nan_for_q5(*args, **kwargs):
        score = make_scorer(*args, **kwargs)

        def scored(chunk):
            rows, pooled = score(chunk)
            for r in rows:
                if r["example_id"] == "q5":
                    r["scores"][1] = float("nan")
            return rows, pooled

        return scored

    monkeypatch.setattr(runner, "make_scorer", nan_for_q5)
    out = tmp_path / "out"
    with pytest.raises(guards.NonFiniteScoreError) as e:
        run_eval(out)
    assert f"task {QA}o1, template 'toyqa_o1', example 'q5': option 'yes' scored nan" in str(
        e.value
    )
    # The first chunk (q0..q3) stays committed; the chunk holding q5 was not written.
    partial = out / "records/tiny-t5/jr__toyqa__qa__toyqa_o1.jsonl.partial"
    lines = [json.loads(x) for x in partial.read_text().splitlines()]
    assert [r["example_id"] for r in lines if r["kind"] == "record"] == ["q0", "q1", "q2", "q3"]
    assert not partial.with_name("jr__toyqa__qa__toyqa_o1.jsonl").exists()


def test_an_engine_error_names_task_template_and_example(tmp_path, monkeypatch):
    class Engine:  # Fails as the engine does, counting this host's examples.
        def rank_classify(self, inputs, options, **kwargs):
            raise ValueError("example 2: an option with no tokens (['', 'yes'])")

    monkeypatch.setattr(runner, "build_engine", lambda spec, options: (Engine(), "sha256:x"))
    with pytest.raises(ValueError) as e:
        run_eval(tmp_path / "out")
    assert str(e.value).startswith("template 'toyqa_o1' (toyqa), example 'q2': an option")
    assert f"while scoring task {QA}o1 (template 'toyqa_o1'), examples 'q0'..'q3'" in (
        "\n".join(e.value.__notes__)
    )


# ---------------------------------------------------------------------------
# Settings checked up front (issue 19.7).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "binding, message",
    [
        ("LIMT=4", "--gin.LIMT: no loaded gin file uses the macro LIMT .* did you mean LIMIT"),
        ("LIMIT=-1", r"EvalOptions.limit=-1: expected an integer >= 1, or None .*\(gin: LIMIT\)"),
        ("CHUNK_SIZE=0", r"EvalOptions.chunk_size=0: expected an integer >= 1 \(gin: CHUNK_SIZE\)"),
        ("BATCH_SIZE=0", r"EvalOptions.batch_size=0: expected an integer >= 1 \(gin: BATCH_SIZE"),
        (
            "MODE='sunn'",
            r"EvalOptions.mode='sunn': expected one of \('standard', 'sun', 'ni', 'ni_free'\)",
        ),
        # 8 forced host devices (tests/conftest.py): the data axis is 8.
        ("BATCH_SIZE=12", r"BATCH_SIZE=12 must be a multiple of the mesh's data axis \(8 = 8 dev"),
        ("SPLIT='train'", "task jr:toyqa:qa:toyqa_o1: data set toyqa has no split 'train'"),
    ],
)
def test_bad_settings_are_named_before_anything_loads(tmp_path, monkeypatch, binding, message):
    monkeypatch.setattr(runner, "build_engine", _must_not_load)
    with pytest.raises(ValueError, match=message):
        run_eval(tmp_path / "out", binding)
    assert not (tmp_path / "out").exists()


def test_an_empty_task_is_found_before_computing(tmp_path, monkeypatch):
    from jaxrobust.tasks import registry

    spec = registry.TaskSpec(
        dataset="toyempty",
        format="qa",
        splits=("test",),
        read=lambda split: [],
        prepare=eval_tasks._qa_prepare,
        sample=eval_tasks._qa_rows("test")[0],
        family="toyqa",
    )
    registry.register(spec, eval_tasks.QA_BANK[0])
    monkeypatch.setattr(runner, "build_engine", _must_not_load)
    args = eval_args(tmp_path / "out")
    args[3] = f"--gin.MIXTURES=['{QA}o1', 'jr:toyempty:qa:toyqa_o1']"
    with pytest.raises(ValueError, match=r"jr:toyempty:qa:toyqa_o1 \(split 'test'\); LIMIT=8"):
        main.main(args)
    assert not (tmp_path / "out").exists()


def test_missing_gin_files_are_named():
    with pytest.raises(ValueError, match="eval: no --gin_file given.*gin_configs/runs/eval.gin"):
        main.main(["eval", "--gin.OUTPUT_DIR='/tmp/x'"])
    with pytest.raises(ValueError, match=r"none of the gin files \['gin_configs/tiny.gin'\]"):
        main.main(["eval", "--gin_file=gin_configs/tiny.gin"])


def test_finite_check_passes_real_scores():
    rows = [{"example_id": "a", "scores": [-1.0, -2.5], "template_id": "t"}]
    guards.check_finite({"task": "x"}, rows, np.zeros(3))
    with pytest.raises(guards.NonFiniteScoreError, match="example 'a': option #1 scored -inf"):
        guards.check_finite({"task": "x"}, [{**rows[0], "scores": [-1.0, -np.inf]}], None)


# ---------------------------------------------------------------------------
# A failed start writes nothing (issue 15).
# ---------------------------------------------------------------------------


def test_eval_with_a_missing_checkpoint_writes_nothing(tmp_path):
    """README's model-gin command with a CHECKPOINT_DIR that holds no model: refused
    naming it, and the output folder is not even made (no model.json, no run file)."""
    out = tmp_path / "out"
    args = [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/models/flan_t5_small.gin",
        f"--gin.CHECKPOINT_DIR='{tmp_path / 'no_ckpt'}'",
        f"--gin.MIXTURES=['{QA}o1']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['eval_tasks']",
    ]
    with pytest.raises(Exception, match="no_ckpt"):
        main.main(args)
    assert not out.exists()


def test_train_prompt_on_a_data_set_without_a_train_split_writes_nothing(tmp_path):
    """BoolQ holds only validation: training's default split is refused naming the task
    and the splits it has, before the model loads, and the workdir is not made (before:
    train_settings.json and template_split.json were left behind)."""
    work = tmp_path / "work"
    args = [
        "train_prompt",
        "--gin_file=gin_configs/runs/train_prompt.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.TASK='jr:boolq:qa'",
        f"--gin.WORKDIR='{work}'",
    ]
    with pytest.raises(
        ValueError,
        match=r"task jr:boolq:qa:\S+: data set boolq has no split 'train'; it has \['validation'\]",
    ):
        main.main(args)
    assert not work.exists()
