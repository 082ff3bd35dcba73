"""The built-in study's summary: accuracy by template role, the gap, and what alignment did.

Reads the study's record files through `jaxrobust.analysis.scoring` (the
report's reader and scorer) and writes ``study.md``, ``study.json`` and
``study.png`` into the report folder. It imports neither JAX nor the task
registry: the caller (`study.pipeline`) passes the study's tasks and the
template-role rule (`jaxrobust.tasks.builtin.TASKS` and `.role`).

Unit of analysis. The four world tasks ask about the same test passages, so
an *example* is a passage and a template of any task is a row of one
correctness matrix `[K templates, N passages]` per model. Every interval is a two-level
percentile bootstrap (passages, and templates within each task and role,
resampled; seeded; `jaxrobust.analysis.stats.bootstrap` with the tasks as
strata):

* a role's accuracy: the mean over tasks of the mean over the task's
  templates of that role of each template's accuracy (rank classification;
  for ``rel`` too, so the four tasks pool);
* the gap: observed minus held-out accuracy;
* the effect of a condition (PT, PT+KL, FT, FT+KL): its held-out (or
  paraphrase) accuracy minus the tuned model's, on the same templates and
  passages, and its gap minus the tuned model's gap. The bootstrap runs on
  the per-cell difference mapped to [0, 1], ``(d + 1) / 2``, and maps back;
  the map is linear, so the interval is that of the mean difference (paired).

Dev templates (role ``dev``, validation passages, a separate evaluation
folder) enter ``study.json`` as each model's mean accuracy: what the study's
settings were chosen on; they are in no table of held-out results.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxrobust.analysis import plots, scoring, stats
from jaxrobust.storage import files

ROLES = ("observed", "paraphrase", "heldout")
ROLE_NAMES = {"observed": "observed", "paraphrase": "paraphrase", "heldout": "held-out"}
COLORS = ("tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:purple")

# (eval dir, model, template id) -> share of the most frequent gold label, filled by `_load`.
_MAJORITY: dict[tuple[str, str, str], float] = {}

# The study's vocabulary, passed in by the caller (`jaxrobust.tasks.builtin`):
Tasks = Mapping[str, tuple[str, str]]  # task -> (data set, format), in table order.
Role = Callable[[str], str]  # template id -> 'observed', 'paraphrase' or 'heldout'.


def load(eval_dir: str | pathlib.Path, model: str, tasks: Tasks) -> dict[str, dict[str, bool]]:
    """template id -> passage id -> correct, for one model's world record files."""
    return _load(eval_dir, model, tasks)[0]


def chance(eval_dir: str | pathlib.Path, model: str, tasks: Tasks) -> float:
    """Accuracy of a uniform random guess, averaged like the scores (1 / #options)."""
    return float(np.mean(list(_load(eval_dir, model, tasks)[1].values())))


def _load(eval_dir, model, tasks: Tasks) -> tuple[dict[str, dict[str, bool]], dict[str, float]]:
    datasets = {d for d, _ in tasks.values()}
    out: dict[str, dict[str, bool]] = {}
    guess: dict[str, float] = {}
    for f in scoring.read_model(eval_dir, model, "jr__world_*.jsonl"):
        if f.header["dataset"] not in datasets:
            continue
        o = scoring.outcomes(f)
        # Example ids are '<task>-<split>-<i>'; the passage is '<split>-<i>'.
        out[f.header["template_id"]] = {
            i.split("-", 1)[1]: bool(c) for (_, i), c in zip(o.example_ids, o.correct, strict=True)
        }
        guess[f.header["template_id"]] = float(np.mean([1 / len(r["options"]) for r in f.records]))
        counts: dict[int, int] = {}  # Gold option position (mc: A-D order) -> examples.
        for r in f.records:
            counts[r["gold_index"]] = counts.get(r["gold_index"], 0) + 1
        _MAJORITY[(str(eval_dir), model, f.header["template_id"])] = max(counts.values()) / len(
            f.records
        )
    if not out:
        root = pathlib.Path(eval_dir) / "records" / model
        raise FileNotFoundError(f"{root}: no record files of the world tasks")
    return out, guess


def matrix(by_template: dict[str, dict[str, bool]], role: Role) -> tuple[list[str], np.ndarray]:
    """(template ids, `[K, N]` correctness) over the passages every template has."""
    tids = sorted(by_template, key=lambda t: (role(t), t))
    common = set.intersection(*(set(v) for v in by_template.values()))
    passages = sorted(common, key=lambda p: (p.split("-")[0], int(p.split("-")[1])))
    if not passages:
        raise ValueError("the world tasks' record files share no passage")
    return tids, np.array([[by_template[t][p] for p in passages] for t in tids], np.float64)


def _ci(c: stats.BootstrapCI, scale=lambda x: x) -> dict:
    return {"estimate": scale(c.estimate), "low": scale(c.low), "high": scale(c.high)}


def analyse(
    eval_dir: str | pathlib.Path,
    models: Sequence[str],
    *,
    baseline: str,
    tasks: Tasks,
    role: Role,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Per model: accuracy by role (and by task and role), gap, effect vs `baseline`.

    Args:
      tasks: the study's tasks in table order, task -> (data set, format).
      role: a template id's role.
    """
    data = {m: matrix(load(eval_dir, m, tasks), role) for m in models}
    tids, base = data[baseline]
    roles = np.array([role(t) for t in tids])
    strata = np.array([t.split("_")[0] for t in tids])  # The task of each template.
    present = [t for t in tasks if t in set(strata)]
    out: dict = {
        "models": {},
        "templates": tids,
        "tasks": present,
        "n_passages": int(base.shape[1]),
        "chance": chance(eval_dir, baseline, tasks),
    }
    # Per task: uniform guessing and always answering the most frequent gold label (the
    # bar "learned" is measured against: README, "The built-in study").
    guess = _load(eval_dir, baseline, tasks)[1]
    out["chance_by_task"] = {
        t: float(np.mean([g for tid, g in guess.items() if tid.split("_")[0] == t]))
        for t in present
    }
    out["majority_by_task"] = {
        t: float(
            np.mean(
                [
                    v
                    for (d, m, tid), v in _MAJORITY.items()
                    if d == str(eval_dir) and m == baseline and tid.split("_")[0] == t
                ]
            )
        )
        for t in present
    }
    boot = {"n_resamples": n_resamples, "seed": seed}
    for m in models:
        m_tids, c = data[m]
        if m_tids != tids or c.shape != base.shape:
            raise ValueError(f"{m}: templates or passages differ from {baseline}'s")
        row: dict = {"per_template": dict(zip(tids, map(float, c.mean(1)), strict=True))}
        for r in ROLES:
            sel = roles == r
            row[r] = _ci(stats.bootstrap(c[sel], strata=strata[sel], **boot)["mean"])
            row[f"{r}_by_task"] = {t: float(c[sel & (strata == t)].mean()) for t in present}
        both = np.isin(roles, ("observed", "heldout"))
        obs = roles[both] == "observed"
        gap = stats.bootstrap(c[both], strata=strata[both], observed=obs, **boot)
        row["gap"] = _ci(gap["gap"])
        row["gap_p"] = stats.paired_permutation_test(c[both], obs, seed=seed).p_value
        if m != baseline:
            for r in ("paraphrase", "heldout"):
                sel = roles == r
                diff = (c[sel] - base[sel] + 1) / 2
                ci = stats.bootstrap(diff, strata=strata[sel], **boot)["mean"]
                row[f"effect_{r}"] = _ci(ci, lambda x: 2 * x - 1)
            # Gap minus the baseline's gap: the gap of the per-cell difference.
            diff = (c[both] - base[both] + 1) / 2
            ci = stats.bootstrap(diff, strata=strata[both], observed=obs, **boot)["gap"]
            row["effect_gap"] = _ci(ci, lambda x: 2 * x)
        out["models"][m] = row
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _with_ci(c: dict, signed: bool = False) -> str:
    fmt = (lambda x: f"{100 * x:+.1f}") if signed else _pct
    return f"{fmt(c['estimate'])} [{fmt(c['low'])}, {fmt(c['high'])}]"


def markdown(result: dict, labels: dict[str, str], baseline: str) -> str:
    """The summary table (percent, 95% CIs), the per-task table and the dev accuracies."""
    n_tasks = len(result["tasks"])
    per_role = len(result["templates"]) // (n_tasks * len(ROLES))
    base = labels[baseline]
    lines = [
        f"Accuracy (%) on {result['n_passages']} test passages x "
        f"{len(result['templates'])} templates ({n_tasks} tasks x {len(ROLES)} roles x "
        f"{per_role}), two-level bootstrap 95% CIs (passages and templates resampled); "
        f"chance {_pct(result['chance'])}.",
        "",
        "| model | observed | paraphrase | held-out | gap obs − held-out | "
        f"Δ held-out vs {base} | Δ gap vs {base} |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, row in result["models"].items():
        effect = _with_ci(row["effect_heldout"], True) if "effect_heldout" in row else "–"
        gap = _with_ci(row["effect_gap"], True) if "effect_gap" in row else "–"
        lines.append(
            f"| {labels[m]} | {_with_ci(row['observed'])} | {_with_ci(row['paraphrase'])} | "
            f"{_with_ci(row['heldout'])} | {_with_ci(row['gap'], True)} | {effect} | {gap} |"
        )
    lines += ["", "| model | task | observed | paraphrase | held-out |", "|---|---|---|---|---|"]
    for m, row in result["models"].items():
        for t in result["tasks"]:
            cells = [_pct(row[f"{r}_by_task"][t]) for r in ROLES]
            lines.append(f"| {labels[m]} | {t} | " + " | ".join(cells) + " |")
    if result.get("dev"):
        lines += ["", "Dev templates (validation passages; settings were chosen on these):", ""]
        lines += ["| model | dev | " + " | ".join(result["tasks"]) + " |"]
        lines += ["|---|---|" + "---|" * len(result["tasks"])]
        for m, d in result["dev"].items():
            cells = [_pct(d["by_task"].get(t, float("nan"))) for t in result["tasks"]]
            lines.append(f"| {labels[m]} | {_pct(d['mean'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dev_accuracy(dev_dir: str | pathlib.Path, models: Sequence[str], tasks: Tasks, role: Role):
    """Per model: mean over tasks of the mean dev-template accuracy, and per task."""
    out = {}
    for m in models:
        by_template = load(dev_dir, m, tasks)
        by_task: dict[str, list[float]] = {}
        for tid, cells in by_template.items():
            if role(tid) == "dev":
                by_task.setdefault(tid.split("_")[0], []).append(
                    float(np.mean(list(cells.values())))
                )
        per = {t: float(np.mean(v)) for t, v in by_task.items()}
        out[m] = {"mean": float(np.mean(list(per.values()))), "by_task": per}
    return out


def plot(result: dict, labels: dict[str, str], path: pathlib.Path, role: Role) -> None:
    """Bars: each model's accuracy per role with its CI; dots: the templates."""
    plt = plots.pyplot()
    models = list(result["models"])
    roles = [role(t) for t in result["templates"]]
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
    plots.save(fig, path)


def write(
    eval_dir: str | pathlib.Path,
    report_dir: str | pathlib.Path,
    labels: dict[str, str],
    *,
    baseline: str,
    tasks: Tasks,
    role: Role,
    n_resamples: int = 1000,
    seed: int = 0,
    dev_dir: str | pathlib.Path | None = None,
) -> dict:
    """Writes study.md, study.json and study.png; returns the analysis (`analyse`, plus
    'dev': `dev_accuracy` of `dev_dir` when given)."""
    out = pathlib.Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    boot = {"n_resamples": n_resamples, "seed": seed}
    result = analyse(eval_dir, list(labels), baseline=baseline, tasks=tasks, role=role, **boot)
    if dev_dir is not None:
        result["dev"] = dev_accuracy(dev_dir, list(labels), tasks, role)
    files.write_atomic(out / "study.md", markdown(result, labels, baseline))
    files.write_atomic(out / "study.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    plot(result, labels, out / "study.png", role)
    return result
