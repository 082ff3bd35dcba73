"""The ground-truth template x example grid behind the PromptEval-style estimator.

Evaluates a trained model on every template of a world task, its bank's
templates plus format variants (`jaxrobust.tasks.variants`), on the whole test
split, and writes the correctness of every (template, example) cell as a small
``.npz`` (`save_grid` / `load_grid`): ``tests/fixtures/prompteval_grid.npz`` is
this module's output for the built-in study's tuned T5 (first edition),
reproduced with::

    python -m jaxrobust.main study   # trains study_output/tune (or use your own)
    python -m jaxrobust.study.format_grid --checkpoint=study_output/tune/hf_model \\
        --out=tests/fixtures/prompteval_grid.npz

and measured (the README's numbers) with
``python -m jaxrobust.study.format_grid check --grid=tests/fixtures/prompteval_grid.npz``.

The evaluation goes through `evaluation.run` (records under ``--workdir``), so
an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import pathlib

import numpy as np

from jaxrobust.storage import files, records


@dataclasses.dataclass(frozen=True)
class Grid:
    """Correctness of every (template, example) cell.

    Attributes:
      correct: bool [T, E].
      template_ids: [T].
      example_ids: [E].
      parents: [T]: a variant's format description ('' for bank templates).
      rules: [T]: the grammar rules a variant applied (() for bank templates).
      provenance: [T].
      answer_words: [T]: the options joined by '|' when a template's options are the
        same on every example (labels such as 'A|B|C|D'), '' when they are the texts.
      gold_index: [E]: each example's gold option position (the same in every template).
      meta: how the grid was made (model, task, seed, variants per description).
    """

    correct: np.ndarray
    template_ids: tuple[str, ...]
    example_ids: tuple[str, ...]
    parents: tuple[str, ...]
    rules: tuple[tuple[str, ...], ...]
    provenance: tuple[str, ...]
    answer_words: tuple[str, ...]
    gold_index: tuple[int, ...]
    meta: dict


def save_grid(grid: Grid, path) -> None:
    """Writes the grid as an ``.npz`` (cells bit-packed), atomically."""
    buf = io.BytesIO()
    info = dict(
        template_ids=grid.template_ids,
        example_ids=grid.example_ids,
        parents=grid.parents,
        rules=grid.rules,
        provenance=grid.provenance,
        answer_words=grid.answer_words,
        gold_index=grid.gold_index,
        meta=grid.meta,
        shape=list(grid.correct.shape),
    )
    np.savez_compressed(
        buf,
        bits=np.packbits(grid.correct.astype(bool).ravel()),
        info=np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8),
    )
    files.write_atomic(path, buf.getvalue())


def load_grid(path) -> Grid:
    """Reads a grid written by `save_grid`."""
    with np.load(path) as data:
        info = json.loads(bytes(data["info"]).decode())
        shape = tuple(info["shape"])
        correct = np.unpackbits(data["bits"])[: shape[0] * shape[1]].reshape(shape).astype(bool)
    return Grid(
        correct=correct,
        template_ids=tuple(info["template_ids"]),
        example_ids=tuple(info["example_ids"]),
        parents=tuple(info["parents"]),
        rules=tuple(tuple(r) for r in info["rules"]),
        provenance=tuple(info["provenance"]),
        answer_words=tuple(info["answer_words"]),
        gold_index=tuple(info["gold_index"]),
        meta=info["meta"],
    )


def grid_from_records(folder, model: str, task_prefix: str) -> Grid:
    """The grid of one model's record files for one data set (``jr:<dataset>:<format>``)."""
    from jaxrobust import tasks

    rows = {}
    for path in sorted(records.model_dir(folder, model).glob("*.jsonl")):
        f = records.read_records(path)
        if not f.header["task"].startswith(task_prefix + ":"):
            continue
        rows[f.header["template_id"]] = (f.header, f.records)
    tids = sorted(rows)
    example_ids = tuple(r["example_id"] for r in rows[tids[0]][1])
    gold = tuple(int(r["gold_index"]) for r in rows[tids[0]][1])
    correct = np.zeros((len(tids), len(example_ids)), bool)
    parents, rules, prov, words = [], [], [], []
    for i, tid in enumerate(tids):
        header, recs = rows[tid]
        if tuple(r["example_id"] for r in recs) != example_ids:
            raise ValueError(f"{tid}: record files hold other examples than {tids[0]}")
        if tuple(int(r["gold_index"]) for r in recs) != gold:
            raise ValueError(f"{tid}: gold option positions differ from {tids[0]}'s")
        correct[i] = [r["correct"] for r in recs]
        template = tasks.lookup(header["task"])[1]
        parents.append(template.parent)
        rules.append(template.rules)
        prov.append(header["provenance"])
        options = {tuple(r["options"]) for r in recs}
        words.append("|".join(options.pop()) if len(options) == 1 else "")
    return Grid(
        correct,
        tuple(tids),
        example_ids,
        tuple(parents),
        tuple(rules),
        tuple(prov),
        tuple(words),
        gold,
        {},
    )


def check(
    grid: Grid,
    *,
    seeds: int = 20,
    budget: float = 0.05,
    search_shares: tuple[float, ...] = (0.1, 0.25, 0.5, 0.6, 0.75),
):
    """The README's measurements on a grid: over `seeds` seeded designs at `budget`, the
    90th percentile of |estimate - truth| (points) of the mean, 5th and 95th
    percentile across templates, PromptEval-style (posterior means, and the MAP
    plug-in) and naive; and, over the grid's format variants, for each share of
    their grid in `search_shares` spent as a search budget, how often Thompson
    sampling (its budget shared by need, and split in halves) and uniform
    allocation put the true best / worst format (and both) in
    their top 3 over `seeds` seeds, the mean shortfall (points) of their top pick
    from the true best / worst, and the stated budget: the smallest share at which
    Thompson sampling finds both in at least 3/4 of the seeds and more often than
    uniform (None if none)."""
    from jaxrobust.analysis import format_search, prompteval
    from jaxrobust.evaluation import design

    truth = prompteval.summarize(grid.correct.mean(axis=1))
    x, names = prompteval.template_covariates(grid.parents, grid.answer_words)
    words = [i for i, n in enumerate(names) if n.startswith("answer_words=")]
    gold = prompteval.gold_position(grid.gold_index)
    keys = ("mean", "p5", "p95")
    errors = {"prompteval": [], "prompteval_map": [], "naive": []}
    for seed in range(seeds):
        mask = design.sample_cells(*grid.correct.shape, budget, seed)
        priors = prompteval.empirical_priors(mask, grid.correct, x, gold, words)
        ests = {
            name: prompteval.estimate(
                mask, grid.correct, x, gold, words, seed=seed, point=point, **priors
            )
            for name, point in (("prompteval", "posterior"), ("prompteval_map", "map"))
        }
        ests["naive"] = prompteval.naive(mask, grid.correct)
        for name, e in ests.items():
            errors[name].append([abs(e.summary[k] - truth[k]) * 100 for k in keys])
    out = {
        "grid": list(grid.correct.shape),
        "truth": {k: round(v * 100, 2) for k, v in truth.items()},
        "budget": budget,
        "cells": int(design.n_cells(*grid.correct.shape, budget)),
    }
    for name, errs in errors.items():
        p90 = np.percentile(np.array(errs), 90, axis=0)
        out[name] = {k: round(float(v), 2) for k, v in zip(keys, p90, strict=True)}
    variants = grid.correct[[i for i, p in enumerate(grid.parents) if p]]
    acc = variants.mean(axis=1)
    sizes = [variants.shape[1]] * len(variants)
    rows = []
    for share in search_shares:
        evaluations = int(round(share * variants.size))
        row = {"share": share, "evaluations": evaluations}
        for arm in ("thompson", "thompson_halves", "uniform"):
            hits, regret = np.zeros(3, int), np.zeros(2)
            for seed in range(seeds):
                evaluate = format_search.grid_evaluator(variants, seed)
                if arm == "uniform":
                    r = format_search.uniform(evaluate, sizes, evaluations)
                else:
                    shared = arm == "thompson"
                    r = format_search.search(evaluate, sizes, evaluations, seed=seed, shared=shared)
                best, worst = format_search.found(r, variants)
                hits += [best, worst, best and worst]
                regret += [acc.max() - acc[r.best[0]], acc[r.worst[0]] - acc.min()]
            row[arm] = {
                "best_in_top3": int(hits[0]),
                "worst_in_top3": int(hits[1]),
                "both": int(hits[2]),
                "best_shortfall": round(float(regret[0] / seeds * 100), 2),
                "worst_shortfall": round(float(regret[1] / seeds * 100), 2),
            }
        rows.append(row)
    # The stated budget: the smallest share at which Thompson sampling finds both the best
    # and the worst in at least three quarters of the seeds and more often than uniform.
    met = [
        r["share"]
        for r in rows
        if r["thompson"]["both"] >= 0.75 * seeds and r["thompson"]["both"] > r["uniform"]["both"]
    ]
    search = {
        "formats": len(variants),
        "examples": variants.shape[1],
        "budgets": rows,
        "stated": min(met) if met else None,
    }
    out["search"] = search
    return out


def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:
        p = argparse.ArgumentParser(description="the README's measurements on a grid")
        p.add_argument("--grid", required=True)
        p.add_argument("--seeds", type=int, default=20)
        args = p.parse_args(argv[1:])
        print(json.dumps(check(load_grid(args.grid), seeds=args.seeds), indent=1))
        return 0
    from jaxrobust import evaluation
    from jaxrobust.tasks import variants

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="HF directory of the trained model")
    p.add_argument("--task", default="jr:world_mc:qa")
    p.add_argument("--variants", type=int, default=44, help="variants per format description")
    p.add_argument("--seed", type=int, default=0, help="which variants are drawn")
    p.add_argument("--limit", type=int, default=200, help="examples (test passages)")
    p.add_argument("--workdir", default="/tmp/format_grid", help="evaluation output folder")
    p.add_argument("--out", required=True, help="the .npz to write")
    args = p.parse_args(argv)
    variants.register_variants(args.task, args.variants, seed=args.seed)
    model = evaluation.ModelSpec(
        name="grid", checkpoint=args.checkpoint, observed_collections=("study",)
    )
    options = evaluation.EvalOptions(
        limit=args.limit, batch_size=64, max_input_len=128, progress=False
    )
    evaluation.run([model], [f"{args.task}#all"], args.workdir, options)
    grid = grid_from_records(args.workdir, "grid", args.task)
    grid = dataclasses.replace(
        grid,
        meta=dict(
            task=args.task,
            model=pathlib.Path(args.checkpoint).as_posix(),
            variants_per_description=args.variants,
            seed=args.seed,
            limit=args.limit,
        ),
    )
    save_grid(grid, args.out)
    acc = grid.correct.mean(axis=1) * 100
    print(
        f"{args.out}: {grid.correct.shape[0]} templates x {grid.correct.shape[1]} examples; "
        f"template accuracy mean {acc.mean():.1f}, p5 {np.percentile(acc, 5):.1f}, "
        f"p95 {np.percentile(acc, 95):.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
