"""run_tpu.sh: the command lines its --dry-run prints, and its usage errors."""

import pathlib
import shlex
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "run_tpu.sh"


def _run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)


def test_dry_run_prints_every_command():
    out = _run(
        "--tpu",
        "rob",
        "--zone",
        "us-central2-b",
        "--project",
        "p1",
        "--create",
        "v4-32",
        "--sync",
        "--install",
        "--logs",
        "L",
        "--dry-run",
        "--",
        "python",
        "-m",
        "jaxrobust.main",
        "eval",
        "--gin.OUTPUT_DIR='gs://b/o'",
    )
    assert out.returncode == 0, out.stderr
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    where = ["--zone", "us-central2-b", "--project", "p1"]
    tpu_vm = ["gcloud", "compute", "tpus", "tpu-vm"]
    assert lines[0] == tpu_vm + [
        "create",
        "rob",
        *where,
        "--accelerator-type",
        "v4-32",
        "--version",
        "tpu-ubuntu2204-base",
    ]
    assert lines[1][0] == "tar"
    assert lines[2] == tpu_vm + [
        "scp",
        "/tmp/jaxrobust-src.tgz",
        "rob:/tmp/",
        *where,
        "--worker=all",
    ]
    ssh = [line for line in lines if line[4:5] == ["ssh"]]
    assert len(ssh) == 3 and all(line[5:11] == ["rob", *where, "--worker=all"] for line in ssh)
    assert "pip install -U 'jax[tpu]'" in ssh[1][-1]
    launch = ssh[2][-1]
    # The user's command reaches the remote shell as the same words.
    assert shlex.split(launch.split("&& ", 2)[2].split(" >")[0]) == [
        "python",
        "-m",
        "jaxrobust.main",
        "eval",
        "--gin.OUTPUT_DIR='gs://b/o'",
    ]
    assert "logs/worker-$(hostname).log" in launch
    assert lines[-2] == ["mkdir", "-p", "L"]
    assert lines[-1][:5] == tpu_vm + ["scp"] and lines[-1][6] == "L/"


def test_minimal_dry_run_only_launches_and_collects():
    out = _run("--tpu", "t", "--zone", "z", "--dry-run", "--", "echo", "hi")
    assert out.returncode == 0
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    assert [line[4] if line[0] == "gcloud" else line[0] for line in lines] == [
        "ssh",
        "mkdir",
        "scp",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone", "z", "--", "ls"], "missing --tpu NAME"),
        (["--tpu", "t", "--", "ls"], "missing --zone ZONE"),
        (["--tpu", "t", "--zone", "z"], "missing the command to run"),
        (["--tpu", "t", "--zone", "z", "--bogus", "--", "ls"], "unknown option '--bogus'"),
        (["--tpu"], "--tpu needs a value"),
    ],
)
def test_bad_arguments_print_usage(args, message):
    out = _run(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Usage:" in out.stderr
