"""How this process joins the others (`resolve_cluster`), decided from arguments and the
environment alone.

Pure Python, no JAX: `distributed.initialize` uses it to start JAX's
multi-process runtime, and commands that never touch JAX (``report``) use it
to let only process 0 write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Cluster:
    """How this process joins the others."""

    kind: str  # 'single', 'explicit', 'slurm' or 'tpu'.
    coordinator: str | None = None  # host:port of process 0 (explicit only).
    num_processes: int = 1
    process_id: int = 0


def resolve_cluster(
    env: Mapping[str, str],
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Cluster:
    """Decides how to start from arguments first, then the environment."""
    coordinator = coordinator or env.get("JAXROBUST_COORDINATOR")
    if num_processes is None and env.get("JAXROBUST_NUM_PROCESSES"):
        num_processes = int(env["JAXROBUST_NUM_PROCESSES"])
    if process_id is None and env.get("JAXROBUST_PROCESS_ID"):
        process_id = int(env["JAXROBUST_PROCESS_ID"])
    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if any(given):
        if not all(given):
            raise ValueError(
                "explicit multi-host start needs coordinator address, process count and "
                f"process id together; got coordinator={coordinator!r}, "
                f"num_processes={num_processes!r}, process_id={process_id!r}"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
        if num_processes == 1:
            return Cluster("single")
        return Cluster("explicit", coordinator, num_processes, process_id)
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return Cluster("slurm", None, int(env["SLURM_NTASKS"]), int(env.get("SLURM_PROCID", 0)))
    workers = env.get("TPU_WORKER_HOSTNAMES", "")
    if len([w for w in workers.split(",") if w]) > 1:
        return Cluster("tpu", None, len(workers.split(",")), int(env.get("TPU_WORKER_ID", 0)))
    return Cluster("single")
