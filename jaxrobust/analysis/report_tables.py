"""The report's Markdown and CSV: tables rendered from `report.analyse`'s summaries and rows.

`report.write_report` writes them; nothing here computes a statistic.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from jaxrobust.analysis import scoring

if TYPE_CHECKING:
    from jaxrobust.analysis.report import TemplateRow

# A training run's template roles (template_split.json), in table order.
SPLIT_ROLES = ("original", "paraphrase", "held_out")


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
