"""jaxrobust vs HF PyTorch (T5 and LLaMA): rank classification and greedy generation, same work.

Run (CPU-sized default is the issue's: flan-t5-small shape, random weights,
256 examples x 4 options, inputs 256 tokens, options 1-8 tokens, 16 new tokens):

    python benchmarks/bench_rank_classification.py                 # 3 repetitions, long
    python benchmarks/bench_rank_classification.py --examples 32 --input-len 128  # quicker
    python benchmarks/bench_rank_classification.py --preset flan-t5-xl --dtype bfloat16 \
        --skip-hf                                                  # GPU, JAX only

LLaMA row (`--family llama`): a ~100M-parameter random LLaMA (`bench-100m`:
D 768, 8 layers, 12 heads, F 2048, vocab 32000), f32; every prompt is BOS + 255
random tokens, options 1-8 tokens scored without EOS:

    python benchmarks/bench_rank_classification.py --family llama --examples 16  # ~5 min

Each arm is a long-lived worker process (so peak RSS is per arm and the arms do
not share threads), pinned to the same `--threads` cores, on the same random
weights (saved once as an HF directory) and the same token ids. Every arm is run
once on one batch to warm up (compile / allocate); then the arms are timed in
turn, A B A B ..., `--reps` times (`interleave.py`): medians with min-max,
speed-ups per pair of adjacent runs, the matmul throughput before every
repetition with a drift flag; `--write-readme` writes the result into README.md's
`bench:engine` block. Arms:
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
Also measured in the T5 JAX arm at every repetition: the encoder's FLOP rate at
batch 32 and, right after it in the same process, a large matmul's throughput in
the chosen dtype (the machine's practical peak).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interleave  # noqa: E402

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


def make_hf(args, arm: str):
    """(work function of n examples, peak-memory function) of a T5 HF arm."""
    import torch
    import transformers

    torch.set_num_threads(interleave.pin_threads())
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
    return fn, lambda: _torch_peak(torch, dev)


# ---------------------------------------------------------------------------
# JAX arms.
# ---------------------------------------------------------------------------


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


def make_jax(args, arm: str):
    """(work function of n examples, peak-memory function, encoder probe or None)."""
    import jax

    from jaxrobust.models import t5
    from jaxrobust.parallel import partitioning

    eng = _engine(args, IdsTokenizer())
    config = eng.config
    inputs, options = make_data(args, config.vocab_size)
    texts = [_text(x) for x in inputs]
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

    def encoder_probe() -> dict:
        """The encoder alone at batch 32 and, right after, a matmul, in GFLOP/s."""
        x = np.asarray(inputs[:32], np.int32)
        enc(eng.params, x).block_until_ready()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            enc(eng.params, x).block_until_ready()
            best = min(best, time.perf_counter() - t0)
        cpu = jax.devices()[0].platform == "cpu"
        n = args.matmul_n or (2048 if cpu else 8192)
        return {
            "encoder_gflops": encoder_flops(config, len(x), args.input_len) / best / 1e9,
            "matmul_gflops": interleave.matmul_gflops(n, 5, args.dtype),
        }

    if arm != "jax_rank":
        return fn, peak, None, eng
    model = t5.T5(config)
    enc = partitioning.partition(
        lambda p, x: model.apply({"params": p}, x, method=t5.T5.encode)[0],
        eng.mesh,
        eng.rules,
        in_shardings=(eng.param_shardings, partitioning.batch_sharding(eng.mesh, 2)),
    )
    return fn, peak, encoder_probe, eng


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


def make_hf_llama(args, arm: str):
    import torch
    import transformers

    torch.set_num_threads(interleave.pin_threads())
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
    return fn, lambda: _torch_peak(torch, dev)


def make_jax_llama(args, arm: str):
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

    return fn, peak, None, eng


def _torch_peak(torch, dev: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else peak_rss_mb()


def save_llama_weights(directory: str) -> None:
    import torch
    import transformers

    from jaxrobust.models import llama_config

    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(**llama_config.to_hf_config(llama_bench_config()))
    transformers.LlamaForCausalLM(hf_cfg).save_pretrained(directory)


# ---------------------------------------------------------------------------
# Workers and driver.
# ---------------------------------------------------------------------------

ARMS = ["hf_usual", "hf_best", "jax_rank", "hf_gen", "jax_gen"]
# (arm, baseline, label): the speed-ups reported, each per pair of adjacent runs.
RATIOS = [
    ("jax_rank", "hf_usual", "rank classification vs HF one forward per option"),
    ("jax_rank", "hf_best", "rank classification vs HF encoder once, options batched"),
    ("jax_gen", "hf_gen", "greedy generation vs HF greedy"),
]
TABLE_HEADER = ["arm", "examples/s", "warm-up s", "compiles", "peak MB"]
# Issue 18's targets (medians): speed-ups over HF, the encoder's share of the matmul peak (%).
TARGETS = {("jax_rank", "hf_best"): 1.5, ("jax_gen", "hf_gen"): 1.5, "encoder_share": 60.0}


def serve_arm(args) -> None:
    """Worker: builds the arm, warms it up on one batch, then times it on every example."""
    import contextlib

    state: dict = {}

    def setup():
        if args.family == "llama":
            make = make_hf_llama if args.arm.startswith("hf_") else make_jax_llama
        else:
            make = make_hf if args.arm.startswith("hf_") else make_jax
        built = make(args, args.arm)
        state["fn"], state["peak"] = built[0], built[1]
        state["probe"] = built[2] if len(built) > 2 else None
        state["eng"] = built[3] if len(built) > 3 else None
        try:
            import torch

            state["ctx"] = torch.inference_mode
        except ImportError:
            state["ctx"] = contextlib.nullcontext
        interleave.pin_threads()
        t0 = time.perf_counter()
        with state["ctx"]():
            state["fn"](min(args.batch_size, args.examples))
        return {"warmup_s": time.perf_counter() - t0}

    def work(request):
        with state["ctx"]():
            t0 = time.perf_counter()
            state["fn"](args.examples)
            out = {"seconds": time.perf_counter() - t0, "peak_mb": state["peak"]()}
        eng = state["eng"]
        out["compiles"] = sum(eng.trace_counts.values()) if eng is not None else 0
        if state["probe"] is not None:
            out.update(state["probe"]())
        return out

    interleave.serve(setup, work)


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
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="cores per arm")
    p.add_argument("--matmul-n", type=int, default=0, help="0: 2048 on CPU, 8192 otherwise")
    p.add_argument("--skip-hf", action="store_true", help="JAX arms only (no torch needed)")
    p.add_argument("--write-readme", action="store_true", help="write README.md's bench:engine")
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--weights", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    # Fewer examples than a batch: one batch of exactly them (no dummy rows) in every arm.
    args.batch_size = min(args.batch_size, args.examples)

    if args.arm:  # Worker process: one arm.
        serve_arm(args)
        return

    arms = ["jax_rank", "jax_gen"] if args.skip_hf else ARMS
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
        workers = {}
        try:
            for arm in arms:  # One at a time, so set-up and warm-up do not compete.
                cmd = [sys.executable, __file__, "--arm", arm, "--weights", weights]
                for k, v in vars(args).items():
                    if k not in ("arm", "weights", "skip_hf", "write_readme"):
                        cmd += [f"--{k.replace('_', '-')}", str(v)]
                workers[arm] = interleave.Worker(arm, cmd, interleave.worker_env(args.threads))
            probe = lambda: interleave.matmul_gflops(1024)  # noqa: E731
            res = interleave.interleave(
                {a: (lambda w=w: w.run()) for a, w in workers.items()}, args.reps, probe
            )
            res["warmup_s"] = {a: w.ready["warmup_s"] for a, w in workers.items()}
        finally:
            for w in workers.values():
                w.close()
    args.defaults = {a.dest: a.default for a in p._actions}
    text = report(args, res)
    print(text)
    if args.write_readme:
        interleave.write_block(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md"),
            "engine",
            text,
        )


def report(args, res: dict) -> str:
    """Markdown: the command, load and matmul drift, the arms' table, the paired ratios."""
    f = interleave.fmt_spread
    n = args.examples
    runs = res["runs"]
    name = "llama bench-100m" if args.family == "llama" else args.preset
    defaults = getattr(args, "defaults", {})
    flags = " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k not in ("arm", "weights", "write_readme", "defaults", "batch_size")
        and (v != defaults.get(k) or k in ("examples", "reps", "threads"))
        and v is not False
    )
    d = interleave.drift(res["probes"])
    lines = [
        f"Command: `python benchmarks/bench_rank_classification.py {flags} --write-readme`",
        "",
        f"{name} {args.dtype}, {n} examples x {args.options} options, input {args.input_len} "
        f"tokens, options <= {args.option_len} tokens, generation {args.gen_tokens} tokens, "
        f"batch {args.batch_size}, {args.threads} threads per arm, {args.reps} interleaved "
        "repetitions (median [min-max]).",
        "",
        f"Load average (1, 5, 15 min) at each repetition: {'; '.join(res['load'][:-1])}.",
        f"Matmul throughput (1024^2 float32, GFLOP/s) before each repetition and after the "
        f"last: {', '.join(f'{x:.0f}' for x in res['probes'])}; first to last "
        f"{100 * d['change']:+.0f}%"
        + (" DRIFT > 20%: treat this run's ratios with care." if d["flagged"] else "."),
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
    ]
    for arm, rs in runs.items():
        rate = interleave.spread([n / r["seconds"] for r in rs])
        lines.append(
            f"| {arm} | {f(rate)} | {res['warmup_s'][arm]:.1f} | {rs[-1]['compiles']} | "
            f"{max(r['peak_mb'] for r in rs):.0f} |"
        )
    lines += [
        "",
        "| speed-up (per adjacent pair) | median [min-max] | target | met |",
        "|---|---|---|---|",
    ]
    for arm, base, label in RATIOS:
        if arm in runs and base in runs:
            slow = [r["seconds"] for r in runs[base]]
            fast = [r["seconds"] for r in runs[arm]]
            ratio = interleave.paired_ratios(slow, fast)
            goal = TARGETS.get((arm, base))
            lines.append(
                f"| {label} | {f(ratio, 2, 'x')} | {_goal(goal, 'x')} | {_met(ratio, goal)} |"
            )
    probes = [r for r in runs.get("jax_rank", []) if "encoder_gflops" in r]
    if probes:
        share = interleave.spread([100 * r["encoder_gflops"] / r["matmul_gflops"] for r in probes])
        enc = interleave.spread([r["encoder_gflops"] for r in probes])
        mm = interleave.spread([r["matmul_gflops"] for r in probes])
        goal = TARGETS["encoder_share"]
        lines.append(
            f"| encoder at batch 32, share of the matmul throughput measured next to it "
            f"(encoder {f(enc, 0)} GFLOP/s, matmul {f(mm, 0)} GFLOP/s) | "
            f"{f(share, 0, '%')} | {_goal(goal, '%')} | {_met(share, goal)} |"
        )
    return "\n".join(lines)


def _goal(goal, unit: str) -> str:
    return "-" if goal is None else f">= {goal:g}{unit}"


def _met(spread: dict, goal) -> str:
    """Whether the median meets the goal; a miss says by how much (median / goal)."""
    if goal is None:
        return "-"
    if spread["median"] >= goal:
        return "yes"
    return f"no ({spread['median'] / goal:.0%} of it)"


if __name__ == "__main__":
    main()
