"""The report's figures: per-template scores, score by model size, representation drift.

Each function draws one figure from numbers the report has already computed
(`report.py`) and writes it as a PNG with `files.write_atomic` (whole or
not at all, local or `gs://`). matplotlib is imported on first use, with the
non-interactive Agg backend, so importing this module costs nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from etils import epath

from jaxrobust.analysis import metrics
from jaxrobust.analysis.scoring import GROUPS
from jaxrobust.storage import files

COLORS = {"observed": "tab:blue", "unobserved": "tab:orange", "other": "tab:gray"}
COLORS |= {"variants": "tab:purple"}
# A training run's unobserved templates, when the report knows its template split.
COLORS |= {"paraphrase": "tab:green", "held_out": "tab:red"}


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_name(name: str) -> str:
    """A file-name-safe form of a model or benchmark name."""
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


def save(fig, path: epath.Path) -> None:
    """A PNG written whole (`files.write_atomic`; matplotlib cannot write to gs://)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    files.write_atomic(path, buf.getvalue())


def templates(rows: Sequence, path: epath.Path) -> None:
    """Each template's score as a bar coloured by group, with the group means.

    Args:
      rows: `report.TemplateRow`s of one (model, benchmark).
    """
    plt = pyplot()
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
    save(fig, path)


def sizes(series: str, points: list[tuple[float, dict]], path: epath.Path) -> None:
    """Observed and unobserved means against model size (log scale), per benchmark.

    Args:
      points: (parameters in billions, the report's summary dict) of each model.
    """
    plt = pyplot()
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
    save(fig, path)


def representation(
    title: str, groups: np.ndarray, drift: metrics.RepresentationDrift, path: epath.Path
) -> None:
    """Each template's cosine distance from the observed centroid against its drop.

    Args:
      title: "<model> — <benchmark>".
      groups: [K] 'observed' / 'unobserved' (or a training run's 'paraphrase' /
        'held_out') of the templates in `drift`.
      drift: `metrics.representation_drift` of those templates.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for g in [
        g for g in ("observed", "unobserved", "paraphrase", "held_out") if (groups == g).any()
    ]:
        m = groups == g
        ax.scatter(drift.cosine_distance[m], 100 * drift.drop[m], color=COLORS[g], label=g)
    r, p = drift.pearson["cosine"]
    ax.set_xlabel("cosine distance from observed centroid")
    ax.set_ylabel("drop from observed mean (points)")
    ax.set_title(f"{title}: r = {r:.2f} (p = {p:.2g})", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)
