"""jaxrobust's command line: one function per command.

  python -m jaxrobust.main score [--family t5] [--checkpoint HF_DIR|HUB_ID|T5X] [--preset tiny]
      [--tokenizer byte] [--seed 0]
  python -m jaxrobust.main eval --gin_file=gin_configs/runs/eval.gin \
      --gin_file=gin_configs/models/flan_t5_xl.gin --gin.CHECKPOINT_DIR="'/ckpt'" \
      --gin.MIXTURES="['jr:semeval:re#all']" --gin.OUTPUT_DIR="'/tmp/out'"
  python -m jaxrobust.main report --output_dir=/tmp/out
  python -m jaxrobust.main study [--gin.OUTPUT_DIR="'/tmp/study'"]   (the built-in study)
  python -m jaxrobust.main train_prompt --gin_file=gin_configs/runs/train_prompt.gin \
      --gin_file=gin_configs/models/flan_t5_xl.gin --gin.CHECKPOINT_DIR="'/ckpt'" \
      --gin.TASK="'jr:semeval:re'" --gin.WORKDIR="'/tmp/pt'"

`eval` is the T5X-style main job: gin files and `--gin.NAME=value` bindings
configure `evaluation.run` (gin files register library callables with
`dynamic_registration`; gin is imported here only), and it writes per-example
records under OUTPUT_DIR (see `jaxrobust/evaluation/`). `report` turns an
output directory into tables and plots (`jaxrobust/analysis/report.py`). `train_prompt`
trains a soft prompt (or fine-tunes) for robustness to instruction paraphrases
the same way, configuring `training.train` (`jaxrobust/training/`).

`score` rank-classifies a handful of instruction prompts, each phrased several
ways, and prints every option's log-likelihood, the prediction, and how many
phrasings of the same question agree. Without `--checkpoint` it runs a randomly
initialised preset with a byte-level tokenizer, and says so: the numbers then
show the machinery working, not a model's knowledge.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import pathlib
import re
import sys
from collections.abc import Callable
from typing import Any

# The repository root: `--gin_file=gin_configs/...` resolves from any directory.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
STUDY_GIN = "gin_configs/runs/study.gin"

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
# Multi-host start-up (every command that touches JAX calls `_start` first).
# ---------------------------------------------------------------------------


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """Explicit multi-host flags (GPU clusters without SLURM); TPU and SLURM need none."""
    p.add_argument("--coordinator", help="host:port of process 0 (JAXROBUST_COORDINATOR)")
    p.add_argument("--num_processes", type=int, help="process count (JAXROBUST_NUM_PROCESSES)")
    p.add_argument("--process_id", type=int, help="this process's id (JAXROBUST_PROCESS_ID)")


def _start(args: argparse.Namespace) -> None:
    """Joins the other hosts (`distributed.initialize`) before any other JAX call."""
    from jaxrobust.parallel import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)


# ---------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------


def score(args: argparse.Namespace) -> int:
    _start(args)
    import jax

    from jaxrobust import inference
    from jaxrobust.parallel import partitioning

    spec = inference.ModelSpec(
        name="score",
        family=args.family,
        # A checkpoint's shapes come from it (HF) or from --preset (T5X); no checkpoint: tiny.
        preset=args.preset if args.preset is not None else ("" if args.checkpoint else "tiny"),
        checkpoint=args.checkpoint or "",
        tokenizer=args.tokenizer or ("" if args.checkpoint else "byte"),
        seed=args.seed,
    )
    mesh = partitioning.make_mesh()
    model = inference.load_model(spec, mesh)
    if args.checkpoint:
        label = f"checkpoint {args.checkpoint}"
    else:
        label = f"RANDOM WEIGHTS ({spec.preset} preset, seed {args.seed}, byte tokenizer)"
    data = mesh.shape[partitioning.DATA]
    engine = model.engine(batch_size=data * -(-len(DEMO_PROMPTS) // data), max_input_len=128)
    # Process 0 scores the prompts; the others join the same steps with none.
    mine = DEMO_PROMPTS if jax.process_index() == 0 else []
    results = engine.rank_classify([p for p, _ in mine], [o for _, o in mine])
    if not mine:
        return 0
    print(f"jaxrobust score: {label}\n")
    predictions = []
    for (prompt, opts), result in zip(mine, results, strict=True):
        pred = result.prediction  # Ties: the first option.
        predictions.append(opts[pred])
        print(prompt)
        if result.protected_cut:  # A whole prompt is protected: a cut is never silent.
            print(f"  (cut to {engine.max_input_len} tokens: part of the prompt is lost)")
        for o, s in zip(opts, result.scores, strict=True):
            print(f"  {'*' if o == opts[pred] else ' '} {o:<18} log p = {s:9.3f}")
    # The first three prompts ask the same question; do their answers agree?
    yes_like = [p in ("yes", "true") for p in predictions[:3]]
    alike = max(yes_like.count(True), yes_like.count(False))
    print(f"\nphrasings of the same question answered alike: {alike}/3")
    return 0


# ---------------------------------------------------------------------------
# Gin (eval, train_prompt and study are configured the same way).
# ---------------------------------------------------------------------------


def _add_gin_flags(
    p: argparse.ArgumentParser, gin_file_help: str = "gin file (repeatable)"
) -> None:
    p.add_argument("--gin_file", action="append", default=[], help=gin_file_help)
    p.add_argument("--gin_bindings", action="append", default=[], help="a binding, e.g. X=1")
    p.add_argument("--gin_search_paths", action="append", default=[])


def _find_gin_file(name: str, search_paths: list[str]) -> str:
    """`name` as given, else under a search path or the repository root."""
    for base in ["", *search_paths, str(REPO_ROOT)]:
        path = os.path.join(base, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"gin file {name!r} not found here, under {search_paths or 'no --gin_search_paths'}, "
        f"or under the repository root {REPO_ROOT}"
    )


def _gin_texts(paths: list[str], search_paths: list[str]) -> list[str]:
    """The text of every gin file `paths` load, their `include`d files too."""
    texts, todo, seen = [], list(paths), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = pathlib.Path(path).read_text()
        texts.append(text)
        for name in re.findall(r"^include\s+['\"]([^'\"]+)['\"]", text, re.M):
            try:
                todo.append(_find_gin_file(name, [os.path.dirname(path), *search_paths]))
            except FileNotFoundError:
                pass  # gin itself names a missing include.
    return texts


def _check_macro_bindings(bindings: list[str], texts: list[str], files: list[str]) -> None:
    """Refuses a command-line macro binding (`--gin.NAME=value`) that no loaded gin file
    uses: gin would define the macro and run with the default (a typo like `LIMT`)."""
    used = {m for text in texts + bindings for m in re.findall(r"%([A-Za-z_]\w*)", text)}
    for binding in bindings:
        name = binding.split("=", 1)[0].strip()
        if not re.fullmatch(r"[A-Za-z_]\w*", name) or name in used:
            continue  # A configurable's parameter (gin checks those) or a used macro.
        close = difflib.get_close_matches(name, sorted(used - {"gin"}), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "no macro they use is close"
        raise ValueError(
            f"--gin.{name}: no loaded gin file uses the macro {name} ({', '.join(files)}), so "
            f"the binding would change nothing; {hint}"
        )


def _call_configured(fn: Callable[..., Any], args: argparse.Namespace, default_files=()) -> Any:
    """Parses the command's gin files and bindings afresh and calls `fn` as they configure
    it, passing the operative config as `gin_config` (stored with the results).

    Raises:
      ValueError: no gin file given, none configures `fn`, or a macro binding that no
        gin file uses (with the close names).
    """
    import gin

    names = args.gin_file or list(default_files)
    target = f"{fn.__module__.rsplit('.', 1)[0]}.{fn.__name__}"
    if not names:
        raise ValueError(
            f"{args.command}: no --gin_file given; the run's gin file configures {target}, "
            f"e.g. --gin_file=gin_configs/runs/{args.command}.gin "
            "--gin_file=gin_configs/models/<model>.gin (see that file's header)"
        )
    paths = [_find_gin_file(f, args.gin_search_paths) for f in names]
    gin.clear_config()  # A caller running several commands in one process starts clean.
    gin.parse_config_files_and_bindings(paths, args.gin_bindings, skip_unknown=False)
    try:
        configured = (
            gin.get_configurable(fn) if gin.get_bindings(fn, resolve_references=False) else None
        )
    except ValueError:  # Never registered: no gin file imported it.
        configured = None
    if configured is None:
        raise ValueError(
            f"{args.command}: none of the gin files {names} configures {target}; the first "
            f"--gin_file is the run's (gin_configs/runs/{args.command}.gin)"
        )
    _check_macro_bindings(args.gin_bindings, _gin_texts(paths, args.gin_search_paths), names)
    return configured(gin_config=gin.config_str())


# ---------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> int:
    _start(args)  # Multi-host: before any JAX computation.
    from jaxrobust import evaluation

    statuses = _call_configured(evaluation.run, args)
    for model, per_task in statuses.items():
        counts = {s: list(per_task.values()).count(s) for s in ("written", "resumed", "skipped")}
        print(f"{model}: {len(per_task)} record files ({counts})")
    return 0


# ---------------------------------------------------------------------------
# train_prompt
# ---------------------------------------------------------------------------


def train_prompt(args: argparse.Namespace) -> int:
    _start(args)  # Multi-host: before any JAX computation.
    from jaxrobust import training

    result = _call_configured(training.train, args)
    print(f"trained to step {result['step']}; held-out: {result['heldout']}")
    return 0


# ---------------------------------------------------------------------------
# study
# ---------------------------------------------------------------------------


def study(args: argparse.Namespace) -> int:
    from jaxrobust.study import pipeline

    report_dir = _call_configured(pipeline.run, args, default_files=[STUDY_GIN])
    print((report_dir / "study.md").read_text())
    print(f"report: {report_dir / 'study.md'} (plot: {report_dir / 'study.png'}; all tables and")
    print(f"plots in {report_dir})")
    return 0


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def report(args: argparse.Namespace) -> int:
    from jaxrobust.analysis import report as report_lib
    from jaxrobust.parallel import cluster

    if cluster.resolve_cluster(os.environ).process_id != 0:
        print("report: written by process 0 only")  # No JAX here: the environment decides.
        return 0
    out = report_lib.write_report(
        args.output_dir,
        n_resamples=args.n_resamples,
        seed=args.seed,
        template_split=args.template_split,
    )
    print((out / "summary.md").read_text())
    if args.compare_csv:
        from jaxrobust.analysis import compare

        for table in args.compare_csv:
            print(compare.write(args.output_dir, table, args.compare_model).read_text())
    print(f"tables and plots: {out}")
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
    p.add_argument("--family", default="t5", help="model family: t5, llama (or registered)")
    p.add_argument(
        "--checkpoint",
        help="HF directory or hub id (config.json, weights, tokenizer), or a T5X checkpoint; "
        "local or gs://",
    )
    p.add_argument(
        "--preset",
        help="preset (models/<family>_config.py) or HF config.json: the shapes of random "
        "weights (default tiny) or of a T5X checkpoint",
    )
    p.add_argument(
        "--tokenizer",
        help="'byte', an HF tokenizer directory or hub id (default: the checkpoint's)",
    )
    p.add_argument("--seed", type=int, default=0)
    _add_cluster_flags(p)
    p = sub.add_parser("eval", help="gin-configured robustness evaluation (evaluation.run)")
    _add_gin_flags(p)
    _add_cluster_flags(p)
    p = sub.add_parser("train_prompt", help="gin-configured prompt tuning (training.train)")
    _add_gin_flags(p)
    _add_cluster_flags(p)
    p = sub.add_parser("study", help="the built-in study end to end (gin_configs/runs/study.gin)")
    _add_gin_flags(p, "default: " + STUDY_GIN)
    p = sub.add_parser("report", help="tables and plots from an eval output directory")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--compare_csv",
        action="append",
        default=[],
        help="an InstructionEval result table (result_csv/Main/<MMLU|BBL>/<model>.csv) to "
        "compare instruction by instruction (analysis/compare.py); repeatable",
    )
    p.add_argument("--compare_model", help="the run's model to compare (default: the only one)")
    p.add_argument(
        "--template_split",
        help="a training run's template_split.json for every model (default: each model's "
        "own, beside its soft prompt or fine-tuned checkpoint)",
    )
    argv = list(argv if argv is not None else sys.argv[1:]) or ["score"]
    # T5X-style `--gin.NAME=value` flags become gin bindings `NAME=value`.
    gin_flags = [a[len("--gin.") :] for a in argv if a.startswith("--gin.")]
    args = parser.parse_args([a for a in argv if not a.startswith("--gin.")])
    if gin_flags and args.command not in ("eval", "train_prompt", "study"):
        parser.error("--gin.NAME=value flags belong to the eval, train_prompt and study commands")
    if args.command in ("eval", "train_prompt", "study"):
        args.gin_bindings = args.gin_bindings + gin_flags
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    commands = {
        "score": score,
        "eval": evaluate,
        "train_prompt": train_prompt,
        "study": study,
        "report": report,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
