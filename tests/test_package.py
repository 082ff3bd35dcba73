"""Packaging and import hygiene: installs as documented, imports stay light."""

import os
import pathlib
import subprocess
import sys

import pytest

from jaxrobust import main

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_main_score_runs_and_labels_random_weights(capsys):
    assert main.main(["score"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out
    assert "phrasings of the same question answered alike" in out


def test_models_and_engine_import_no_seqio_tensorflow_or_gin():
    code = (
        "import sys\n"
        "import jaxrobust.models.t5, jaxrobust.checkpoints, jaxrobust.parallel.partitioning\n"
        "import jaxrobust.inference.tokenizer\n"
        "bad = [m for m in ('seqio', 'tensorflow', 'gin') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_no_gin_import_in_library_code():
    """Gin stays at the edge: only the entry point (`jaxrobust/main.py`) imports it."""
    files = list((REPO / "jaxrobust").rglob("*.py")) + list((REPO / "tasks").rglob("*.py"))
    offenders = [
        str(p.relative_to(REPO))
        for p in files
        if p != REPO / "jaxrobust" / "main.py"
        and any(
            line.strip().startswith(("import gin", "from gin"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


@pytest.mark.heavy
def test_non_editable_install_imports_from_outside_the_repo(tmp_path):
    """`pip install .` (no editable finder) provides jaxrobust and jaxrobust.tasks."""
    env = dict(os.environ, PIP_NO_INPUT="1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(REPO),
        ],
        check=True,
        env=env,
    )
    (wheel,) = (tmp_path / "wheel").glob("jaxrobust-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        env=env,
    )
    assert not (site / "tasks").exists(), "a top-level `tasks` package was installed"
    assert (site / "jaxrobust" / "tasks" / "banks").is_dir()
    code = (
        "import jaxrobust, jaxrobust.tasks, jaxrobust.models.t5\n"
        "print(jaxrobust.__file__); print(jaxrobust.tasks.__file__)\n"
        "print(len(jaxrobust.tasks.TASK_NAMES))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(site)),
    ).stdout.split()
    assert out[0].startswith(str(site)) and out[1].startswith(str(site))
    assert int(out[2]) > 100
