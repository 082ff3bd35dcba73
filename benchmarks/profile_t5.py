"""Where the T5 engine's time goes: per-op profiles of the encoder and of a generation step.

Profiles (jax.profiler traces, summed per XLA op over `--iters` calls) of:
  encoder          `T5.encode` at batch 32 x 256 tokens (bench_rank_classification's shape);
  generation_step  one `T5.decode` step with the self-attention cache and precomputed
                   cross-attention keys/values (what `generation.greedy_decode`'s loop body
                   runs), batch 32, cache of 16 positions, encoder length 256;
  greedy_decode    the whole 16-token `generation.greedy_decode` (encoder, cross K/V, the
                   while loop), to compare the loop's per-step time with the step alone.
Each op is named by the JAX operation and source line XLA recorded for it (the fusion's
root), with its shape. The text goes to `benchmarks/profiles/<name>.txt`:

    python benchmarks/profile_t5.py                  # flan-t5-small shape, float32, CPU
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
_INSTR = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) (\S+?)\(")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_META = re.compile(r'op_name="([^"]+)"(?: source_file="([^"]+)" source_line=(\d+))?')
_STACK = re.compile(r"stack_frame_id=(\d+)")


def hlo_names(hlo: str) -> dict[str, str]:
    """XLA instruction name -> 'shape opcode: jax op (file:line)' from the optimized HLO.

    A fusion is named by its called computation's ROOT (the op the fusion produces).
    """
    comps: dict[str, str] = {}  # computation -> its ROOT line
    current = None
    lines = hlo.splitlines()
    for ln in lines:
        m = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", ln)
        if m:
            current = m.group(1)
        elif current and ln.strip().startswith("ROOT "):
            comps[current] = ln
    frames = _stack_frames(hlo)
    out = {}
    for ln in lines:
        m = _INSTR.match(ln)
        if not m:
            continue
        name, shape, opcode = m.groups()
        src = ln
        c = _CALLS.search(ln)
        if c and c.group(1) in comps:
            src = comps[c.group(1)]
        meta = _META.search(src)
        where = ""
        if meta:
            op = meta.group(1).split("/")[-1]
            s = _STACK.search(src)
            if meta.group(2):
                where = f" ({os.path.basename(meta.group(2))}:{meta.group(3)})"
            elif s and s.group(1) in frames:
                where = f" ({frames[s.group(1)]})"
            out[name] = f"{shape} {opcode}: {op}{where}"
        else:
            out[name] = f"{shape} {opcode}"
    return out


def _stack_frames(hlo: str) -> dict[str, str]:
    """stack_frame_id -> 'file:line' (the innermost frame) from the HLO's tables."""
    files = dict(re.findall(r'^(\d+) "([^"]+)"$', _section(hlo, "FileNames"), re.M))
    locs = {}
    for fid, file_id, line in re.findall(
        r"^(\d+) \{file_name_id=(\d+) function_name_id=\d+ line=(\d+)",
        _section(hlo, "FileLocations"),
        re.M,
    ):
        locs[fid] = f"{os.path.basename(files.get(file_id, '?'))}:{line}"
    frames = {}
    for sid, loc in re.findall(
        r"^(\d+) \{file_location_id=(\d+)", _section(hlo, "StackFrames"), re.M
    ):
        frames[sid] = locs.get(loc, "?")
    return frames


def _section(hlo: str, title: str) -> str:
    m = re.search(rf"^{title}\n(.*?)\n\n", hlo, re.M | re.S)
    return m.group(1) if m else ""


def profile(fn, args: tuple, iters: int) -> tuple[dict[str, float], dict[str, int], float]:
    """(op -> total microseconds, op -> count, wall seconds per call) over `iters` calls."""
    import jax

    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(iters):
        jax.block_until_ready(fn(*args))
    wall = (time.perf_counter() - t0) / iters
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        for _ in range(iters):
            jax.block_until_ready(fn(*args))
        jax.profiler.stop_trace()
        (path,) = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e.get("dur", 0.0)
            count[e["name"]] += 1
    return total, count, wall


def summary(title: str, fn, args: tuple, iters: int, top: int, note: str = "") -> str:
    hlo = fn.lower(*args).compile().as_text()
    names = hlo_names(hlo)
    total, count, wall = profile(fn, args, iters)
    ops = {k: v for k, v in total.items() if k in names}
    busy = sum(ops.values())
    lines = [
        f"# {title}",
        "",
        note,
        f"wall time per call {1e3 * wall:.2f} ms (mean of {iters} calls, the same calls profiled); "
        f"XLA ops account for {busy / iters / 1e3:.2f} ms per call (thread time summed, so "
        f"multi-threaded ops can exceed the wall time).",
        "",
        f"{'share':>6} {'ms/call':>8} {'calls':>6}  op (shape opcode: jax op (source line))",
    ]
    groups = collections.Counter()
    for name, us in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(
            f"{100 * us / busy:5.1f}% {us / iters / 1e3:8.3f} {count[name] // iters:6d}  "
            f"{name} = {names[name]}"
        )
    by_line = collections.Counter()
    for name, us in ops.items():
        desc = names[name]
        op = desc.split(": ", 1)[1] if ": " in desc else desc.split(" ")[1]
        by_line[op] += us
        groups[op.split(" (")[0]] += us
    lines += ["", "By JAX operation and source line (every op of the program, all layers summed):"]
    for op, us in by_line.most_common(12):
        lines.append(f"{100 * us / busy:5.1f}%  {op}")
    lines += ["", "By JAX operation (fusions counted under their root op):"]
    for op, us in groups.most_common(12):
        lines.append(f"{100 * us / busy:5.1f}%  {op}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="flan-t5-small")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default=os.path.join(HERE, "profiles"))
    args = p.parse_args()

    import jax

    from jaxrobust.inference import generation
    from jaxrobust.models import t5, t5_config

    cfg = t5_config.get_preset(args.preset)
    model = t5.T5(cfg)
    params = model.init(jax.random.PRNGKey(0), *t5.dummy_inputs())["params"]
    rng = np.random.RandomState(0)
    x = rng.randint(3, cfg.vocab_size, (args.batch, args.length)).astype(np.int32)
    x[:, -1] = 1
    where = (
        f"{args.preset} shape, float32, random weights, batch {args.batch}, encoder length "
        f"{args.length}; {jax.devices()[0].device_kind}, {os.cpu_count()} cores; load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}. Command: python "
        f"benchmarks/profile_t5.py."
    )
    os.makedirs(args.out, exist_ok=True)

    encode = jax.jit(lambda p, x: model.apply({"params": p}, x, method=t5.T5.encode)[0])
    text = summary("Encoder (T5.encode)", encode, (params, x), args.iters, args.top, where)
    _write(args.out, "encoder.txt", text)

    encoded, mask = jax.jit(lambda p, x: model.apply({"params": p}, x, method=t5.T5.encode))(
        params, x
    )
    cross = jax.jit(lambda p, e: model.apply({"params": p}, e, method=t5.T5.cross_kv))(
        params, encoded
    )
    cache = t5.init_cache(cfg, args.batch, args.steps)
    token = np.zeros((args.batch, 1), np.int32)

    def step(p, e, m, tok, cache, cross):
        return model.apply({"params": p}, e, m, tok, cache, cross, method=t5.T5.decode)

    step_args = (params, encoded, mask, token, cache, cross)
    text = summary(
        "Generation step (T5.decode, one token, KV cache)",
        jax.jit(step),
        step_args,
        args.iters * 10,
        args.top,
        where,
    )
    _write(args.out, "generation_step.txt", text)

    greedy = jax.jit(lambda p, x: generation.greedy_decode(cfg, p, x, args.steps)[0])
    text = summary(
        f"Greedy decode ({args.steps} tokens: encoder, cross K/V, while loop)",
        greedy,
        (params, x),
        args.iters,
        args.top,
        where,
    )
    _write(args.out, "greedy_decode.txt", text)


def _write(directory: str, name: str, text: str) -> None:
    from jaxrobust.storage import files

    files.write_atomic(os.path.join(directory, name), text)
    print(text)


if __name__ == "__main__":
    main()
