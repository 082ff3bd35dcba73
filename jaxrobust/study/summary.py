"""The built-in study's summary: accuracy by template role, the gap, and what alignment did.

Reads the study's record files (`jaxrobust.storage.records`, written by
`jaxrobust.evaluation`) and writes ``study.md``, ``study.json`` and
``study.png`` into the report folder.

Unit of analysis. The four world tasks ask about the same test passages, so
an *example* is a passage and a template of any task is a row of one
correctness matrix `[K templates, N passages]` per model. Every interval is a two-level
percentile bootstrap (passages, and templates within each task and role,
resampled; seeded; `stratified_bootstrap`):

* a role's accuracy: the mean over tasks of the mean over the task's
  templates of that role of each template's accuracy (rank classification;
  for ``rel`` too, so the four tasks pool);
* the gap: observed minus held-out accuracy;
* the effect of a soft prompt: its held-out (or paraphrase) accuracy minus the
  tuned model's, on the same templates and passages. The bootstrap runs on
  the per-cell difference mapped to [0, 1], ``(d + 1) / 2``, and maps back;
  the map is linear, so the interval is that of the mean difference.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
from scipy import stats

from jaxrobust.analysis import metrics
from jaxrobust.storage import files, records
from jaxrobust.tasks import builtin

ROLES = ("observed", "paraphrase", "heldout")
ROLE_NAMES = {"observed": "observed", "paraphrase": "paraphrase", "heldout": "held-out"}
COLORS = ("tab:gray", "tab:blue", "tab:green", "tab:orange")


def load(eval_dir: str | pathlib.Path, model: str) -> dict[str, dict[str, bool]]:
    """template id -> passage id -> correct, for one model's world record files."""
    return _load(eval_dir, model)[0]


def chance(eval_dir: str | pathlib.Path, model: str) -> float:
    """Accuracy of a uniform random guess, averaged like the scores (1 / #options)."""
    return float(np.mean(list(_load(eval_dir, model)[1].values())))


def _load(eval_dir, model) -> tuple[dict[str, dict[str, bool]], dict[str, float]]:
    root = pathlib.Path(eval_dir) / records.RECORDS_DIR / model
    out: dict[str, dict[str, bool]] = {}
    guess: dict[str, float] = {}
    for path in sorted(root.glob("jr__world_*.jsonl")):
        f = records.read_records(path)
        if f.header["dataset"] not in {d for d, _ in builtin.TASKS.values()}:
            continue
        # Example ids are '<task>-<split>-<i>'; the passage is '<split>-<i>'.
        out[f.header["template_id"]] = {
            r["example_id"].split("-", 1)[1]: bool(r["correct"]) for r in f.records
        }
        guess[f.header["template_id"]] = float(np.mean([1 / len(r["options"]) for r in f.records]))
    if not out:
        raise FileNotFoundError(f"{root}: no record files of the world tasks")
    return out, guess


def matrix(by_template: dict[str, dict[str, bool]]) -> tuple[list[str], np.ndarray]:
    """(template ids, `[K, N]` correctness) over the passages every template has."""
    tids = sorted(by_template, key=lambda t: (builtin.role(t), t))
    common = set.intersection(*(set(v) for v in by_template.values()))
    passages = sorted(common, key=lambda p: (p.split("-")[0], int(p.split("-")[1])))
    if not passages:
        raise ValueError("the world tasks' record files share no passage")
    return tids, np.array([[by_template[t][p] for p in passages] for t in tids], np.float64)


def stratified_bootstrap(
    correct: np.ndarray,
    strata: Sequence[str],
    *,
    observed: Sequence[bool] | None = None,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, metrics.BootstrapCI]:
    """`metrics.two_level_bootstrap` with templates resampled within (task, group).

    The tasks differ in difficulty (chance is 1/6 for ``rel``, 1/2 for ``yn``),
    so resampling templates across tasks would let a draw of four ``yn``
    templates stand for "observed" and swamp the gap with task variance. Here a
    group's score is the mean over tasks of the mean over that task's drawn
    templates; passages are drawn once per resample, shared by every template.
    The draws are made in `two_level_bootstrap`'s order (passages, then the
    templates of each group and task), so with one task the result is exactly
    `metrics.two_level_bootstrap` on the same arguments (tested).

    Args:
      correct: `[K, N]` correctness (0/1 or in [0, 1]).
      strata: `[K]` task of each template.
      observed: optional `[K]` mask splitting the templates into 'observed' and
        'unobserved' (the gap is observed minus unobserved).

    Returns:
      'mean', plus 'observed', 'unobserved' and 'gap' when `observed` is given.
    """
    c = np.asarray(correct, np.float64)
    strata = np.asarray(strata)
    k, n = c.shape
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (n_resamples, n))
    acc = np.empty((n_resamples, k))
    for start, counts in metrics.draw_counts(draws, n):
        acc[start : start + len(counts)] = (counts @ c.T) / n
    groups = {"mean": np.ones(k, bool)}
    if observed is not None:
        m = np.asarray(observed, bool)
        groups = {"observed": m, "unobserved": ~m}
    tasks = list(dict.fromkeys(strata.tolist()))
    dists, points = {}, {}
    for g, member in groups.items():
        per_task_d, per_task_p = [], []
        for t in tasks:
            cols = np.flatnonzero(member & (strata == t))
            if not cols.size:
                continue
            picks = rng.integers(0, cols.size, (n_resamples, cols.size))
            per_task_d.append(np.take_along_axis(acc[:, cols], picks, axis=1).mean(axis=1))
            per_task_p.append(c[cols].mean(axis=1).mean())
        dists[g] = np.mean(per_task_d, axis=0)
        points[g] = float(np.mean(per_task_p))
    if observed is not None:
        dists["gap"] = dists["observed"] - dists["unobserved"]
        points["gap"] = points["observed"] - points["unobserved"]
    alpha = (1 - confidence_level) / 2
    # scipy's quantile, as `two_level_bootstrap` takes it (np.quantile can differ by an ulp).
    return {
        name: metrics.BootstrapCI(
            points[name], *map(float, stats.quantile(dist, np.asarray([alpha, 1 - alpha]))), dist
        )
        for name, dist in dists.items()
    }


def _ci(c: metrics.BootstrapCI, scale=lambda x: x) -> dict:
    return {"estimate": scale(c.estimate), "low": scale(c.low), "high": scale(c.high)}


def analyse(
    eval_dir: str | pathlib.Path,
    models: Sequence[str],
    *,
    baseline: str,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Per model: accuracy by role (and by task and role), gap, effect vs `baseline`."""
    data = {m: matrix(load(eval_dir, m)) for m in models}
    tids, base = data[baseline]
    roles = np.array([builtin.role(t) for t in tids])
    tasks = np.array([t.split("_")[0] for t in tids])
    present = [t for t in builtin.TASKS if t in set(tasks)]
    out: dict = {
        "models": {},
        "templates": tids,
        "tasks": present,
        "n_passages": int(base.shape[1]),
        "chance": chance(eval_dir, baseline),
    }
    boot = {"n_resamples": n_resamples, "seed": seed}
    for m in models:
        m_tids, c = data[m]
        if m_tids != tids or c.shape != base.shape:
            raise ValueError(f"{m}: templates or passages differ from {baseline}'s")
        row: dict = {"per_template": dict(zip(tids, map(float, c.mean(1)), strict=True))}
        for r in ROLES:
            sel = roles == r
            row[r] = _ci(stratified_bootstrap(c[sel], tasks[sel], **boot)["mean"])
            row[f"{r}_by_task"] = {t: float(c[sel & (tasks == t)].mean()) for t in present}
        both = np.isin(roles, ("observed", "heldout"))
        obs = roles[both] == "observed"
        gap = stratified_bootstrap(c[both], tasks[both], observed=obs, **boot)
        row["gap"] = _ci(gap["gap"])
        row["gap_p"] = metrics.paired_permutation_test(c[both], obs, seed=seed).p_value
        if m != baseline:
            for r in ("paraphrase", "heldout"):
                sel = roles == r
                diff = (c[sel] - base[sel] + 1) / 2
                ci = stratified_bootstrap(diff, tasks[sel], **boot)["mean"]
                row[f"effect_{r}"] = _ci(ci, lambda x: 2 * x - 1)
        out["models"][m] = row
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _with_ci(c: dict, signed: bool = False) -> str:
    fmt = (lambda x: f"{100 * x:+.1f}") if signed else _pct
    return f"{fmt(c['estimate'])} [{fmt(c['low'])}, {fmt(c['high'])}]"


def markdown(result: dict, labels: dict[str, str], baseline: str) -> str:
    """The summary table (percent, 95% CIs) and the per-task table."""
    n_tasks = len(result["tasks"])
    per_role = len(result["templates"]) // (n_tasks * len(ROLES))
    lines = [
        f"Accuracy (%) on {result['n_passages']} test passages x "
        f"{len(result['templates'])} templates ({n_tasks} tasks x {len(ROLES)} roles x "
        f"{per_role}), two-level bootstrap 95% CIs (passages and templates resampled); "
        f"chance {_pct(result['chance'])}.",
        "",
        "| model | observed | paraphrase | held-out | gap obs − held-out | "
        f"Δ held-out vs {labels[baseline]} |",
        "|---|---|---|---|---|---|",
    ]
    for m, row in result["models"].items():
        effect = _with_ci(row["effect_heldout"], True) if "effect_heldout" in row else "–"
        lines.append(
            f"| {labels[m]} | {_with_ci(row['observed'])} | {_with_ci(row['paraphrase'])} | "
            f"{_with_ci(row['heldout'])} | {_with_ci(row['gap'], True)} | {effect} |"
        )
    lines += ["", "| model | task | observed | paraphrase | held-out |", "|---|---|---|---|---|"]
    for m, row in result["models"].items():
        for t in result["tasks"]:
            cells = [_pct(row[f"{r}_by_task"][t]) for r in ROLES]
            lines.append(f"| {labels[m]} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, labels: dict[str, str], path: pathlib.Path) -> None:
    """Bars: each model's accuracy per role with its CI; dots: the templates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    roles = [builtin.role(t) for t in result["templates"]]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for i, m in enumerate(models):
        row = result["models"][m]
        xs = np.arange(len(ROLES)) + (i - (len(models) - 1) / 2) * width
        est = np.array([row[r]["estimate"] for r in ROLES])
        err = np.array(
            [[est[j] - row[r]["low"], row[r]["high"] - est[j]] for j, r in enumerate(ROLES)]
        )
        ax.bar(xs, est, width, color=COLORS[i % len(COLORS)], label=labels[m], alpha=0.8)
        ax.errorbar(xs, est, yerr=err.T, fmt="none", ecolor="black", capsize=2, lw=0.8)
        for j, r in enumerate(ROLES):
            vals = [
                v
                for t, v in row["per_template"].items()
                if roles[result["templates"].index(t)] == r
            ]
            ax.plot([xs[j]] * len(vals), vals, ".", color="black", ms=2, alpha=0.5)
    ax.axhline(result["chance"], color="black", ls="--", lw=0.8, label="chance")
    ax.set_xticks(np.arange(len(ROLES)), [f"{ROLE_NAMES[r]} templates" for r in ROLES])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Built-in study: accuracy by instruction template role (95% CI)", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write(
    eval_dir: str | pathlib.Path,
    report_dir: str | pathlib.Path,
    labels: dict[str, str],
    *,
    baseline: str,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Writes study.md, study.json and study.png; returns the analysis."""
    out = pathlib.Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = analyse(eval_dir, list(labels), baseline=baseline, n_resamples=n_resamples, seed=seed)
    files.write_atomic(out / "study.md", markdown(result, labels, baseline))
    files.write_atomic(out / "study.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    plot(result, labels, out / "study.png")
    return result
