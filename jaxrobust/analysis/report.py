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

import dataclasses
import json
import math
import os

import numpy as np
from etils import epath

from jaxrobust.analysis import metrics, plots, scoring, stats
from jaxrobust.analysis import report_tables as tables
from jaxrobust.analysis.report_tables import SPLIT_ROLES, summary_markdown, templates_markdown
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


_ESTIMATED = tuple(f.name for f in dataclasses.fields(TemplateRow) if f.name[:3] in ("est", "des"))


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
    texts = {
        "summary.md": summary_markdown(summaries, order, result.rankings)
        + tables._per_dataset_markdown(result.per_dataset, order),
        "summary.csv": tables._csv(flat),
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
        "templates.csv": tables._csv(trows),
        "templates.md": templates_markdown(rows),
    }
    for name, text in texts.items():
        write_atomic(out / name, text)
    return out
