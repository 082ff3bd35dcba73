"""Accelerator benchmark: Flan-T5-XL and a LLaMA-7B shape in bfloat16, random weights.

For each model: rank classification (`Engine.rank_classify`, standard mode) and
greedy generation (`Engine.generate`) on random token ids (no download, no
tokenizer: text is space-separated ids), printing examples/s, generated
tokens/s, the model FLOP utilisation against the device's peak (looked up from
`jax.devices()[0].device_kind`), peak device memory and compile time (XLA's
backend compile events, `jax.monitoring`).

FLOPs are counted as 2 x (the parameters a token passes through) x tokens,
attention scores excluded (so MFU is a slight underestimate): T5 encoder
tokens through the encoder's kernels; decoder tokens through the decoder's
self-attention, query/output and MLP kernels plus the vocabulary projection,
the cross-attention keys/values once per encoder token; LLaMA prompt and
option tokens through every kernel and the vocabulary projection. Generated
tokens count `--gen-tokens` per row (random weights rarely emit EOS, and the
loop only stops early when every row has).

    python benchmarks/bench_gpu.py                                  # on a GPU/TPU host
    python benchmarks/bench_gpu.py --models t5:flan-t5-xl --examples 256
    python benchmarks/bench_gpu.py --toy                            # CPU smoke size (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Dense bfloat16 peak TFLOP/s per device, by `device_kind` (vendor data sheets).
PEAK_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.0,
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA L4": 121.0,
    "NVIDIA A10G": 70.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v6 lite": 918.0,
}

DEFAULT_MODELS = "t5:flan-t5-xl,llama:llama-2-7b"
TOY_MODELS = "t5:tiny,llama:tiny"


def peak_tflops(kind: str) -> float | None:
    """The device kind's dense bf16 peak; a kind that starts with a known name matches it."""
    if kind in PEAK_TFLOPS:
        return PEAK_TFLOPS[kind]
    for name, peak in PEAK_TFLOPS.items():
        if kind.startswith(name):
            return peak
    return None


def param_count(tree) -> int:
    import jax

    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def flops_t5(params, enc_tokens: int, dec_tokens: int) -> float:
    """2 x parameters x tokens over the T5 stacks (see the module docstring)."""
    enc = param_count(params["encoder"])
    dec_all = param_count(params["decoder"])
    cross_kv = sum(
        param_count(layer["encoder_decoder_attention"][k])
        for name, layer in params["decoder"].items()
        if name.startswith("layers_")
        for k in ("key", "value")
    )
    logits = param_count(params["decoder"].get("logits_dense", params["token_embedder"]))
    if "logits_dense" in params["decoder"]:
        dec_all -= logits
    return 2.0 * (
        enc * enc_tokens + cross_kv * enc_tokens + (dec_all - cross_kv + logits) * dec_tokens
    )


def flops_llama(params, tokens: int) -> float:
    emb = param_count(params["embed_tokens"])  # A lookup, not a matmul.
    return 2.0 * (param_count(params) - emb) * tokens


class CompileClock:
    """Sums XLA backend compile time (jax.monitoring events) while active."""

    def __init__(self):
        import jax

        self.total = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event.endswith("backend_compile_duration"):
            self.total += duration


def peak_memory_mb() -> tuple[float, str]:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "host RSS"


def bench_model(family: str, preset: str, args, clock: CompileClock) -> dict:
    import jax
    from bench_rank_classification import IdsTokenizer, LlamaIdsTokenizer

    from jaxrobust import inference
    from jaxrobust.parallel import partitioning

    tok = IdsTokenizer() if family == "t5" else LlamaIdsTokenizer()
    spec = inference.ModelSpec(
        name=f"bench-{preset}", family=family, preset=preset, dtype=args.dtype
    )
    t0 = time.perf_counter()
    compile0 = clock.total
    model = inference.load_model(
        spec, partitioning.make_mesh(), tokenizer=tok, config_overrides={"dtype": args.dtype}
    )
    jax.block_until_ready(model.params)
    init_s = time.perf_counter() - t0
    cfg = model.config
    eng = model.engine(
        batch_size=args.batch_size,
        max_input_len=args.input_len,
        length_buckets=(args.input_len,),
        option_len_buckets=(args.option_len,),
        option_count_buckets=(args.options,),
    )
    rng = np.random.RandomState(0)
    vocab = cfg.vocab_size
    n = args.examples
    # Ids from 3 up (0-2 are pad/EOS/BOS-like in both layouts); T5's EOS is appended.
    body = args.input_len - 1
    texts = [" ".join(map(str, rng.randint(3, vocab, body))) for _ in range(n)]
    opts = [
        [
            " ".join(map(str, rng.randint(3, vocab, args.option_len - 1)))
            for _ in range(args.options)
        ]
        for _ in range(n)
    ]
    out = {"model": f"{family}:{preset}", "params_m": param_count(model.params) / 1e6}
    out["init_s"] = init_s
    for task in ("rank", "gen"):
        if task == "rank":
            fn = lambda k: eng.rank_classify(texts[:k], opts[:k])  # noqa: E731
        else:
            fn = lambda k: eng.generate(texts[:k], args.gen_tokens)  # noqa: E731
        c0 = clock.total
        t0 = time.perf_counter()
        fn(min(n, args.batch_size))  # Compile + one batch.
        first = time.perf_counter() - t0
        out[f"{task}_compile_s"] = clock.total - c0
        out[f"{task}_first_call_s"] = first
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            fn(n)
            times.append(time.perf_counter() - t0)
        out[f"{task}_s"] = float(np.median(times))
    rows = n * args.options
    if family == "t5":
        rank_flops = flops_t5(model.params, n * args.input_len, rows * args.option_len)
        # Generation: the encoder once per row, then one decoder token per step.
        gen_flops = flops_t5(model.params, n * args.input_len, n * args.gen_tokens)
    else:
        rank_flops = flops_llama(model.params, n * args.input_len + rows * args.option_len)
        gen_flops = flops_llama(model.params, n * (args.input_len + args.gen_tokens))
    out["rank_examples_per_s"] = n / out["rank_s"]
    out["gen_tokens_per_s"] = n * args.gen_tokens / out["gen_s"]
    out["rank_tflops"] = rank_flops / out["rank_s"] / 1e12
    out["gen_tflops"] = gen_flops / out["gen_s"] / 1e12
    out["peak_mb"], out["peak_mem_kind"] = peak_memory_mb()
    out["compile_s_total"] = clock.total - compile0
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="family:preset, comma-separated")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--examples", type=int, default=128)
    p.add_argument("--options", type=int, default=4)
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--option-len", type=int, default=8)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    p.add_argument("--toy", action="store_true", help="tiny models and sizes (CPU smoke test)")
    p.add_argument("--json", default="", help="write the results here too")
    args = p.parse_args(argv)
    import jax

    if args.toy:
        if args.models == DEFAULT_MODELS:
            args.models = TOY_MODELS
        args.input_len, args.gen_tokens, args.reps, args.options, args.option_len = 16, 4, 1, 2, 4
        # One row per device (the batch is split over the devices).
        args.examples = args.batch_size = jax.device_count()

    clock = CompileClock()
    dev = jax.devices()[0]
    peak = peak_tflops(dev.device_kind)
    peak_all = None if peak is None else peak * jax.device_count()
    print(
        f"devices: {jax.device_count()} x {dev.device_kind} ({dev.platform}); dense bf16 peak "
        f"{'unknown' if peak is None else f'{peak:g} TFLOP/s per device'}; {args.dtype}, "
        f"{args.examples} examples x {args.options} options, input {args.input_len}, "
        f"options {args.option_len} tokens, generation {args.gen_tokens} tokens, "
        f"batch {args.batch_size}"
    )
    results = []
    for item in args.models.split(","):
        family, _, preset = item.partition(":")
        if family not in ("t5", "llama") or not preset:
            sys.exit(f"--models: {item!r}: expected t5:<preset> or llama:<preset>")
        r = bench_model(family, preset, args, clock)
        for task in ("rank", "gen"):
            tf = r[f"{task}_tflops"]
            r[f"{task}_mfu"] = None if peak_all is None else tf / peak_all
        results.append(r)

    def mfu(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    print(
        "| model | params M | rank ex/s | rank MFU | gen tok/s | gen MFU | compile s "
        "(rank, gen) | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['params_m']:.1f} | {r['rank_examples_per_s']:.2f} | "
            f"{mfu(r['rank_mfu'])} | {r['gen_tokens_per_s']:.1f} | {mfu(r['gen_mfu'])} | "
            f"{r['rank_compile_s']:.1f}, {r['gen_compile_s']:.1f} | "
            f"{r['peak_mb']:.0f} ({r['peak_mem_kind']}) |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device_kind": dev.device_kind, "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
