"""Writes the behaviour-preservation golden files (tests/test_golden.py compares with them).

Two runs through the CLI, each in a fresh process so nothing is shared:
  eval:  the tiny random T5 (gin_configs/tiny.gin) on the toy tasks of
         tests/fixtures/eval_tasks.py, 2 tasks x 4 templates, then `report`;
  study: the reduced built-in study (gin_configs/study_tiny.gin), one task.
Kept: every record file byte for byte and the report's tables (not the PNGs).
Regenerate only in a commit that says why the numbers changed:

  python tests/golden/regenerate.py
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = REPO / "tests" / "fixtures"
EVAL_REPORT = ("summary.md", "summary.csv", "templates.md", "templates.csv")
STUDY_REPORT = ("study.md", "study.json", "summary.md", "templates.md")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # One host device, whatever the caller forced (tests/conftest.py forces 8): a
    # data-parallel mesh changes the numerics in the last bits.
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "force_host_platform_device_count" not in f)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(FIXTURES), str(REPO), *filter(None, [env.get("PYTHONPATH", "")])]
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _cli(*argv: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "jaxrobust.main", *argv], cwd=REPO, env=_env(), check=True
    )


def run_eval(out: pathlib.Path) -> None:
    _cli(
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toyqa:qa#all', 'jr:toyre:re#all']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['eval_tasks']",
    )
    _cli("report", f"--output_dir={out}")


def run_study(out: pathlib.Path) -> None:
    _cli(
        "study",
        "--gin_file=gin_configs/runs/study.gin",
        "--gin_file=gin_configs/study_tiny.gin",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.pipeline.StudyOptions.eval_tasks=('yn',)",
    )


_FOOTER_SHA = re.compile(rb'("kind":"footer".*"sha256":")[0-9a-f]{64}"')


def normalise(data: bytes, out: pathlib.Path) -> bytes:
    """The run's folder becomes `$OUT` (record headers name checkpoint paths), and
    the footer's checksum, which covers those paths, becomes `<sha256>`."""
    data = data.replace(str(out).encode(), b"$OUT")
    return _FOOTER_SHA.sub(rb'\1<sha256>"', data)


def collect_eval(out: pathlib.Path) -> dict[str, bytes]:
    paths = {f"records/{p.name}": p for p in (out / "records" / "tiny-t5").glob("*.jsonl")}
    paths.update({f"report/{n}": out / "report" / n for n in EVAL_REPORT})
    return {rel: normalise(p.read_bytes(), out) for rel, p in sorted(paths.items())}


def collect_study(out: pathlib.Path) -> dict[str, bytes]:
    report = out / "eval" / "report"
    paths = {f"report/{n}": report / n for n in STUDY_REPORT}
    for p in (out / "eval" / "records").rglob("*.jsonl"):
        paths[f"records/{p.parent.name}/{p.name}"] = p
    return {rel: normalise(p.read_bytes(), out) for rel, p in sorted(paths.items())}


def read_golden(name: str) -> dict[str, bytes]:
    root = HERE / name
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def machine() -> dict[str, str]:
    """What the bytes depend on besides the code: XLA compiles for this CPU."""
    import jax

    model = ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "jax": jax.__version__}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        run_eval(tmp / "eval")
        run_study(tmp / "study")
        for name, files in (
            ("eval", collect_eval(tmp / "eval")),
            ("study", collect_study(tmp / "study")),
        ):
            shutil.rmtree(HERE / name, ignore_errors=True)
            for rel, data in files.items():
                path = HERE / name / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    (HERE / "machine.json").write_text(json.dumps(machine(), indent=2) + "\n")


if __name__ == "__main__":
    main()
