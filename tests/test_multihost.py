"""Two JAX processes on loopback (gloo CPU collectives, 2 devices each, one 2 x 2
mesh across them) against one process holding all 4 devices."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxrobust import distributed

HERE = pathlib.Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXROBUST_")}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    return env


def run_multihost(worker: pathlib.Path, tmp_path: pathlib.Path, timeout: float = 240):
    """Runs `worker` as 2 processes x 2 devices and as 1 process x 4 devices.

    Returns (the two processes' JSON outputs, the single process's).
    """
    port = _free_port()
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(outs[i]), str(i), "2", str(port)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:  # Nothing may hang: kill what is left.
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    single = tmp_path / "single.json"
    subprocess.run(
        [sys.executable, str(worker), str(single)],
        env=_env(4),
        check=True,
        timeout=timeout,
        capture_output=True,
    )
    return [json.loads(o.read_text()) for o in outs], json.loads(single.read_text())


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_two_process_rank_classification_equals_one_process(tmp_path):
    multi, single = run_multihost(HERE / "multihost" / "engine_worker.py", tmp_path)
    assert [m["count"] for m in multi] == [2, 2] and single["count"] == 1
    merged = {**multi[0]["records"], **multi[1]["records"]}
    assert sorted(merged, key=int) == sorted(single["records"], key=int)
    for key, rec in single["records"].items():
        assert merged[key]["prediction"] == rec["prediction"], key
        np.testing.assert_allclose(merged[key]["scores"], rec["scores"], atol=1e-5, rtol=1e-5)
    # Both hosts ran the same programs (the short host padded with dummy batches).
    assert multi[0]["traces"] == multi[1]["traces"]


def test_resolve_cluster_from_arguments_and_environment():
    assert distributed.resolve_cluster({}).kind == "single"
    c = distributed.resolve_cluster({}, "10.0.0.1:1234", 4, 3)
    assert (c.kind, c.coordinator, c.num_processes, c.process_id) == (
        "explicit",
        "10.0.0.1:1234",
        4,
        3,
    )
    env = {
        "JAXROBUST_COORDINATOR": "h:1",
        "JAXROBUST_NUM_PROCESSES": "2",
        "JAXROBUST_PROCESS_ID": "1",
    }
    assert distributed.resolve_cluster(env).process_id == 1
    slurm = distributed.resolve_cluster(
        {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8", "SLURM_PROCID": "5"}
    )
    assert (slurm.kind, slurm.num_processes, slurm.process_id) == ("slurm", 8, 5)
    assert distributed.resolve_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}).kind == "single"
    tpu = distributed.resolve_cluster({"TPU_WORKER_HOSTNAMES": "a,b,c,d", "TPU_WORKER_ID": "2"})
    assert (tpu.kind, tpu.num_processes, tpu.process_id) == ("tpu", 4, 2)


def test_resolve_cluster_rejects_partial_or_bad_arguments():
    with pytest.raises(ValueError, match="coordinator address, process count and process id"):
        distributed.resolve_cluster({}, "h:1", 2, None)
    with pytest.raises(ValueError, match=r"process_id 2 is not in \[0, 2\)"):
        distributed.resolve_cluster({}, "h:1", 2, 2)
