"""Benchmark methodology that survives a noisy, shared machine: interleaved arms.

On a shared CPU the speed of the machine changes from minute to minute, so two
arms timed one after the other compare two different machines. Here every arm
is a long-lived worker process (its own threads, its own peak memory) that
loads and warms up once; the driver then runs the arms in turn, A B A B ...,
for `reps` repetitions, so each A run has a B run next to it in time. Reported:

- each arm's seconds as the median with the min-max over repetitions;
- each ratio computed per repetition, from two adjacent runs (so a slow minute
  slows both), then its median and min-max;
- the machine's matmul throughput, measured by the driver before every
  repetition and once after the last; a run whose throughput moved by more
  than `DRIFT_LIMIT` between the first and the last measurement is flagged.

Workers speak a line protocol on stdin/stdout: the worker prints
`READY <json>` once set up, then for each `RUN <json>` line it reads, it does
the work and prints `RESULT <json>` (a dict with at least `seconds`). Anything
else a worker prints goes to stderr. `Worker` is the driver's side.

Results go into the README between markers written by `write_block`:
`<!-- bench:NAME begin -->` ... `<!-- bench:NAME end -->`; `parse_table`
reads such a block back (the test checks the README's block parses).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

DRIFT_LIMIT = 0.20  # Flag a run whose matmul throughput moved more than this (first vs last).


# ---------------------------------------------------------------------------
# The machine's speed.
# ---------------------------------------------------------------------------


def matmul_gflops(n: int = 1024, tries: int = 3, dtype: str = "float32") -> float:
    """Best-of-`tries` GFLOP/s of a jitted [n, n] @ [n, n] matmul (XLA's practical peak)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def load_average() -> str:
    """`uptime`'s three load averages, as text."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------
# Workers.
# ---------------------------------------------------------------------------


def worker_env(threads: int) -> dict[str, str]:
    """Environment for a worker: quiet logs; `threads` is applied by `pin_threads`."""
    env = dict(os.environ)
    env["JAXROBUST_BENCH_THREADS"] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def pin_threads() -> int:
    """In a worker: confine the process to the first N cores (N from the driver), so
    XLA's and PyTorch's thread pools get the same cores; returns N. Call before
    importing torch or jax (torch's thread count is set by the caller with
    `torch.set_num_threads(pin_threads())`)."""
    n = int(os.environ.get("JAXROBUST_BENCH_THREADS", "0")) or os.cpu_count() or 1
    cores = sorted(os.sched_getaffinity(0))
    if n < len(cores):
        os.sched_setaffinity(0, cores[:n])
    return n


class Worker:
    """A worker process (the driver's side of the line protocol)."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None):
        self.name = name
        self.proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # The worker's logs go to our stderr.
            text=True,
            env=env,
        )
        self.ready = self._read("READY")

    def _read(self, tag: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1 :])
        code = self.proc.wait()
        raise RuntimeError(f"benchmark worker {self.name!r} exited with {code} before {tag}")

    def run(self, **request) -> dict:
        self.proc.stdin.write("RUN " + json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read("RESULT")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def serve(setup: Callable[[], dict], work: Callable[[dict], dict]) -> None:
    """The worker's side: `setup()` once (its dict is the READY payload), then `work(request)`
    per RUN line until stdin closes. Stdout carries only the protocol; prints go to stderr."""
    out = sys.stdout
    sys.stdout = sys.stderr
    ready = setup()
    print("READY " + json.dumps(ready), file=out, flush=True)
    for line in sys.stdin:
        if not line.startswith("RUN "):
            continue
        result = work(json.loads(line[4:]))
        print("RESULT " + json.dumps(result), file=out, flush=True)


# ---------------------------------------------------------------------------
# The interleaved schedule and its statistics.
# ---------------------------------------------------------------------------


def interleave(
    arms: dict[str, Callable[[], dict]],
    reps: int,
    probe: Callable[[], float] = matmul_gflops,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> dict:
    """Runs every arm once per repetition, in the given order (A B A B ...).

    Args:
      arms: name -> a call that does the work once and returns a dict with `seconds`.
      reps: repetitions.
      probe: the machine's throughput now (GFLOP/s), measured before each
        repetition and after the last.

    Returns:
      {"runs": {arm: [result, ...]}, "probes": [GFLOP/s, ...] (reps + 1), "load": [...]}.
    """
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    probes, loads = [], []
    for r in range(reps):
        probes.append(probe())
        loads.append(load_average())
        for name, fn in arms.items():
            result = fn()
            runs[name].append(result)
            log(f"  rep {r + 1}/{reps} {name}: {result['seconds']:.2f} s")
    probes.append(probe())
    loads.append(load_average())
    return {"runs": runs, "probes": probes, "load": loads}


def spread(values: Sequence[float]) -> dict:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratios(slow: Sequence[float], fast: Sequence[float]) -> dict:
    """Speed-up of `fast` over `slow` per repetition (slow[i] / fast[i], adjacent runs)."""
    if len(slow) != len(fast) or not slow:
        raise ValueError(f"paired ratios need equal, non-empty runs: {len(slow)} vs {len(fast)}")
    return spread([s / f for s, f in zip(slow, fast, strict=True)])


def drift(probes: Sequence[float]) -> dict:
    """First vs last matmul throughput; `flagged` when it moved more than DRIFT_LIMIT."""
    first, last = probes[0], probes[-1]
    change = (last - first) / first
    return {"first": first, "last": last, "change": change, "flagged": abs(change) > DRIFT_LIMIT}


def fmt_spread(s: dict, digits: int = 2, unit: str = "") -> str:
    """'1.23 [1.10-1.40]' (median [min-max])."""
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])}{unit} [{f.format(s['min'])}-{f.format(s['max'])}]"


# ---------------------------------------------------------------------------
# README blocks.
# ---------------------------------------------------------------------------


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} begin -->", f"<!-- bench:{name} end -->"


def write_block(path: str, name: str, text: str) -> None:
    """Replaces the text between the README's `bench:NAME` markers (they must exist)."""
    from jaxrobust.storage import files

    begin, end = _markers(name)
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    i, j = doc.find(begin), doc.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{path}: no '{begin}' ... '{end}' markers to write the results between")
    doc = doc[: i + len(begin)] + "\n" + text.strip("\n") + "\n" + doc[j:]
    files.write_atomic(path, doc)


def read_block(doc: str, name: str) -> str:
    """The text between the `bench:NAME` markers of a document."""
    begin, end = _markers(name)
    i, j = doc.find(begin), doc.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no '{begin}' ... '{end}' block")
    return doc[i + len(begin) : j].strip("\n")


_SPREAD = re.compile(r"^(-?[\d.]+)\S* \[(-?[\d.]+)\S*-(-?[\d.]+)\S*\]$")


def parse_spread(cell: str) -> dict:
    """Inverse of `fmt_spread` (units after the numbers are ignored)."""
    m = _SPREAD.match(cell.strip())
    if not m:
        raise ValueError(f"not 'median [min-max]': {cell!r}")
    med, lo, hi = (float(g) for g in m.groups())
    return {"median": med, "min": lo, "max": hi}


def parse_table(block: str) -> list[dict[str, str]]:
    """The first markdown table of a block as a list of {header: cell} rows."""
    lines: list[str] = []
    for ln in block.splitlines():
        if ln.strip().startswith("|"):
            lines.append(ln.strip())
        elif lines:
            break  # The first table ends at its first non-table line.
    if len(lines) < 3:
        raise ValueError("no markdown table (header, rule, rows) in the block")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(header):
            raise ValueError(f"row has {len(cells)} cells, header {len(header)}: {ln!r}")
        rows.append(dict(zip(header, cells, strict=True)))
    return rows
