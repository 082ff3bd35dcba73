"""The reduced study is byte-for-byte reproducible under any load and core count.

Two fresh processes run the same reduced study (gin_configs/study_tiny.gin):
one pinned to a single core (`os.sched_setaffinity`, what `taskset -c 0`
does), one on every core while a busy-loop process competes for them, and as
seed 0 of a two-seed run (on a machine with two cores or more, the seeds run
side by side as worker processes: `jaxrobust.study.workers`). Their
`study.json`, record files and report tables must be identical bytes (paths
normalised, as the golden files are: tests/golden/regenerate.py).

What this does not cover, by design: another CPU type. XLA compiles for the
host's instruction set (tests/golden/regenerate.py records the CPU), so
another CPU may round differently; README ("The built-in study") says what
to expect there.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", REPO / "tests/golden/regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(out: pathlib.Path, env: dict, cpus: set[int] | None, *extra: str) -> str:
    argv = [
        sys.executable,
        "-m",
        "jaxrobust.main",
        "study",
        "--gin_file=gin_configs/runs/study.gin",
        "--gin_file=gin_configs/study_tiny.gin",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.pipeline.StudyOptions.eval_tasks=('yn',)",
        *extra,
    ]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    done = subprocess.run(argv, cwd=REPO, env=env, preexec_fn=pin, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


@pytest.mark.heavy
def test_reduced_study_is_byte_identical_on_one_core_and_on_busy_cores(tmp_path):
    regenerate = _regenerate()
    env = regenerate._env()
    one_core = {min(os.sched_getaffinity(0))}
    _study(tmp_path / "one_core", env, one_core)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        log = _study(tmp_path / "busy", env, None, "--gin.SEEDS=[0, 1]")
    finally:
        busy.kill()
        busy.wait()
    if len(os.sched_getaffinity(0)) >= 2:
        assert "[seed 1] stage" in log and "2 at a time" in log, log[-2000:]
    assert (tmp_path / "busy" / "report" / "study.md").exists()
    a = regenerate.collect_study(tmp_path / "one_core")
    b = regenerate.collect_study(tmp_path / "busy" / "seed_0")
    assert "report/study.json" in a and sum(k.startswith("records/") for k in a) == 5 * 12
    assert sorted(a) == sorted(b)
    differ = [name for name in a if a[name] != b[name]]
    assert not differ, differ
    # The pretrained and tuned weights too (not only what the report shows).
    for stage in ("pretrain", "tune", "ft_kl"):
        weights = "hf_model/model.safetensors"
        first = (tmp_path / "one_core" / stage / weights).read_bytes()
        assert first == (tmp_path / "busy" / "seed_0" / stage / weights).read_bytes(), stage
