"""README's command blocks run as written, plus only the CPU overlay and a temporary folder.

Every fenced `bash` / `sh` / `shell` block of README.md is parsed here (so a README
edit that breaks a command fails this test). Each command is run in a subprocess:

* `python -m jaxrobust.main eval` / `train_prompt`: with `--gin_file=gin_configs/tiny.gin`
  appended (last), as the README says for a CPU-sized run;
* `python -m jaxrobust.main report` / `score`, and other `python -m jaxrobust.<module>`
  command lines: as written;
* `./run_tpu.sh ...`: with `--dry-run` (it prints the `gcloud` commands), and the
  command it would run on every worker is then run here too (as above);
* paths under `/data/`, `/shared/` and `gs://my-bucket/` are moved into a temporary
  folder (the only other change).

Exempt, by name: installs (`pip`), the test suite, the full study (`study`; it has
tests/test_study.py), the papers' reproductions (commands naming `sun2023` or
`ni2023`; tests/test_reproduction.py runs them on a few templates per group),
benchmarks, `srun` and `gcloud`, and commands naming a file the user supplies
(`/path/to/...`, such as a checkout of another project: no test has it). A command of
any other kind fails the test: it must be run here or exempted here.

Four CPU devices are forced (`--xla_force_host_platform_device_count=4`) so the TPU
examples' `MODEL_PARALLEL=4` runs as written.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TINY = "--gin_file=gin_configs/tiny.gin"
MAIN = ["python", "-m", "jaxrobust.main"]
PATH_PREFIXES = ("gs://my-bucket/", "/data/", "/shared/")
# Modules whose README command another test runs as written (too slow to run twice).
RUN_ELSEWHERE = {"jaxrobust.study.format_grid": "tests/test_prompteval.py"}


def readme_blocks() -> list[tuple[str, str]]:
    """(section heading, block text) of every shell block in README.md, in order."""
    text = README.read_text()
    out, section = [], ""
    for m in re.finditer(r"^(## [^\n]*)$|^```(bash|sh|shell)\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            section = m.group(1)[3:].strip()
        else:
            out.append((section, m.group(3)))
    return out


def block_commands(block: str) -> list[list[str]]:
    """The commands of a block as argv lists: continuations joined, comments dropped,
    `A && B` split, `NAME=value` lines substituted into later `$NAME`."""
    variables: dict[str, str] = {}
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" # ")[0].strip()
        if not line or line.startswith("#"):
            continue
        for name, value in variables.items():
            line = line.replace(f"${name}", value)
        m = re.fullmatch(r"([A-Z_]+)=(.*)", line)
        if m:
            variables[m.group(1)] = shlex.split(m.group(2))[0]
            continue
        for part in line.split("&&"):
            commands.append(shlex.split(part))
    return commands


# The papers' reproduction runs (their run gins and output folders).
PAPERS = ("sun2023", "ni2023")


def exempt(argv: list[str]) -> bool:
    """Installs, the suite, the full study, the papers' reproductions, benchmarks, SLURM
    and gcloud."""
    return (
        argv[0] in ("pip", "srun", "gcloud")
        or any("/path/to/" in arg for arg in argv)
        or argv[:3] == ["python", "-m", "pytest"]
        or (argv[:3] == MAIN and argv[3] == "study")
        or (argv[0] == "python" and argv[1].startswith("benchmarks/"))
        or any(paper in arg for arg in argv for paper in PAPERS)
    )


def localised(argv: list[str], tmp: pathlib.Path) -> list[str]:
    """`argv` with the README's example folders moved under `tmp`."""
    out = []
    for arg in argv:
        for prefix in PATH_PREFIXES:  # Where a path starts: the argument, after = or a quote.
            name = prefix.strip("/").replace("gs://", "gs_").replace("/", "_")
            arg = re.sub(rf"(^|(?<=[='\"])){re.escape(prefix)}", f"{tmp}/{name}/", arg)
        out.append(arg)
    return out


def planned(argv: list[str]) -> list[list[str]]:
    """What runs here for one README command (see the module docstring); [] if exempt."""
    if exempt(argv):
        return []
    if argv[0] == "./run_tpu.sh":
        inner = argv[argv.index("--") + 1 :]
        return [["./run_tpu.sh", "--dry-run", *argv[1:]], *planned(inner)]
    if argv[:3] == MAIN and argv[3] in ("eval", "train_prompt"):
        return [argv + [TINY]]
    if argv[:3] == MAIN and argv[3] in ("report", "score"):
        return [argv]
    if argv[:2] == ["python", "-m"] and argv[2] in RUN_ELSEWHERE:
        return []
    if argv[:2] == ["python", "-m"] and argv[2].startswith("jaxrobust.") and argv[:3] != MAIN:
        return [argv]  # Another module's command line, as written.
    raise AssertionError(
        f"README command {shlex.join(argv)!r} is neither run by tests/test_readme_commands.py "
        "nor exempted there"
    )


def run(argv: list[str], tmp: pathlib.Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    proc = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, (
        f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}"
    )
    return proc


BLOCKS = [
    (section, block)
    for section, block in readme_blocks()
    if any(planned(argv) for argv in block_commands(block))
]


def test_readme_blocks_are_found_and_classified():
    """Every command is run or exempt by name; the documented commands are all here."""
    runs = [cmd for _, b in readme_blocks() for argv in block_commands(b) for cmd in planned(argv)]
    for module, test in RUN_ELSEWHERE.items():
        assert module.rsplit(".", 1)[1] in (REPO / test).read_text(), (module, test)
    kinds = {cmd[3] if cmd[:3] == MAIN else cmd[0] for cmd in runs}
    assert {"eval", "train_prompt", "report", "score", "./run_tpu.sh"} <= kinds
    sections = {section for section, _ in BLOCKS}
    assert {"Evaluating robustness", "Training soft prompts", "Models and checkpoints"} <= sections


@pytest.mark.heavy
@pytest.mark.parametrize(
    "section,block", BLOCKS, ids=[f"{s.split(':')[0]}-{i}" for i, (s, _) in enumerate(BLOCKS)]
)
def test_readme_block_runs(section, block, tmp_path, shared_data_dir):
    """The block's commands, in order, each exiting 0 (a later one reads what an
    earlier one wrote: train_prompt's prompt.npy, eval's records for report)."""
    for argv in block_commands(block):
        for cmd in planned(argv):
            proc = run(localised(cmd, tmp_path), tmp_path)
            if cmd[0] == "./run_tpu.sh":
                inner = cmd[cmd.index("--") + 1 :]
                assert "gcloud compute tpus tpu-vm ssh" in proc.stdout
                assert shlex.join(inner[:4]).replace("'", "") in proc.stdout.replace("\\", "")
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    if any(argv[3:4] == ["eval"] for argv in map(lambda a: a[:4], block_commands(block))):
        assert any("/records/" in w and w.endswith("model.json") for w in written), written
