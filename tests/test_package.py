"""Packaging and import hygiene: installs as documented, imports stay light,
and the CI rule for tests that need the shared data."""

import ast
import json
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


# Every module of these layers, found by walking the packages (a new file is covered
# without editing this test), and the checkpoint readers: none may pull in SeqIO,
# TensorFlow or gin.
LIGHT_LAYERS = ("models", "parallel", "inference")
IMPORT_ALL = """
import importlib, json, pkgutil, sys
names = []
for layer in {layers!r}:
    package = importlib.import_module("jaxrobust." + layer)
    names.append(package.__name__)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in names + ["jaxrobust.checkpoints"]:
    importlib.import_module(name)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"seqio", "tensorflow", "gin"}})
print(json.dumps({{"imported": names, "heavy": loaded}}))
"""


def test_every_model_parallel_and_inference_module_imports_no_seqio_tensorflow_or_gin():
    code = IMPORT_ALL.format(layers=LIGHT_LAYERS)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    result = json.loads(out.splitlines()[-1])
    on_disk = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for layer in LIGHT_LAYERS
        for p in (REPO / "jaxrobust" / layer).rglob("*.py")
    }
    assert set(result["imported"]) == on_disk  # Every file of the three layers was imported.
    assert {"jaxrobust.inference.generation", "jaxrobust.models.prompts"} <= on_disk
    assert result["heavy"] == []


def _imports_gin(path: pathlib.Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(n == "gin" or n.startswith("gin.") for n in names):
            return True
    return False


def test_no_gin_import_in_library_code():
    """Gin stays at the edge: only the entry point (`jaxrobust/main.py`) imports it."""
    files = list((REPO / "jaxrobust").rglob("*.py")) + list((REPO / "tasks").rglob("*.py"))
    importers = sorted(str(p.relative_to(REPO)) for p in files if _imports_gin(p))
    assert importers == ["jaxrobust/main.py"]


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


@pytest.mark.parametrize("require", ["", "1"])
def test_data_gated_tests_skip_or_fail_under_require_data(tmp_path, require):
    """Without the shared data a test that needs it skips, unless `.ci/run`'s
    JAXROBUST_REQUIRE_DATA is set: then it fails, so CI cannot stay green without it.

    Both gates: the `shared_data_dir` fixture (no data folder) and a test's own
    check for a subfolder (a data folder without the SemEval scorer vectors).
    """
    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["JAXROBUST_REQUIRE_DATA"] = require
    # A fixture that fails reports an error, a test body a failure: both turn CI red.
    wanted = ("1 error", "1 failed") if require else ("1 skipped",)
    for data_dir in (tmp_path / "absent", tmp_path / "data"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:xdist",
                "tests/test_semeval_scorer.py::test_malformed_file_rejected_with_line_numbers",
            ],
            cwd=REPO,
            env=dict(env, JAXROBUST_DATA_DIR=str(data_dir)),
            capture_output=True,
            text=True,
        )
        assert any(w in done.stdout for w in wanted), done.stdout[-2000:]
        assert done.returncode == (1 if require else 0)
        if require:
            assert "JAXROBUST_REQUIRE_DATA is set" in done.stdout


def test_readme_layout_table_names_every_folder():
    """README's "Where things live" lists each package folder, and each one it lists exists."""
    import re

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Where things live", 1)[1]
    listed = set(re.findall(r"^\| `([^`]+)` \|", section, re.M))
    for name in listed:
        assert (REPO / name.rstrip("/")).exists(), name
    packages = {f"jaxrobust/{p.parent.name}/" for p in (REPO / "jaxrobust").glob("*/__init__.py")}
    assert packages <= listed, sorted(packages - listed)


def test_layers_import_only_the_layers_above_them():
    """The order of README's "Where things live" table is the import order: no module
    imports (even inside a function) from a layer listed below its own."""
    import ast
    import re

    section = (REPO / "README.md").read_text().split("## Where things live", 1)[1]
    order = [
        name.rstrip("/").removeprefix("jaxrobust/").removesuffix(".py")
        for name in re.findall(r"^\| `([^`]+)` \|", section, re.M)
        if name.startswith(("jaxrobust/", "tasks/"))
    ]

    def layer(module: str) -> str | None:
        parts = module.split(".")
        if parts[0] != "jaxrobust" or len(parts) < 2:
            return None
        return parts[1] if parts[1] in order else None

    wrong = []
    files = [*(REPO / "jaxrobust").rglob("*.py"), *(REPO / "tasks").rglob("*.py")]
    for path in files:
        rel = path.relative_to(REPO).parts
        own = "tasks" if rel[0] == "tasks" else rel[1].removesuffix(".py")
        if own not in order:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                other = layer(name)
                if other and order.index(other) > order.index(own):
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, wrong
