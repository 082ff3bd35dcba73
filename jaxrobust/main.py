"""jaxrobust's command line: one function per command.

  python -m jaxrobust.main score [--checkpoint HF_DIR] [--preset tiny] [--seed 0]

`score` rank-classifies a handful of instruction prompts, each phrased several
ways, and prints every option's log-likelihood, the prediction, and how many
phrasings of the same question agree. Without `--checkpoint` it runs a randomly
initialised preset with a byte-level tokenizer, and says so: the numbers then
show the machinery working, not a model's knowledge.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import checkpoints
from jaxrobust.models import t5
from jaxrobust.tokenizer import ByteTokenizer, HFTokenizer

# One question, three phrasings: the robustness question in miniature.
DEMO_PROMPTS = [
    ("Is the following statement true? Paris is the capital of France.", ["yes", "no"]),
    ("Paris is the capital of France. True or false?", ["true", "false"]),
    ("Answer yes or no: is Paris the capital of France?", ["yes", "no"]),
    (
        "Which relation holds between 'smoke' and 'fire' in: The smoke came from a fire?",
        ["cause-effect", "component-whole", "other"],
    ),
]


# ---------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------


def _pad(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:length]
    return out


def score(args: argparse.Namespace) -> int:
    if args.checkpoint:
        config, params = checkpoints.load_hf_t5(args.checkpoint)
        tokenizer = HFTokenizer(args.checkpoint)
        label = f"checkpoint {args.checkpoint}"
    else:
        tokenizer = ByteTokenizer()
        config = t5.get_preset(args.preset, vocab_size=tokenizer.vocab_size)
        variables = t5.T5(config).init(jax.random.PRNGKey(args.seed), *t5.dummy_inputs())
        params = jax.tree_util.tree_map(
            lambda x: x.value if hasattr(x, "value") else x,
            variables["params"],
            is_leaf=lambda x: hasattr(x, "value"),
        )
        label = f"RANDOM WEIGHTS ({args.preset} preset, seed {args.seed}, byte tokenizer)"
    print(f"jaxrobust score: {label}\n")

    model = t5.T5(config)
    max_options = max(len(o) for _, o in DEMO_PROMPTS)
    enc = _pad([tokenizer.encode(p) for p, _ in DEMO_PROMPTS], 128)
    targets = [
        [tokenizer.encode(o) for o in opts] + [[]] * (max_options - len(opts))
        for _, opts in DEMO_PROMPTS
    ]
    length = max(len(t) for row in targets for t in row)
    tgt = np.stack([_pad(row, length) for row in targets])  # [B, O, L]
    dec_in = np.concatenate([np.zeros_like(tgt[..., :1]), tgt[..., :-1]], axis=-1)

    @jax.jit
    def option_scores(params, enc, dec_in, tgt):
        encoded, mask = model.apply({"params": params}, enc, method=t5.T5.encode)
        logits, _ = model.apply({"params": params}, encoded, mask, dec_in, method=t5.T5.decode)
        lp = jax.nn.log_softmax(logits, axis=-1)
        tok = jnp.take_along_axis(lp, tgt[..., None], axis=-1)[..., 0]
        return jnp.sum(jnp.where(tgt != 0, tok, 0.0), axis=-1)  # [B, O]

    scores = np.asarray(option_scores(params, enc, dec_in, tgt))
    predictions = []
    for (prompt, opts), row in zip(DEMO_PROMPTS, scores, strict=True):
        row = row[: len(opts)]
        pred = int(np.argmax(row))  # Ties: the first option.
        predictions.append(opts[pred])
        print(prompt)
        for o, s in zip(opts, row, strict=True):
            print(f"  {'*' if o == opts[pred] else ' '} {o:<18} log p = {s:9.3f}")
    # The first three prompts ask the same question; do their answers agree?
    yes_like = [p in ("yes", "true") for p in predictions[:3]]
    alike = max(yes_like.count(True), yes_like.count(False))
    print(f"\nphrasings of the same question answered alike: {alike}/3")
    return 0


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxrobust.main",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("score", help="rank-classify demo prompts (default command)")
    p.add_argument("--checkpoint", help="HF T5 directory (config.json, weights, tokenizer)")
    p.add_argument("--preset", default="tiny", help=f"random-weight preset: {sorted(t5.PRESETS)}")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] or ["score"])
    return {"score": score}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
