"""Tables and plots from an evaluation output directory alone.

`write_report(output_dir)` reads every record file under
``<output_dir>/records/<model>/`` (each verified; a corrupt or truncated one
raises `records.RecordsError` naming it: re-run the evaluation, which
recomputes it) and the models' ``model.json``, and writes under
``<output_dir>/report/``:

* ``summary.md`` / ``summary.csv`` / ``summary.json``: the papers' table. Rows
  are models; per benchmark: observed templates' mean +- std, unobserved
  templates' mean +- std, the gap (observed - unobserved) with its two-level
  bootstrap 95% CI (examples and templates resampled, seeded), the paired
  permutation test's p (accuracy benchmarks), prediction consistency and
  Fleiss' kappa across all templates. Scores are percentages in Markdown,
  fractions in CSV/JSON.
* ``templates.md`` / ``templates.csv``: one row per (model, benchmark,
  template): score, provenance, group, examples, share of truncated inputs.
* ``plots/templates__<model>__<benchmark>.png``: each template's score,
  coloured by group, with the group means; ``plots/size__<series>.png`` when
  several sizes of one series were run; ``plots/repr__<model>__<benchmark>.png``
  when pooled encoder states were recorded (`EvalOptions.record_pooled`):
  each template's distance from the observed centroid against its drop.

Definitions:
* Benchmark: the data set and answer format (``semeval/re``, ``boolq/qa``);
  all ``mmlu_*`` subjects form ``mmlu/qa`` and ``bbl_*`` tasks
  ``bigbench_lite/qa``, scored per template as the macro mean over their data
  sets (the bootstrap and tests pool their examples).
* Metric: accuracy for ``qa``; for ``re`` and ``mcqa``, micro-F1 over the
  positive relations with unmatched answers counted as false positives
  (`metrics.re_micro_f1`), using each record's negative label.
* Group: ``observed`` when the template's provenance is
  ``observed:<collection>`` and the model's `observed_collections` include
  the collection (``"*"``: any; ``()``: none, for models not instruction
  tuned); ``unobserved``; else ``other`` (style:*, default, another
  collection's text), shown per template only.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from jaxrobust.analysis import metrics
from jaxrobust.storage import records
from jaxrobust.storage.files import write_atomic

GROUPS = ("observed", "unobserved", "other")
COLORS = {"observed": "tab:blue", "unobserved": "tab:orange", "other": "tab:gray"}


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------


def benchmark_of(dataset: str, fmt: str) -> str:
    if dataset.startswith("mmlu"):
        dataset = "mmlu"
    elif dataset.startswith("bbl_"):
        dataset = "bigbench_lite"
    return f"{dataset}/{fmt}"


def load(output_dir: str | os.PathLike) -> tuple[dict[str, dict], list[records.RecordFile]]:
    """(model name -> ModelSpec dict, every verified record file); `gs://` paths work."""
    root = epath.Path(output_dir) / records.RECORDS_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no records; run `python -m jaxrobust.main eval` first")
    models, files = {}, []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        spec = model_dir / "model.json"
        models[model_dir.name] = json.loads(spec.read_text()) if spec.exists() else {}
        files += [records.read_records(p) for p in sorted(model_dir.glob("*.jsonl"))]
    if not files:
        raise FileNotFoundError(f"{root}: no complete record files")
    return models, files


def group_of(provenance: str, observed_collections: Sequence[str]) -> str:
    kind, _, collection = provenance.partition(":")
    if kind == "observed" and ("*" in observed_collections or collection in observed_collections):
        return "observed"
    return "unobserved" if provenance == "unobserved" else "other"


# ---------------------------------------------------------------------------
# Per-example outcomes and scores.
# ---------------------------------------------------------------------------


def outcomes(file: records.RecordFile) -> dict[str, np.ndarray]:
    """Per-example counts `[N]`: 'correct', and 'tp', 'fp', 'fn' for relation F1."""
    rows = file.records
    pred = [r["predicted_label"] for r in rows]
    gold = [r["gold_label"] for r in rows]
    neg = [r["negative_label"] or None for r in rows]
    positive = [g != n for g, n in zip(gold, neg, strict=True)]
    tp = [p == g and pos for p, g, pos in zip(pred, gold, positive, strict=True)]
    fn = [pos and p != g for p, g, pos in zip(pred, gold, positive, strict=True)]
    fp = [p != g and p != n for p, g, n in zip(pred, gold, neg, strict=True)]
    return {
        "correct": np.array([r["correct"] for r in rows], np.float64),
        "tp": np.array(tp, np.float64),
        "fp": np.array(fp, np.float64),
        "fn": np.array(fn, np.float64),
    }


def file_score(file: records.RecordFile) -> tuple[str, float]:
    """(metric name, score) of one record file."""
    o = outcomes(file)
    if file.header["format"] == "qa":
        return "accuracy", float(o["correct"].mean())
    tp, fp, fn = o["tp"].sum(), o["fp"].sum(), o["fn"].sum()
    return "micro_f1", float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def f1_bootstrap(
    tp: np.ndarray,
    fp: np.ndarray,
    fn: np.ndarray,
    observed: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, metrics.BootstrapCI]:
    """`metrics.two_level_bootstrap` for micro-F1 instead of a mean of 0/1 values.

    The same draws in the same order (examples `[B, N]` first, then templates
    within the observed and the unobserved group), with each drawn template's
    micro-F1 recomputed from its drawn examples' TP/FP/FN counts `[K, N]`. When
    every example has a positive gold label and predictions are never
    negative or invalid, F1 equals accuracy and so do the intervals.
    """
    k, n = tp.shape
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (n_resamples, n))
    f1 = np.empty((n_resamples, k))
    for start, counts in metrics.draw_counts(draws, n):
        t, p, f = counts @ tp.T, counts @ fp.T, counts @ fn.T
        with np.errstate(invalid="ignore", divide="ignore"):
            f1[start : start + len(counts)] = np.where(t > 0, 2 * t / (2 * t + p + f), 0.0)
    point = np.array([_f1(tp[i], fp[i], fn[i]) for i in range(k)])
    groups = {"observed": np.flatnonzero(observed), "unobserved": np.flatnonzero(~observed)}
    drawn = {}
    for name, cols in groups.items():
        picks = rng.integers(0, cols.size, (n_resamples, cols.size))
        drawn[name] = np.take_along_axis(f1[:, cols], picks, axis=1)
    dists = {name: d.mean(axis=1) for name, d in drawn.items()}
    points = {name: float(point[cols].mean()) for name, cols in groups.items()}
    dists["mean"] = np.concatenate(list(drawn.values()), axis=1).mean(axis=1)
    points["mean"] = float(point.mean())
    dists["gap"] = dists["observed"] - dists["unobserved"]
    points["gap"] = points["observed"] - points["unobserved"]
    alpha = (1 - confidence_level) / 2
    return {
        name: metrics.BootstrapCI(
            points[name], *map(float, np.quantile(dist, [alpha, 1 - alpha])), dist
        )
        for name, dist in dists.items()
    }


def _f1(tp, fp, fn) -> float:
    t, p, f = tp.sum(), fp.sum(), fn.sum()
    return float(2 * t / (2 * t + p + f)) if t else 0.0


# ---------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TemplateRow:
    model: str
    benchmark: str
    template_id: str
    provenance: str
    group: str  # observed / unobserved / other for this model.
    metric: str  # accuracy or micro_f1.
    score: float  # Macro mean over the benchmark's data sets.
    n_examples: int
    truncated: float  # Share of inputs truncated to fit.


def _nan(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def analyse(
    models: dict[str, dict], files: list[records.RecordFile], *, n_resamples=1000, seed=0
) -> tuple[list[TemplateRow], list[dict], dict]:
    """(per-template rows, per-(model, benchmark) summary dicts, pooled states by key)."""
    by_key: dict[tuple[str, str], dict[str, list[records.RecordFile]]] = {}
    for f in files:
        model = f.header["config"]["model"]
        bench = benchmark_of(f.header["dataset"], f.header["format"])
        by_key.setdefault((model, bench), {}).setdefault(f.header["template_id"], []).append(f)
    rows, summaries, pooled = [], [], {}
    for (model, bench), by_template in sorted(by_key.items()):
        collections = models.get(model, {}).get("observed_collections", ("*",))
        tids = sorted(by_template)
        per = []
        for tid in tids:
            fs = sorted(by_template[tid], key=lambda f: f.header["dataset"])
            scored = [file_score(f) for f in fs]
            n = sum(len(f.records) for f in fs)
            trunc = sum(r["truncated"] for f in fs for r in f.records) / n
            prov = fs[0].header["provenance"]
            per.append(
                TemplateRow(
                    model,
                    bench,
                    tid,
                    prov,
                    group_of(prov, collections),
                    scored[0][0],
                    float(np.mean([s for _, s in scored])),
                    n,
                    trunc,
                )
            )
        rows += per
        summaries.append(_summary(model, bench, per, by_template, tids, n_resamples, seed))
        if all(f.pooled_sum is not None for t in tids for f in by_template[t]):
            pooled[(model, bench)] = np.stack(
                [
                    sum(f.pooled_sum for f in by_template[t])
                    / sum(len(f.records) for f in by_template[t])
                    for t in tids
                ]
            )
    return rows, summaries, pooled


def _summary(model, bench, per, by_template, tids, n_resamples, seed) -> dict:
    scores = np.array([r.score for r in per])
    groups = np.array([r.group for r in per])
    out: dict = {"model": model, "benchmark": bench, "metric": per[0].metric}
    for g in ("observed", "unobserved"):
        s = scores[groups == g]
        out[f"{g}_n"] = int(s.size)
        out[f"{g}_mean"] = float(s.mean()) if s.size else None
        out[f"{g}_std"] = _nan(float(np.std(s, ddof=1))) if s.size > 1 else None
    out["all_mean"] = float(scores.mean())
    have_both = out["observed_n"] > 0 and out["unobserved_n"] > 0
    out["gap"] = out["observed_mean"] - out["unobserved_mean"] if have_both else None
    out.update(gap_ci_low=None, gap_ci_high=None, paired_p=None)
    # Example-level statistics need every template on the same examples.
    ids = [
        [
            (f.header["dataset"], r["example_id"])
            for f in sorted(by_template[t], key=lambda f: f.header["dataset"])
            for r in f.records
        ]
        for t in tids
    ]
    aligned = all(i == ids[0] for i in ids)
    out["aligned"] = aligned
    if not aligned:
        return out
    outs = [
        {
            k: np.concatenate(
                [outcomes(f)[k] for f in sorted(by_template[t], key=lambda f: f.header["dataset"])]
            )
            for k in ("correct", "tp", "fp", "fn")
        }
        for t in tids
    ]
    labels = np.array(
        [
            [
                r["predicted_label"]
                for f in sorted(by_template[t], key=lambda f: f.header["dataset"])
                for r in f.records
            ]
            for t in tids
        ],
        dtype=object,
    )
    out["consistency"] = metrics.prediction_consistency(labels)
    out["fleiss_kappa"] = _nan(metrics.fleiss_kappa(labels)) if len(tids) > 1 else None
    keep = np.isin(groups, ("observed", "unobserved"))
    if have_both:
        obs = groups[keep] == "observed"
        stack = {
            k: np.stack([o[k] for o, m in zip(outs, keep, strict=True) if m])
            for k in ("correct", "tp", "fp", "fn")
        }
        if per[0].metric == "accuracy":
            ci = metrics.two_level_bootstrap(
                stack["correct"], observed=obs, n_resamples=n_resamples, seed=seed
            )
            out["paired_p"] = metrics.paired_permutation_test(
                stack["correct"], obs, seed=seed
            ).p_value
        else:
            ci = f1_bootstrap(
                stack["tp"], stack["fp"], stack["fn"], obs, n_resamples=n_resamples, seed=seed
            )
        out["gap_ci_low"], out["gap_ci_high"] = ci["gap"].low, ci["gap"].high
    return out


def _pct(x, std=None) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _md(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"


def summary_markdown(summaries: list[dict], model_order: list[str]) -> str:
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
    notes = ", ".join(f"{b}: {metric_of[b]}" for b in benches)
    return (
        "# Robustness to instruction wording\n\n"
        "Mean ± std (ddof=1) over templates, in percent; gap = observed - unobserved, "
        "with a two-level (examples x templates) bootstrap 95% CI.\n"
        f"Metrics: {notes}.\n\n" + _md(header, body)
    )


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Plots.
# ---------------------------------------------------------------------------


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


def _plot_templates(rows: list[TemplateRow], path: epath.Path, plt) -> None:
    rows = sorted(rows, key=lambda r: (GROUPS.index(r.group), r.template_id))
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(rows) + 2), 3.5))
    x = np.arange(len(rows))
    ax.bar(x, [100 * r.score for r in rows], color=[COLORS[r.group] for r in rows])
    for g in GROUPS:
        s = [100 * r.score for r in rows if r.group == g]
        if s:
            ax.axhline(np.mean(s), color=COLORS[g], ls="--", lw=1, label=f"{g} mean ({len(s)})")
    ax.set_xticks(x, [r.template_id for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"{rows[0].metric} (%)")
    ax.set_title(f"{rows[0].model} — {rows[0].benchmark}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, plt)


def _plot_sizes(series: str, points: list[tuple[float, dict]], path, plt) -> None:
    benches = sorted({s["benchmark"] for _, s in points})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for b in benches:
        pts = sorted((size, s) for size, s in points if s["benchmark"] == b)
        for g, ls in (("observed", "-"), ("unobserved", "--")):
            xy = [(size, 100 * s[f"{g}_mean"]) for size, s in pts if s[f"{g}_mean"] is not None]
            if xy:
                ax.plot(*zip(*xy, strict=True), ls, marker="o", label=f"{b} {g}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (billions)")
    ax.set_ylabel("score (%)")
    ax.set_title(f"{series}: score by model size", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path, plt)


def _plot_repr(rows: list[TemplateRow], pooled: np.ndarray, path, plt) -> dict | None:
    groups = np.array([r.group for r in rows])
    keep = np.isin(groups, ("observed", "unobserved"))
    if not (groups[keep] == "observed").any() or not (groups[keep] == "unobserved").any():
        return None
    drift = metrics.representation_drift(
        pooled[keep],
        [r.score for r, k in zip(rows, keep, strict=True) if k],
        groups[keep] == "observed",
    )
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    kept = groups[keep]
    for g in ("observed", "unobserved"):
        m = kept == g
        ax.scatter(drift.cosine_distance[m], 100 * drift.drop[m], color=COLORS[g], label=g)
    r, p = drift.pearson["cosine"]
    ax.set_xlabel("cosine distance from observed centroid")
    ax.set_ylabel("drop from observed mean (points)")
    ax.set_title(f"{rows[0].model} — {rows[0].benchmark}: r = {r:.2f} (p = {p:.2g})", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, plt)
    return {
        "pearson_cosine": [_nan(r), _nan(p)],
        "spearman_cosine": [_nan(v) for v in drift.spearman["cosine"]],
    }


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------


def _save(fig, path: epath.Path, plt) -> None:
    """A PNG written whole (`write_atomic`; matplotlib cannot write to gs://)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def write_report(
    output_dir: str | os.PathLike, *, n_resamples: int = 1000, seed: int = 0
) -> epath.Path:
    """Writes tables and plots under `<output_dir>/report/` (local or `gs://`); returns
    that folder. Every file is written whole (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, files = load(output_dir)
    rows, summaries, pooled = analyse(models, files, n_resamples=n_resamples, seed=seed)
    order = sorted(
        {r.model for r in rows},
        key=lambda m: (
            models.get(m, {}).get("series", ""),
            models.get(m, {}).get("params_b", 0.0),
            m,
        ),
    )
    out = epath.Path(output_dir) / "report"
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for key in sorted({(r.model, r.benchmark) for r in rows}):
        sel = [r for r in rows if (r.model, r.benchmark) == key]
        _plot_templates(sel, plots / f"templates__{_safe(key[0])}__{_safe(key[1])}.png", plt)
        if key in pooled:
            corr = _plot_repr(
                sel, pooled[key], plots / f"repr__{_safe(key[0])}__{_safe(key[1])}.png", plt
            )
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
            _plot_sizes(name, pts, plots / f"size__{_safe(name)}.png", plt)
    flat = [{k: v for k, v in s.items() if k != "representation"} for s in summaries]
    write_atomic(out / "summary.md", summary_markdown(summaries, order))
    write_atomic(out / "summary.csv", _csv(flat))
    write_atomic(
        out / "summary.json",
        json.dumps(
            {
                "models": models,
                "summary": summaries,
                "templates": [dataclasses.asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n",
    )
    trows = [dataclasses.asdict(r) for r in rows]
    write_atomic(out / "templates.csv", _csv(trows))
    write_atomic(
        out / "templates.md",
        _md(
            [
                "model",
                "benchmark",
                "template",
                "provenance",
                "group",
                "score (%)",
                "n",
                "truncated (%)",
            ],
            [
                [
                    r.model,
                    r.benchmark,
                    r.template_id,
                    r.provenance,
                    r.group,
                    _pct(r.score),
                    str(r.n_examples),
                    _pct(r.truncated),
                ]
                for r in rows
            ],
        ),
    )
    return out
