"""jaxrobust vs HF PyTorch (T5 and LLaMA): rank classification and greedy generation, same work.

Run (CPU-sized default is the issue's: flan-t5-small shape, random weights,
256 examples x 4 options, inputs 256 tokens, options 1-8 tokens, 16 new tokens):

    python benchmarks/bench_rank_classification.py                 # ~10 min on 2 cores
    python benchmarks/bench_rank_classification.py --examples 64   # quicker
    python benchmarks/bench_rank_classification.py --preset flan-t5-xl --dtype bfloat16 \
        --skip-hf                                                  # GPU, JAX only

LLaMA row (`--family llama`): a ~100M-parameter random LLaMA (`bench-100m`:
D 768, 8 layers, 12 heads, F 2048, vocab 32000), f32; every prompt is BOS + 255
random tokens, options 1-8 tokens scored without EOS:

    python benchmarks/bench_rank_classification.py --family llama --examples 16  # ~5 min

Each arm runs in its own subprocess (so peak RSS is per arm and the arms do not
share threads) on the same random weights (saved once as an HF directory) and
the same token ids. Every arm is run once to warm up (compile / allocate), then
timed. Arms:
  hf_usual  one (context, option) pair per row, as lm-evaluation-harness does:
            the encoder runs once per option;
  hf_best   encoder once per example, its output repeated for the O options,
            all options in one decoder batch;
  jax_rank  `inference.Engine.rank_classify` (encoder once, options folded
            into cross-attention queries, bucketed jitted programs);
  hf_gen / jax_gen  greedy generation of `--gen-tokens` tokens (no early stop
            unless every row hits EOS, the same in both).
LLaMA arms (the same names, decoder-only work):
  hf_usual  one prompt + option row per pair (lm-evaluation-harness): the
            prompt runs once per option;
  hf_best   the prompt once with HF's KV cache, the cache repeated for the O
            options, all options continued in one batch;
  jax_rank  `Engine.rank_classify` with the LLaMA adapter (prompt once, the
            options packed after it in one pass, see `inference_llama`);
  hf_gen / jax_gen  greedy generation with the KV cache.
Also measured in the T5 JAX arm: a large matmul's throughput in the chosen dtype
(the machine's practical peak) and the encoder's FLOP rate at batch 32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

# ---------------------------------------------------------------------------
# Shared set-up: data and weights.
# ---------------------------------------------------------------------------


def make_data(args, vocab: int):
    """Token ids: inputs [N, input_len] ending in EOS; options of 1..option_len tokens."""
    rng = np.random.RandomState(0)
    inputs = rng.randint(3, vocab, (args.examples, args.input_len)).astype(np.int64)
    inputs[:, -1] = 1
    options = []
    for _ in range(args.examples):
        opts = []
        for _ in range(args.options):
            n = rng.randint(1, args.option_len + 1)
            opts.append(list(rng.randint(3, vocab, n - 1)) + [1])  # EOS included.
        options.append(opts)
    return inputs, options


class IdsTokenizer:
    """Text is space-separated token ids (the benchmark feeds ids, not words)."""

    pad_id, eos_id, bos_id = 0, 1, None

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        ids = [int(t) for t in text.split()]
        return ids + [1] if add_eos and (not ids or ids[-1] != 1) else ids

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids)


def _text(ids) -> str:
    return " ".join(str(int(i)) for i in ids)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------
# HF PyTorch arms.
# ---------------------------------------------------------------------------


def run_hf(args, arm: str) -> dict:
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = transformers.T5ForConditionalGeneration.from_pretrained(args.weights, dtype=dtype)
    model = model.eval().to(dev)
    inputs, options = make_data(args, model.config.vocab_size)
    bs = args.batch_size

    def usual(n):
        # lm-evaluation-harness: every (context, continuation) pair is a row.
        pairs = [(i, o) for i in range(n) for o in range(args.options)]
        for k in range(0, len(pairs), bs):
            chunk = pairs[k : k + bs]
            labels = np.full((len(chunk), args.option_len), -100)
            for r, (i, o) in enumerate(chunk):
                labels[r, : len(options[i][o])] = options[i][o]
            ids = torch.tensor(inputs[[i for i, _ in chunk]], device=dev)
            lab = torch.tensor(labels, device=dev)
            logits = model(input_ids=ids, labels=lab).logits.float()
            lp = torch.log_softmax(logits, -1)
            tok = lp.gather(-1, lab.clamp(min=0)[..., None])[..., 0]
            (tok * (lab != -100)).sum(-1).cpu()

    def best(n):
        for k in range(0, n, bs):
            idx = list(range(k, min(k + bs, n)))
            ids = torch.tensor(inputs[idx], device=dev)
            enc = model.encoder(input_ids=ids).last_hidden_state
            enc = enc.repeat_interleave(args.options, dim=0)
            labels = np.full((len(idx) * args.options, args.option_len), -100)
            for r, (i, o) in enumerate((i, o) for i in idx for o in range(args.options)):
                labels[r, : len(options[i][o])] = options[i][o]
            lab = torch.tensor(labels, device=dev)
            out = model(encoder_outputs=(enc,), labels=lab)
            lp = torch.log_softmax(out.logits.float(), -1)
            tok = lp.gather(-1, lab.clamp(min=0)[..., None])[..., 0]
            (tok * (lab != -100)).sum(-1).cpu()

    def gen(n):
        for k in range(0, n, bs):
            ids = torch.tensor(inputs[k : k + bs], device=dev)
            model.generate(input_ids=ids, max_new_tokens=args.gen_tokens, do_sample=False).cpu()

    fn = {"hf_usual": usual, "hf_best": best, "hf_gen": gen}[arm]
    with torch.inference_mode():
        t0 = time.perf_counter()
        fn(min(bs, args.examples))  # Warm-up.
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn(args.examples)
        secs = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else peak_rss_mb()
    return {"arm": arm, "seconds": secs, "warmup_s": warm, "compiles": 0, "peak_mb": peak}


# ---------------------------------------------------------------------------
# JAX arms.
# ---------------------------------------------------------------------------


def matmul_tflops(dtype: str, n: int) -> float:
    """Best-of-5 throughput of an [n, n] @ [n, n] matmul, TFLOP/s."""
    import jax

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n)).astype(dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def encoder_flops(cfg, batch: int, length: int) -> float:
    """Matmul FLOPs of one encoder pass (projections, MLP, attention scores/context)."""
    j = cfg.num_heads * cfg.head_dim
    per_token = 2 * (
        4 * cfg.emb_dim * j + (len(cfg.mlp_activations) + 1) * cfg.emb_dim * cfg.mlp_dim
    )
    per_token += 2 * 2 * length * j
    return batch * length * cfg.num_encoder_layers * per_token


def _engine(args, tokenizer):
    """The model (`inference.load_model`: the arm's HF weights, or with --skip-hf random
    weights made on the device in their shardings; activations in `--dtype`) in an
    engine with one bucket per axis: every batch has the benchmark's shapes."""
    from jaxrobust import inference
    from jaxrobust.parallel import partitioning

    spec = inference.ModelSpec(
        name="bench", family=args.family, preset=args.preset, checkpoint=args.weights
    )
    model = inference.load_model(
        spec,
        partitioning.make_mesh(),
        tokenizer=tokenizer,
        config_overrides={"dtype": args.dtype},
    )
    return model.engine(
        batch_size=args.batch_size,
        max_input_len=args.input_len,
        length_buckets=(args.input_len,),
        option_len_buckets=(args.option_len,),
        option_count_buckets=(args.options,),
    )


def run_jax(args, arm: str) -> dict:
    import jax

    from jaxrobust.models import t5
    from jaxrobust.parallel import partitioning

    eng = _engine(args, IdsTokenizer())
    config = eng.config
    inputs, options = make_data(args, config.vocab_size)
    texts = [_text(x) for x in inputs]
    opt_texts = [[_text(o) for o in opts] for opts in options]
    bs = args.batch_size
    if arm == "jax_rank":

        def fn(n):
            return eng.rank_classify(texts[:n], opt_texts[:n])
    else:

        def fn(n):
            return eng.generate(texts[:n], args.gen_tokens)

    t0 = time.perf_counter()
    fn(min(bs, args.examples))
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn(args.examples)
    secs = time.perf_counter() - t0
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use", 0) / 2**20 or peak_rss_mb()
    out = {
        "arm": arm,
        "seconds": secs,
        "warmup_s": warm,
        "compiles": sum(eng.trace_counts.values()),
        "peak_mb": peak,
    }
    if arm == "jax_rank":
        # The encoder alone at batch 32 vs the machine's matmul throughput.
        model = t5.T5(config)
        enc = partitioning.partition(
            lambda p, x: model.apply({"params": p}, x, method=t5.T5.encode)[0],
            eng.mesh,
            eng.rules,
            in_shardings=(eng.param_shardings, partitioning.batch_sharding(eng.mesh, 2)),
        )
        x = np.asarray(inputs[:32], np.int32)
        enc(eng.params, x).block_until_ready()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            enc(eng.params, x).block_until_ready()
            best = min(best, time.perf_counter() - t0)
        out["encoder_tflops"] = encoder_flops(config, 32, args.input_len) / best / 1e12
        cpu = jax.devices()[0].platform == "cpu"
        out["matmul_tflops"] = matmul_tflops(args.dtype, args.matmul_n or (2048 if cpu else 8192))
    return out


# ---------------------------------------------------------------------------
# LLaMA arms.
# ---------------------------------------------------------------------------

BOS, EOS = 1, 2


def llama_bench_config():
    """~106M parameters (embeddings 2 x 24.6M, 8 layers x 7.1M)."""
    from jaxrobust.models import llama_config

    return llama_config.LlamaConfig(
        vocab_size=32000,
        emb_dim=768,
        num_heads=12,
        num_kv_heads=12,
        head_dim=64,
        mlp_dim=2048,
        num_layers=8,
        max_position_embeddings=1024,
    )


def make_llama_data(args, vocab: int):
    """Prompts [N, input_len] = BOS + random ids; options of 1..option_len ids (no EOS)."""
    rng = np.random.RandomState(0)
    prompts = rng.randint(3, vocab, (args.examples, args.input_len)).astype(np.int64)
    prompts[:, 0] = BOS
    options = [
        [
            list(rng.randint(3, vocab, rng.randint(1, args.option_len + 1)))
            for _ in range(args.options)
        ]
        for _ in range(args.examples)
    ]
    return prompts, options


class LlamaIdsTokenizer:
    """Text is space-separated ids; BOS 1, EOS = pad 2 (LLaMA's layout)."""

    pad_id = eos_id = EOS
    bos_id = BOS

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        return [int(t) for t in text.split()] + ([EOS] if add_eos else [])

    def decode(self, ids) -> str:
        ids = list(ids)
        return _text(ids[: ids.index(EOS)] if EOS in ids else ids)


def run_hf_llama(args, arm: str) -> dict:
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    model = transformers.LlamaForCausalLM.from_pretrained(args.weights, dtype=dtype)
    model = model.eval().to(dev)
    prompts, options = make_llama_data(args, model.config.vocab_size)
    bs, o_n, s, length = args.batch_size, args.options, args.input_len, args.option_len

    def option_rows(pairs):
        """Options right-padded [R, L] and their mask."""
        tok = np.full((len(pairs), length), EOS)
        mask = np.zeros((len(pairs), length), bool)
        for r, (i, o) in enumerate(pairs):
            tok[r, : len(options[i][o])] = options[i][o]
            mask[r, : len(options[i][o])] = True
        return torch.tensor(tok, device=dev), torch.tensor(mask, device=dev)

    def score(logits, tok, mask):
        lp = torch.log_softmax(logits.float(), -1)  # [R, L, V], row l predicts token l.
        picked = lp.gather(-1, tok[..., None])[..., 0]
        return (picked * mask).sum(-1).cpu()

    def usual(n):
        # lm-evaluation-harness: every prompt + option pair is a row.
        pairs = [(i, o) for i in range(n) for o in range(o_n)]
        for k in range(0, len(pairs), bs):
            chunk = pairs[k : k + bs]
            tok, mask = option_rows(chunk)
            ids = torch.cat([torch.tensor(prompts[[i for i, _ in chunk]], device=dev), tok], 1)
            attn = torch.cat([torch.ones(len(chunk), s, device=dev, dtype=torch.bool), mask], 1)
            logits = model(input_ids=ids, attention_mask=attn.long()).logits
            score(logits[:, s - 1 : s - 1 + length], tok, mask)

    def best(n):
        for k in range(0, n, bs):
            idx = list(range(k, min(k + bs, n)))
            out = model(input_ids=torch.tensor(prompts[idx], device=dev), use_cache=True)
            cache = out.past_key_values
            cache.batch_repeat_interleave(o_n)
            tok, mask = option_rows([(i, o) for i in idx for o in range(o_n)])
            attn = torch.cat([torch.ones(len(tok), s, device=dev, dtype=torch.bool), mask], 1)
            logits = model(input_ids=tok, attention_mask=attn.long(), past_key_values=cache).logits
            first = out.logits[:, -1:].repeat_interleave(o_n, 0)
            score(torch.cat([first, logits[:, :-1]], 1), tok, mask)

    def gen(n):
        for k in range(0, n, bs):
            ids = torch.tensor(prompts[k : k + bs], device=dev)
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.gen_tokens,
                do_sample=False,
                eos_token_id=EOS,
                pad_token_id=EOS,
            ).cpu()

    fn = {"hf_usual": usual, "hf_best": best, "hf_gen": gen}[arm]
    return _timed(arm, fn, args, lambda: _torch_peak(torch, dev))


def run_jax_llama(args, arm: str) -> dict:
    import jax

    eng = _engine(args, LlamaIdsTokenizer())
    prompts, options = make_llama_data(args, eng.config.vocab_size)
    texts = [_text(p[1:]) for p in prompts]  # The adapter adds BOS.
    opt_texts = [[_text(o) for o in opts] for opts in options]
    if arm == "jax_rank":

        def fn(n):
            return eng.rank_classify(texts[:n], opt_texts[:n])
    else:

        def fn(n):
            return eng.generate(texts[:n], args.gen_tokens)

    def peak():
        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**20 or peak_rss_mb()

    out = _timed(arm, fn, args, peak)
    out["compiles"] = sum(eng.trace_counts.values())
    return out


def _torch_peak(torch, dev: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else peak_rss_mb()


def _timed(arm: str, fn, args, peak) -> dict:
    """Runs `fn` once on one batch to warm up, then times it on every example."""
    import contextlib

    try:
        import torch

        ctx = torch.inference_mode()
    except ImportError:
        ctx = contextlib.nullcontext()
    with ctx:
        t0 = time.perf_counter()
        fn(min(args.batch_size, args.examples))
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn(args.examples)
        secs = time.perf_counter() - t0
    return {"arm": arm, "seconds": secs, "warmup_s": warm, "compiles": 0, "peak_mb": peak()}


def save_llama_weights(directory: str) -> None:
    import torch
    import transformers

    from jaxrobust.models import llama_config

    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(**llama_config.to_hf_config(llama_bench_config()))
    transformers.LlamaForCausalLM(hf_cfg).save_pretrained(directory)


# ---------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--family", default="t5", choices=["t5", "llama"])
    p.add_argument("--preset", default="flan-t5-small", help="T5 preset (LLaMA: bench-100m)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--examples", type=int, default=256)
    p.add_argument("--options", type=int, default=4)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--option-len", type=int, default=8)
    p.add_argument("--gen-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--matmul-n", type=int, default=0, help="0: 2048 on CPU, 8192 otherwise")
    p.add_argument("--skip-hf", action="store_true", help="JAX arms only (no torch needed)")
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--weights", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    # Fewer examples than a batch: one batch of exactly them (no dummy rows) in every arm.
    args.batch_size = min(args.batch_size, args.examples)

    if args.arm:  # Child process: run one arm, print its JSON.
        if args.family == "llama":
            run = run_hf_llama if args.arm.startswith("hf_") else run_jax_llama
        else:
            run = run_hf if args.arm.startswith("hf_") else run_jax
        print("RESULT " + json.dumps(run(args, args.arm)), flush=True)
        return

    arms = (
        ["jax_rank", "jax_gen"]
        if args.skip_hf
        else ["hf_usual", "hf_best", "jax_rank", "hf_gen", "jax_gen"]
    )
    if args.family == "llama" and args.skip_hf:
        sys.exit("--family llama needs torch (its random weights are written by HF)")
    with tempfile.TemporaryDirectory() as tmp:
        weights = ""
        if args.family == "llama":
            save_llama_weights(tmp)
            weights = tmp
        elif not args.skip_hf:
            import torch
            import transformers

            from jaxrobust.models import t5_config

            torch.manual_seed(0)
            hf_cfg = transformers.T5Config(
                **t5_config.to_hf_config(t5_config.get_preset(args.preset))
            )
            model = transformers.T5ForConditionalGeneration(hf_cfg)
            if not hf_cfg.tie_word_embeddings:  # v1.1: its own lm_head (transformers >= 5).
                model.lm_head.weight = torch.nn.Parameter(model.shared.weight.clone() * 0.05)
            model.save_pretrained(tmp)
            del model
            weights = tmp
        results = {}
        for arm in arms:
            cmd = [sys.executable, __file__, "--arm", arm, "--weights", weights]
            for k, v in vars(args).items():
                if k not in ("arm", "weights", "skip_hf"):
                    cmd += [f"--{k.replace('_', '-')}", str(v)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"arm {arm} failed:\n{proc.stderr[-3000:]}")
            results[arm] = json.loads(line[0][len("RESULT ") :])
            print(f"  {arm}: {results[arm]['seconds']:.1f}s", file=sys.stderr, flush=True)
    report(args, results)


def report(args, results: dict) -> None:
    n = args.examples
    name = "llama bench-100m" if args.family == "llama" else args.preset
    print(
        f"\n{name} {args.dtype}, {n} examples x {args.options} options, "
        f"input {args.input_len} tokens, options <= {args.option_len} tokens, "
        f"generation {args.gen_tokens} tokens, batch {args.batch_size}\n"
    )
    print(
        f"| {'arm':<9} | {'examples/s':>10} | {'vs arm':>22} | {'warm-up s':>9} | "
        f"{'compiles':>8} | {'peak MB':>8} |"
    )
    print(f"|{'-' * 11}|{'-' * 12}|{'-' * 24}|{'-' * 11}|{'-' * 10}|{'-' * 10}|")
    rate = {a: n / r["seconds"] for a, r in results.items()}
    ratios = {
        "jax_rank": [("hf_usual", "usual"), ("hf_best", "best")],
        "jax_gen": [("hf_gen", "hf")],
    }
    for arm, r in results.items():
        vs = " ".join(
            f"{rate[arm] / rate[o]:.2f}x {lab}" for o, lab in ratios.get(arm, []) if o in rate
        )
        print(
            f"| {arm:<9} | {rate[arm]:>10.2f} | {vs:>22} | {r['warmup_s']:>9.1f} | "
            f"{r['compiles']:>8} | {r['peak_mb']:>8.0f} |"
        )
    j = results["jax_rank"]
    if "matmul_tflops" not in j:
        return
    print(
        f"\nmatmul throughput ({args.dtype}): {j['matmul_tflops'] * 1e3:.1f} GFLOP/s; "
        f"encoder at batch 32: {j['encoder_tflops'] * 1e3:.1f} GFLOP/s = "
        f"{100 * j['encoder_tflops'] / j['matmul_tflops']:.0f}% of it"
    )


if __name__ == "__main__":
    main()
