"""Tables and plots from an evaluation output directory alone.

`write_report(output_dir)` reads every record file under
``<output_dir>/records/<model>/`` (each verified; a corrupt or truncated one
raises `records.RecordsError` naming it: re-run the evaluation, which
recomputes it) and the models' ``model.json``, and writes under
``<output_dir>/report/``:

* ``summary.md`` / ``summary.csv`` / ``summary.json``: the papers' table. Rows
  are models; per benchmark: observed templates' mean +- std, unobserved
  templates' mean +- std, the gap (observed - unobserved) with its two-level
  bootstrap 95% CI (examples and templates resampled, seeded;
  `stats.bootstrap`), the performance drop rate (gap / observed mean), the
  paired permutation test's p (accuracy benchmarks;
  `stats.paired_permutation_test`); over all templates the mean, min and max,
  prediction consistency and Fleiss' kappa; and, per benchmark run by several
  models, how alike the templates rank the models (mean Kendall's tau over
  template pairs). Scores are percentages in Markdown, fractions in CSV/JSON.
* ``templates.md`` / ``templates.csv``: one row per (model, benchmark,
  template): score, provenance, group, examples, share of truncated inputs and
  of inputs cut in protected text, and (RE) micro-F1 beside the metric.

Metrics are `scoring.METRICS`: SemEval-2010 Task 8's headline is its official
score, with micro-F1 beside it (``micro_f1_*`` in summary.csv/.json). Where
inputs were shortened, summary.md's "Truncated inputs" table (and the CSV/JSON)
give the shares and the gap on the examples no template shortened.
* ``plots/``: `plots.py`'s figures.
* Records of a sampled design (`EvalOptions.design_budget`) score a share of the
  grid: summary.md's "Estimated from a sampled design" (summary.json ``estimated``)
  and templates.md/.csv's estimated columns give `prompteval.estimate`'s figures,
  labelled with the share of cells, their number and the seed (`_estimated`).

Benchmarks, metrics and groups are `scoring.py`'s. A benchmark of several data
sets (``mmlu/qa``, ``bigbench_lite/qa``) is scored per template as the macro
mean over its data sets; the bootstrap and tests pool their examples. Beside it,
``<benchmark> pooled`` (``mmlu/qa pooled``) scores each template once over all
its examples pooled into one data set, as Sun et al. (2023) pooled MMLU's
subjects.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os

import numpy as np
from etils import epath

from jaxrobust.analysis import metrics, plots, scoring, stats
from jaxrobust.storage import records
from jaxrobust.storage.files import write_atomic

# ---------------------------------------------------------------------------
# Analysis.
# ---------------------------------------------------------------------------


# A benchmark of several data sets (``mmlu/qa``) is reported twice: its name alone is
# the macro mean over its data sets, ``<name> pooled`` one score over every example.
POOLED = "pooled"


@dataclasses.dataclass(frozen=True)
class TemplateRow:
    model: str
    benchmark: str
    template_id: str
    provenance: str
    group: str  # observed / unobserved / other for this model.
    metric: str  # `scoring.METRICS`: accuracy, micro_f1 or semeval_official.
    score: float  # Macro mean over the benchmark's data sets.
    n_examples: int
    truncated: float  # Share of inputs truncated to fit.
    micro_f1: float | None = None  # RE: micro-F1 beside the metric (Ni et al.'s); qa: None.
    protected_cut: float = 0.0  # Share of inputs that did not fit even shortened.
    parent: str = ""  # A format variant's description (group 'variants'); '' otherwise.
    # A sampled design's records (`EvalOptions.design_budget`): the accuracy over every
    # example estimated by `prompteval.estimate` and its 90% interval (`score` stays
    # the plain mean of the observed cells); None for a full run.
    estimated: float | None = None
    estimated_low: float | None = None
    estimated_high: float | None = None
    design_share: float | None = None  # Share of the grid's cells observed.
    design_cells: int | None = None  # Cells observed.
    design_seed: int | None = None  # `EvalOptions.design_seed`.


@dataclasses.dataclass(frozen=True)
class Analysis:
    rows: list[TemplateRow]  # Every (model, benchmark, template), sorted.
    summaries: list[dict]  # One per (model, benchmark): the summary table's row.
    pooled: dict[tuple[str, str], np.ndarray]  # (model, benchmark) -> [K, D] mean states.
    rankings: list[dict]  # Per benchmark of several models: Kendall's tau across templates.
    # Per data set of a benchmark of several data sets (a BIG-bench Lite task, an MMLU
    # subject): the summary row of that data set alone, with "dataset" and "parent".
    per_dataset: list[dict] = dataclasses.field(default_factory=list)


def _nan(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def analyse(
    models: dict[str, dict], files: list[records.RecordFile], *, n_resamples=1000, seed=0
) -> Analysis:
    """Scores every template and summarises every (model, benchmark)."""
    by_key: dict[tuple[str, str], dict[str, list[records.RecordFile]]] = {}
    for f in files:
        model = f.header["config"]["model"]
        bench = scoring.benchmark_of(f.header["dataset"], f.header["format"])
        by_key.setdefault((model, bench), {}).setdefault(f.header["template_id"], []).append(f)
    rows, summaries, pooled, per_dataset = [], [], {}, []
    for (model, bench), by_template in sorted(by_key.items()):
        collections = models.get(model, {}).get("observed_collections", ("*",))
        tids = sorted(by_template)
        per, outs = [], []
        for tid in tids:
            fs = sorted(by_template[tid], key=lambda f: f.header["dataset"])
            parts = [scoring.outcomes(f) for f in fs]
            n = sum(len(f.records) for f in fs)
            prov = fs[0].header["provenance"]
            parent = fs[0].header.get("parent", "")  # format variants: group 'variants'
            per.append(
                TemplateRow(
                    model,
                    bench,
                    tid,
                    prov,
                    "variants" if parent else scoring.group_for_model(prov, collections),
                    parts[0].metric,
                    float(np.mean([o.score for o in parts])),
                    n,
                    sum(int(o.truncated.sum()) for o in parts) / n,
                    micro_f1=None if parts[0].micro_f1 is None else _mean_micro(parts),
                    protected_cut=sum(int(o.protected_cut.sum()) for o in parts) / n,
                    parent=parent,
                )
            )
            outs.append(scoring.concatenate(parts))
        rows += per
        summaries.append(_summary(model, bench, per, outs, n_resamples, seed))
        seen = [
            scoring.observed_dataset(
                r.provenance, by_template[r.template_id][0].header["dataset"], collections
            )
            for r in per
        ]
        summaries[-1]["observed_split"] = _observed_split(per, seen)
        if len({f.header["dataset"] for t in tids for f in by_template[t]}) > 1:
            # Sun et al.'s MMLU: one data set per instruction, its examples pooled.
            flat = [
                dataclasses.replace(r, benchmark=f"{bench} {POOLED}", score=o.score)
                for r, o in zip(per, outs, strict=True)
            ]
            rows += flat
            summaries.append(_summary(model, flat[0].benchmark, flat, outs, n_resamples, seed))
            summaries[-1]["observed_split"] = _observed_split(flat, seen)
            per_dataset += _per_dataset(model, bench, per, by_template, n_resamples, seed)
        if any("design" in f.header["config"] for t in tids for f in by_template[t]):
            # Sampled design: over a benchmark of several data sets, their examples pooled.
            name = summaries[-1]["benchmark"]  # `bench`, or its pooled row
            est, per_t = _estimated(tids, by_template, seed)
            summaries[-1]["estimated"] = est
            rows = [
                dataclasses.replace(r, **per_t[r.template_id])
                if r.benchmark == name and r.model == model
                else r
                for r in rows
            ]
        if all(f.pooled_sum is not None for t in tids for f in by_template[t]):
            pooled[(model, bench)] = np.stack(
                [
                    sum(f.pooled_sum for f in by_template[t])
                    / sum(len(f.records) for f in by_template[t])
                    for t in tids
                ]
            )
    return Analysis(rows, summaries, pooled, _rankings(rows), per_dataset)


def _estimated(tids, by_template, seed) -> tuple[dict, dict[str, dict]]:
    """A sampled design's estimates (`prompteval.estimate`, with the covariates
    `study.format_grid.check` measures it with: parent description, answer words and
    their products with the gold option's position) over the grid of `tids` x every
    (data set, example) some template observed; and the same statistics of the
    observed cells' plain means (`prompteval.naive`) beside them."""
    from jaxrobust.analysis import prompteval

    files = [f for t in tids for f in by_template[t]]
    design = files[0].header["config"]["design"]
    cols = sorted({(f.header["dataset"], str(r["example_id"])) for f in files for r in f.records})
    index = {c: i for i, c in enumerate(cols)}
    mask = np.zeros((len(tids), len(cols)), bool)
    correct = np.zeros_like(mask)
    gold: dict[int, set[int]] = {}
    parents, words = [], []
    for row, t in enumerate(tids):
        options = set()
        for f in by_template[t]:
            for r in f.records:
                col = index[(f.header["dataset"], str(r["example_id"]))]
                mask[row, col], correct[row, col] = True, bool(r["correct"])
                gold.setdefault(col, set()).add(int(r["gold_index"]))
                options.add("|".join(r["options"]))
        parents.append(by_template[t][0].header.get("parent", ""))
        words.append(options.pop() if len(options) == 1 else "")
    x, names = prompteval.template_covariates(parents, words)
    same_gold = all(len(g) == 1 for g in gold.values())
    g = prompteval.gold_position([min(gold[c]) for c in range(len(cols))]) if same_gold else None
    inter = [i for i, n in enumerate(names) if n.startswith("answer_words=")]
    est = prompteval.estimate(mask, correct, x, g, inter, seed=seed)
    plain = prompteval.naive(mask, correct)
    share, cells = float(mask.mean()), int(mask.sum())
    label = {"design_share": share, "design_cells": cells, "design_seed": design["seed"]}
    out = {
        "method": "prompteval (estimated)",
        "budget": design["budget"],
        "seed": design["seed"],
        "share": share,
        "cells": cells,
        "grid": [len(tids), len(cols)],
        **{k: est.summary[k] for k in est.summary},
        "interval": {k: list(v) for k, v in est.interval.items()},
        "observed_cells": plain.summary,
    }
    per_t = {
        t: {
            "estimated": float(est.per_template[i]),
            "estimated_low": float(est.per_template_interval[i, 0]),
            "estimated_high": float(est.per_template_interval[i, 1]),
            **label,
        }
        for i, t in enumerate(tids)
    }
    return out, per_t


def _per_dataset(model, bench, per, by_template, n_resamples, seed) -> list[dict]:
    """Each data set of a several-data-set benchmark summarised alone (its templates'
    scores on it, the same groups), as the papers report the BIG-bench Lite tasks."""
    out = []
    datasets = sorted({f.header["dataset"] for fs in by_template.values() for f in fs})
    for ds in datasets:
        sel, outs = [], []
        for r in per:
            fs = [f for f in by_template[r.template_id] if f.header["dataset"] == ds]
            if fs:
                o = scoring.outcomes(fs[0])
                n = len(fs[0].records)
                sel.append(
                    dataclasses.replace(
                        r,
                        benchmark=f"{bench} {ds}",
                        score=o.score,
                        n_examples=n,
                        truncated=int(o.truncated.sum()) / n,
                        protected_cut=int(o.protected_cut.sum()) / n,
                    )
                )
                outs.append(o)
        row = _summary(model, f"{bench} {ds}", sel, outs, n_resamples, seed)
        out.append({**row, "dataset": ds, "parent": bench})
    return out


def _mean_micro(parts: list[scoring.Outcomes]) -> float:
    return float(np.mean([o.micro_f1 for o in parts]))


def _rankings(rows: list[TemplateRow]) -> list[dict]:
    """Per benchmark run by two or more models: how alike its templates rank the models,
    Kendall's tau-b between two templates' rankings averaged over template pairs
    (`metrics.mean_kendall_tau`), on the templates every model was scored on."""
    by_bench: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        by_bench.setdefault(r.benchmark, {}).setdefault(r.model, {})[r.template_id] = r.score
    out = []
    for bench, per_model in sorted(by_bench.items()):
        if len(per_model) < 2:
            continue
        models = sorted(per_model)
        tids = sorted(set.intersection(*(set(s) for s in per_model.values())))
        tau = None  # No template that every model ran.
        if tids:
            scores = np.array([[per_model[m][t] for m in models] for t in tids])  # [K, M]
            tau = _nan(metrics.mean_kendall_tau(scores))
        out.append(
            dict(benchmark=bench, models=models, n_templates=len(tids), mean_kendall_tau=tau)
        )
    return out


def _summary(model, bench, per, outs: list[scoring.Outcomes], n_resamples, seed) -> dict:
    scores = np.array([r.score for r in per])
    groups = np.array([r.group for r in per])
    out: dict = {"model": model, "benchmark": bench, "metric": per[0].metric}
    for g in ("observed", "unobserved"):
        s = scores[groups == g]
        spread = metrics.spread_stats(s) if s.size else None
        out[f"{g}_n"] = int(s.size)
        out[f"{g}_mean"] = spread.mean if spread else None
        out[f"{g}_std"] = _nan(spread.std) if s.size > 1 else None
    spread = metrics.spread_stats(scores)
    out["all_n"], out["all_mean"] = spread.n_templates, spread.mean
    out["all_min"], out["all_max"] = spread.min, spread.max
    have_both = out["observed_n"] > 0 and out["unobserved_n"] > 0
    keep = np.isin(groups, ("observed", "unobserved"))
    out.update(gap=None, drop_rate=None)
    if have_both:
        gap = metrics.observed_gap(scores[keep], groups[keep] == "observed")
        out["gap"], out["drop_rate"] = gap.gap, _nan(gap.drop_rate)
    # Micro-F1 beside the metric (RE; the official SemEval score's companion).
    micro = np.array([np.nan if r.micro_f1 is None else r.micro_f1 for r in per])
    for g in ("observed", "unobserved"):
        s = micro[groups == g]
        out[f"micro_f1_{g}_mean"] = _nan(float(s.mean())) if s.size else None
    out["micro_f1_gap"] = None
    if have_both and out["micro_f1_observed_mean"] is not None:
        out["micro_f1_gap"] = out["micro_f1_observed_mean"] - out["micro_f1_unobserved_mean"]
    out.update(truncated_share=None, protected_cut_share=None, n_untruncated=None)
    out["gap_untruncated"] = None
    out.update(gap_ci_low=None, gap_ci_high=None, paired_p=None)
    # Example-level statistics need every template on the same examples.
    aligned = all(o.example_ids == outs[0].example_ids for o in outs)
    out["aligned"] = aligned
    if not aligned:
        return out
    labels = np.stack([o.predicted for o in outs])
    out["consistency"] = metrics.prediction_consistency(labels)
    out["fleiss_kappa"] = _nan(metrics.fleiss_kappa(labels)) if len(outs) > 1 else None
    out.update(scoring.truncation_summary(outs, groups))
    if have_both:
        obs = groups[keep] == "observed"
        kept = [o for o, k in zip(outs, keep, strict=True) if k]
        boot = {"observed": obs, "n_resamples": n_resamples, "seed": seed}
        values, statistic = scoring.bootstrap_values(kept)
        ci = stats.bootstrap(values, statistic=statistic, **boot)
        if per[0].metric == "accuracy":
            out["paired_p"] = stats.paired_permutation_test(values, obs, seed=seed).p_value
        out["gap_ci_low"], out["gap_ci_high"] = ci["gap"].low, ci["gap"].high
    return out


def _observed_split(per: list[TemplateRow], seen: list[bool]) -> dict | None:
    """The observed templates split into "observed wording and data set" (the model
    was tuned on this data set with this text, `scoring.observed_dataset`) and
    "observed wording" only; None when no template is of the first kind."""
    if not any(seen):
        return None
    out = {}
    for key, keep in (("wording_and_dataset", True), ("wording_only", False)):
        s = [r.score for r, k in zip(per, seen, strict=True) if r.group == "observed" and k == keep]
        out[f"{key}_n"] = len(s)
        out[f"{key}_mean"] = float(np.mean(s)) if s else None
    return out


# Summary entries that are dicts: in summary.json and summary.md, not in summary.csv.
_NESTED = ("representation", "observed_split", "alignment", "observed_incorrect", "variants")
_NESTED += ("estimated",)  # A sampled design's estimates: summary.md / .json.
# A record file's `record_pooled` setting -> the representation its states are.
STATES = {True: "encoder_mean", "decoder_first": "decoder_first_step"}
# Roles of a training run's templates (`training.data.TemplateSplit`).
SPLIT_ROLES = ("original", "paraphrase", "held_out")


def template_split_of(spec: dict) -> epath.Path | None:
    """The training run's ``template_split.json`` beside a model's soft prompt
    (``<workdir>/prompt.npy``) or fine-tuned checkpoint (``<workdir>/hf_model``)."""
    for key in ("soft_prompt", "checkpoint"):
        if spec.get(key):
            path = epath.Path(spec[key]).parent / "template_split.json"
            if path.exists():
                return path
    return None


def read_template_split(path: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """(benchmark, template id -> 'original' / 'paraphrase' / 'held_out') of a
    training run's ``template_split.json``.

    Raises:
      ValueError: a file without the task or the three roles (named).
    """
    path = epath.Path(path)
    split = json.loads(path.read_text())
    missing = [k for k in ("task", *SPLIT_ROLES) if k not in split]
    if missing:
        raise ValueError(f"{path}: not a template split; missing {missing}")
    parts = split["task"].split(":")
    if len(parts) < 3:
        raise ValueError(f"{path}: task {split['task']!r} is not jr:<dataset>:<format>")
    roles = {t: role for role in SPLIT_ROLES for t in split[role]}
    return scoring.benchmark_of(parts[1], parts[2]), roles


def _alignment(rows: list[TemplateRow], roles: dict[str, str]) -> dict:
    """Mean score of the training run's originals, paraphrases (trained on by the
    alignment) and held-out templates (never trained on), kept apart."""
    out = {}
    for role in SPLIT_ROLES:
        s = [r.score for r in rows if roles.get(r.template_id) == role]
        out[f"{role}_n"], out[f"{role}_mean"] = len(s), float(np.mean(s)) if s else None
    return out


def _drift(
    rows: list[TemplateRow],
    pooled: np.ndarray,
    path: epath.Path,
    roles: dict[str, str] | None = None,
    state: str = "encoder_mean",
) -> dict | None:
    """Representation drift of the observed and unobserved templates, plotted; None
    without both groups. With a training run's `roles`, its paraphrases and held-out
    templates are told apart, and the held-out ones get correlations of their own."""
    groups = np.array([r.group for r in rows])
    keep = np.isin(groups, ("observed", "unobserved"))
    if not (groups[keep] == "observed").any() or not (groups[keep] == "unobserved").any():
        return None
    scores = np.array([r.score for r in rows])
    drift = metrics.representation_drift(pooled[keep], scores[keep], groups[keep] == "observed")
    shown = groups.copy()
    for i, r in enumerate(rows):
        if roles and r.group == "unobserved" and roles.get(r.template_id) in SPLIT_ROLES[1:]:
            shown[i] = roles[r.template_id]
    title = f"{rows[0].model} — {rows[0].benchmark} ({state})"
    plots.representation(title, shown[keep], drift, path)
    r, p = drift.pearson["cosine"]
    out = {
        "state": state,
        "pearson_cosine": [_nan(r), _nan(p)],
        "spearman_cosine": [_nan(v) for v in drift.spearman["cosine"]],
    }
    held = (shown == "observed") | (shown == "held_out")
    if roles and (shown == "held_out").any():
        d = metrics.representation_drift(pooled[held], scores[held], shown[held] == "observed")
        out["held_out_pearson_cosine"] = [_nan(v) for v in d.pearson["cosine"]]
    return out


# ---------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------


def _pct(x, std=None) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _md(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"


def summary_markdown(
    summaries: list[dict], model_order: list[str], rankings: list[dict] = ()
) -> str:
    """The papers' table (per benchmark observed, unobserved and gap with its CI), the
    spread over templates and, when several models ran a benchmark, their rankings."""
    benches = sorted({s["benchmark"] for s in summaries})
    index = {(s["model"], s["benchmark"]): s for s in summaries}
    header = ["model"]
    for b in benches:
        header += [f"{b} observed", f"{b} unobserved", f"{b} gap [95% CI]"]
    body = []
    for m in model_order:
        row = [m]
        for b in benches:
            s = index.get((m, b))
            if s is None:
                row += ["–"] * 3
                continue
            gap = _pct(s["gap"])
            if s["gap_ci_low"] is not None:
                gap += f" [{100 * s['gap_ci_low']:.1f}, {100 * s['gap_ci_high']:.1f}]"
            row += [
                _pct(s["observed_mean"], s["observed_std"]),
                _pct(s["unobserved_mean"], s["unobserved_std"]),
                gap,
            ]
        body.append(row)
    metric_of = {s["benchmark"]: s["metric"] for s in summaries}
    notes = "; ".join(
        f"{', '.join(b for b in benches if metric_of[b] == m)}: {scoring.METRICS.get(m, m)}"
        for m in dict.fromkeys(metric_of[b] for b in benches)
    )
    text = (
        "# Robustness to instruction wording\n\n"
        "Mean ± std (ddof=1) over templates, in percent; gap = observed - unobserved, "
        "with a two-level (examples x templates) bootstrap 95% CI.\n"
        f"Metrics: {notes}.\n\n" + _md(header, body)
    )
    text += _observed_split_markdown(summaries, model_order) + _alignment_markdown(summaries)
    text += _incorrect_markdown(summaries) + _variants_markdown(summaries)
    text += _estimated_markdown(summaries)
    text += _spread_markdown(summaries, model_order) + _rankings_markdown(rankings)
    return text + _truncation_markdown(summaries, model_order)


def _per_dataset_markdown(per_dataset: list[dict], model_order: list[str]) -> str:
    """Observed, unobserved and gap per data set of the several-data-set benchmarks."""
    if not per_dataset:
        return ""
    rank = {m: i for i, m in enumerate(model_order)}
    body = []
    for s in sorted(per_dataset, key=lambda s: (s["parent"], s["dataset"], rank[s["model"]])):
        gap = _pct(s["gap"])
        if s["gap_ci_low"] is not None:
            gap += f" [{100 * s['gap_ci_low']:.1f}, {100 * s['gap_ci_high']:.1f}]"
        body.append(
            [
                s["model"],
                s["parent"],
                s["dataset"],
                _pct(s["observed_mean"], s["observed_std"]),
                _pct(s["unobserved_mean"], s["unobserved_std"]),
                gap,
            ]
        )
    header = ["model", "benchmark", "data set", "observed", "unobserved", "gap [95% CI]"]
    return (
        "\n## Per data set\n\n"
        "Each data set of a benchmark of several (a BIG-bench Lite task, an MMLU subject) "
        "on its own: mean ± std over templates in percent, gap with its two-level "
        "bootstrap 95% CI.\n\n" + _md(header, body)
    )


def _incorrect(rows: list[TemplateRow], collections) -> dict | None:
    """Observed but incorrect instructions (provenance ``incorrect:<c>:<origin>``: a
    collection's instruction for another task): their mean, and how many of them the
    model was tuned on (`tuning.classify` of the same text as ``observed:``)."""
    sel = [r for r in rows if r.provenance.startswith("incorrect:")]
    if not sel:
        return None
    seen = [
        r
        for r in sel
        if scoring.group_for_model("observed:" + r.provenance.split(":", 1)[1], collections)
        == "observed"
    ]
    return {
        "n": len(sel),
        "mean": float(np.mean([r.score for r in sel])),
        "tuned_on_n": len(seen),
        "tuned_on_mean": float(np.mean([r.score for r in seen])) if seen else None,
    }


def _spread(scores: list[float]) -> dict:
    s = np.array(scores)
    std = float(s.std(ddof=1)) if s.size > 1 else None
    return {"n": int(s.size), "min": float(s.min()), "max": float(s.max()), "std": std}


def _variants(rows: list[TemplateRow]) -> dict | None:
    """Format variants (group ``variants``, kept out of the observed / unobserved means
    and the gap): per parent description the spread (n, min, max, std with ddof=1) of
    its variants' scores, beside the spread across the other templates (wordings)."""
    sel = [r for r in rows if r.parent]
    if not sel:
        return None
    wordings = [r.score for r in rows if not r.parent]
    parents = sorted({r.parent for r in sel})
    return {
        "wordings": _spread(wordings) if wordings else None,
        "parents": {p: _spread([r.score for r in sel if r.parent == p]) for p in parents},
    }


def _variants_markdown(summaries: list[dict]) -> str:
    rows = [s for s in summaries if s.get("variants")]
    if not rows:
        return ""

    def cells(d):
        if d is None:
            return ["–"] * 4
        return [str(d["n"]), _pct(d["min"]), _pct(d["max"]), _pct(d["std"])]

    body = []
    for s in rows:
        v = s["variants"]
        body.append([s["model"], s["benchmark"], "wordings (not variants)", *cells(v["wordings"])])
        for p, d in v["parents"].items():
            body.append([s["model"], s["benchmark"], f"variants of {p}", *cells(d)])
    return (
        "\n## Format variants\n\n"
        "Format variants (`jaxrobust.data.formats`; group `variants`, counted in neither "
        "the observed nor the unobserved mean nor the gap): per parent description, the "
        "spread of its variants' scores (the description as written included), beside the "
        "spread across the other templates; in percent, std with ddof=1.\n\n"
        + _md(["model", "benchmark", "templates", "n", "min", "max", "std"], body)
    )


def _incorrect_markdown(summaries: list[dict]) -> str:
    rows = [s for s in summaries if s.get("observed_incorrect")]
    if not rows:
        return ""
    body = [
        [
            s["model"],
            s["benchmark"],
            _pct(s["observed_mean"]),
            f"{_pct(s['observed_incorrect']['tuned_on_mean'])} "
            f"({s['observed_incorrect']['tuned_on_n']})",
            _pct(s["unobserved_mean"]),
        ]
        for s in rows
    ]
    return (
        "\n## Observed but incorrect instructions\n\n"
        "Instructions the model was tuned on for another task (sentiment, topic, ...), "
        "applied to this benchmark: mean over templates in percent (number of templates), "
        "beside the observed and unobserved means; counted in neither.\n\n"
        + _md(["model", "benchmark", "observed", "observed, another task", "unobserved"], body)
    )


def _alignment_markdown(summaries: list[dict]) -> str:
    """Models evaluated after a training run: its templates by role, apart."""
    rows = [s for s in summaries if s.get("alignment")]
    if not rows:
        return ""
    body = []
    for s in rows:
        a = s["alignment"]
        body.append(
            [s["model"], s["benchmark"]]
            + [f"{_pct(a[f'{role}_mean'])} ({a[f'{role}_n']})" for role in SPLIT_ROLES]
        )
    return (
        "\n## Held-out templates and alignment paraphrases\n\n"
        "From the training run's template_split.json: originals and paraphrases were "
        "trained on (the paraphrases by the alignment loss), held-out templates never. "
        "Mean over templates in percent (number of templates).\n\n"
        + _md(["model", "benchmark", "originals", "paraphrases", "held out"], body)
    )


def _observed_split_markdown(summaries: list[dict], model_order: list[str]) -> str:
    """Where a model was tuned on a benchmark's own data with some observed
    templates: those apart from the observed wording seen on other data sets."""
    rank = {m: i for i, m in enumerate(model_order)}
    split = [s for s in summaries if s.get("observed_split")]
    if not split:
        return ""
    body = []
    for s in sorted(split, key=lambda s: (s["benchmark"], rank[s["model"]])):
        o = s["observed_split"]
        body.append(
            [
                s["model"],
                s["benchmark"],
                f"{_pct(o['wording_and_dataset_mean'])} ({o['wording_and_dataset_n']})",
                f"{_pct(o['wording_only_mean'])} ({o['wording_only_n']})",
                f"{_pct(s['unobserved_mean'])} ({s['unobserved_n']})",
            ]
        )
    header = ["model", "benchmark", "observed wording and data set", "observed wording only"]
    return (
        "\n## Observed wording and data set\n\n"
        "The observed column above counts every template whose text the model was tuned "
        "on; here those it was tuned on with this very data set are apart from those it saw "
        "only on other data sets. Mean over templates in percent (number of templates).\n\n"
        + _md(header + ["unobserved"], body)
    )


def _spread_markdown(summaries: list[dict], model_order: list[str]) -> str:
    rank = {m: i for i, m in enumerate(model_order)}
    body = []
    for s in sorted(summaries, key=lambda s: (s["benchmark"], rank[s["model"]])):
        kappa = s.get("fleiss_kappa")
        body.append(
            [
                s["model"],
                s["benchmark"],
                str(s["all_n"]),
                _pct(s["all_min"]),
                _pct(s["all_max"]),
                _pct(s["drop_rate"]),
                _pct(s.get("consistency")),
                "–" if kappa is None else f"{kappa:.2f}",
            ]
        )
    header = ["model", "benchmark", "templates", "min", "max", "drop rate"]
    return (
        "\n## Spread over templates\n\n"
        "Min and max over all templates (observed, unobserved and other), in percent; "
        "drop rate = gap / observed mean (PromptBench's performance drop rate); "
        "consistency = share of examples on which every template gives the same answer; "
        "Fleiss' kappa of the templates' answers.\n\n"
        + _md(header + ["consistency", "Fleiss' kappa"], body)
    )


def _truncation_markdown(summaries: list[dict], model_order: list[str]) -> str:
    """Where inputs were shortened to fit: how many, and the gap without them."""
    rank = {m: i for i, m in enumerate(model_order)}
    hit = [s for s in summaries if s.get("truncated_share")]
    if not hit:
        return ""
    body = [
        [
            s["model"],
            s["benchmark"],
            _pct(s["truncated_share"]),
            _pct(s["protected_cut_share"]),
            _pct(s["gap"]),
            _pct(s["gap_untruncated"]),
            str(s["n_untruncated"]),
        ]
        for s in sorted(hit, key=lambda s: (s["benchmark"], rank[s["model"]]))
    ]
    header = ["model", "benchmark", "truncated (%)", "protected cut (%)", "gap"]
    return (
        "\n## Truncated inputs\n\n"
        "Examples whose input some template had to shorten to fit the model (only the "
        "passage or sentence is shortened; 'protected cut': even so the instruction, "
        "options or cue did not fit and were cut), in percent of the examples; the gap "
        "over all examples and over those no template shortened.\n\n"
        + _md(header + ["gap, untruncated examples", "untruncated examples"], body)
    )


def _rankings_markdown(rankings: list[dict]) -> str:
    if not rankings:
        return ""
    body = [
        [
            r["benchmark"],
            ", ".join(r["models"]),
            str(r["n_templates"]),
            "–" if r["mean_kendall_tau"] is None else f"{r['mean_kendall_tau']:.2f}",
        ]
        for r in rankings
    ]
    return (
        "\n## Model rankings across templates\n\n"
        "Kendall's tau-b between two templates' rankings of the models, mean over "
        "template pairs (1: every template ranks the models alike; – when undefined).\n\n"
        + _md(["benchmark", "models", "templates", "mean Kendall's tau"], body)
    )


_ESTIMATED = tuple(f.name for f in dataclasses.fields(TemplateRow) if f.name[:3] in ("est", "des"))


def _design_label(share: float, cells: int, seed: int) -> str:
    return f"estimated from {100 * share:.1f}% of cells ({cells} cells), seed {seed}"


def _estimated_markdown(summaries: list[dict]) -> str:
    rows = [s for s in summaries if s.get("estimated")]
    if not rows:
        return ""
    body = []
    for s in rows:
        e = s["estimated"]
        label = _design_label(e["share"], e["cells"], e["seed"])
        for k in ("mean", "p5", "p25", "p50", "p75", "p95", "spread"):
            low, high = e["interval"][k]
            body.append(
                [
                    s["model"],
                    s["benchmark"],
                    label,
                    k,
                    f"{_pct(e[k])} [{100 * low:.1f}, {100 * high:.1f}]",
                    _pct(e["observed_cells"][k]),
                ]
            )
    return (
        "\n## Estimated from a sampled design\n\n"
        "These records score a sampled share of the template x example grid "
        "(`EvalOptions.design_budget`). Accuracy over templates (mean, percentiles, spread "
        "= p95 - p5) is **estimated** by `jaxrobust.analysis.prompteval` (a logistic model "
        "of template and example effects predicts the cells left out), with 90% intervals; "
        "beside it the same statistics of each template's plain mean over its observed "
        "cells. The tables above score observed cells only.\n\n"
        + _md(
            [
                "model",
                "benchmark",
                "design",
                "statistic",
                "estimated accuracy (%) [90% interval]",
                "observed cells' mean (%)",
            ],
            body,
        )
    )


def templates_markdown(rows: list[TemplateRow]) -> str:
    """One line per (model, benchmark, template); a sampled design's rows add the
    estimated accuracy over every example, its 90% interval and the design."""
    header = ["model", "benchmark", "template", "provenance", "group", "score (%)", "n"]
    body = [
        [
            r.model,
            r.benchmark,
            r.template_id,
            r.provenance,
            r.group,
            _pct(r.score),
            str(r.n_examples),
            _pct(r.truncated),
            _pct(r.protected_cut),
        ]
        for r in rows
    ]
    header += ["truncated (%)", "protected cut (%)"]
    if any(r.estimated is not None for r in rows):
        header += ["estimated accuracy (%) [90% interval]", "design"]
        for line, r in zip(body, rows, strict=True):
            if r.estimated is None:
                line += ["–", "full grid"]
                continue
            est = f"{_pct(r.estimated)} [{100 * r.estimated_low:.1f}, {100 * r.estimated_high:.1f}]"
            line += [est, _design_label(r.design_share, r.design_cells, r.design_seed)]
    return _md(header, body)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------


def write_report(
    output_dir: str | os.PathLike,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    template_split: str | os.PathLike | None = None,
) -> epath.Path:
    """Writes tables and plots under `<output_dir>/report/` (local or `gs://`); returns
    that folder. Every file is written whole (temp file, then rename).

    Args:
      template_split: a training run's ``template_split.json`` for every model
        (default: each model's own, beside its soft prompt or fine-tuned
        checkpoint, `template_split_of`); its paraphrases and held-out templates
        are reported apart.
    """
    models, files = scoring.load(output_dir)
    result = analyse(models, files, n_resamples=n_resamples, seed=seed)
    states = {
        (
            f.header["config"]["model"],
            scoring.benchmark_of(f.header["dataset"], f.header["format"]),
        ): STATES.get(f.header["config"].get("record_pooled"), "encoder_mean")
        for f in files
    }
    splits = {}
    for m in models:
        path = template_split or template_split_of(models[m])
        if path is not None:
            splits[m] = (str(path), *read_template_split(path))
    rows, summaries = result.rows, result.summaries
    order = sorted(
        {r.model for r in rows},
        key=lambda m: (
            models.get(m, {}).get("series", ""),
            models.get(m, {}).get("params_b", 0.0),
            m,
        ),
    )
    out = epath.Path(output_dir) / "report"
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for key in sorted({(r.model, r.benchmark) for r in rows}):
        sel = [r for r in rows if (r.model, r.benchmark) == key]
        name = f"{plots.safe_name(key[0])}__{plots.safe_name(key[1])}.png"
        plots.templates(sel, plot_dir / f"templates__{name}")
        incorrect = _incorrect(sel, models.get(key[0], {}).get("observed_collections", ("*",)))
        variants = _variants(sel)
        if variants:
            for s in summaries:
                if (s["model"], s["benchmark"]) == key:
                    s["variants"] = variants
        if incorrect:
            for s in summaries:
                if (s["model"], s["benchmark"]) == key:
                    s["observed_incorrect"] = incorrect
        split = splits.get(key[0])
        roles = split[2] if split and split[1] == key[1].removesuffix(f" {POOLED}") else None
        if roles:
            for s in summaries:
                if (s["model"], s["benchmark"]) == key:
                    s["alignment"] = {"template_split": split[0], **_alignment(sel, roles)}
        if key in result.pooled:
            state = states.get(key, "encoder_mean")
            prefix = "repr" if state == "encoder_mean" else f"repr_{state}"
            corr = _drift(sel, result.pooled[key], plot_dir / f"{prefix}__{name}", roles, state)
            for s in summaries:
                if (s["model"], s["benchmark"]) == key:
                    s["representation"] = corr
    series: dict[str, list[tuple[float, dict]]] = {}
    for s in summaries:
        spec = models.get(s["model"], {})
        if spec.get("series") and spec.get("params_b"):
            series.setdefault(spec["series"], []).append((spec["params_b"], s))
    for name, pts in series.items():
        if len({size for size, _ in pts}) >= 2:
            plots.sizes(name, pts, plot_dir / f"size__{plots.safe_name(name)}.png")
    flat = [{k: v for k, v in s.items() if k not in _NESTED} for s in summaries]
    trows = [dataclasses.asdict(r) for r in rows]
    if not any(r.parent for r in rows):  # the parent column only where format variants ran
        trows = [{k: v for k, v in r.items() if k != "parent"} for r in trows]
    if not any(r.estimated is not None for r in rows):  # estimates only for sampled designs
        trows = [{k: v for k, v in r.items() if k not in _ESTIMATED} for r in trows]
    tables = {
        "summary.md": summary_markdown(summaries, order, result.rankings)
        + _per_dataset_markdown(result.per_dataset, order),
        "summary.csv": _csv(flat),
        "summary.json": json.dumps(
            {
                "models": models,
                "summary": summaries,
                "rankings": result.rankings,
                "templates": trows,
                # Only where a benchmark has several data sets.
                **({"per_dataset": result.per_dataset} if result.per_dataset else {}),
            },
            indent=2,
        )
        + "\n",
        "templates.csv": _csv(trows),
        "templates.md": templates_markdown(rows),
    }
    for name, text in tables.items():
        write_atomic(out / name, text)
    return out
