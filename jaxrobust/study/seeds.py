"""The built-in study over several seeds: each seed's study.json, and the table across them.

`pipeline.run` with ``seeds=(0, 1, 2)`` runs one study per seed under
``seed_<s>/`` and calls `write`, which gathers their ``study.json`` into
``report/study_seeds.json`` and writes ``report/study.md``: `table` of it, the
mean over seeds of each number with the across-seed standard deviation beside
it, and in brackets the mean of the per-seed 95% CI bounds.

`table` is also what writes README's results table
(`python -m jaxrobust.study.readme_table`): one seed's study.json gives the same
table without the spread.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from jaxrobust.storage import files

COLUMNS = (  # (study.json key, header, signed)
    ("observed", "observed", False),
    ("paraphrase", "paraphrase", False),
    ("heldout", "held-out", False),
    ("gap", "gap obs − held-out", True),
    ("effect_heldout", "Δ held-out vs tuned", True),
    ("effect_gap", "Δ gap vs tuned", True),
)


def gather(folders: Sequence[pathlib.Path], labels: dict[str, str]) -> dict:
    """{'seeds', 'labels', 'studies'}: each folder's eval/report/study.json, in order."""
    studies, seeds = [], []
    for folder in folders:
        path = pathlib.Path(folder) / "eval" / "report" / "study.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no study.json (did that seed's study finish?)")
        studies.append(json.loads(path.read_text()))
        options = json.loads((pathlib.Path(folder) / "study_options.json").read_text())
        seeds.append(options["seed"])
    # Labels as pairs: JSON objects are written with sorted keys, and the order is the table's.
    return {"seeds": seeds, "labels": [[m, lab] for m, lab in labels.items()], "studies": studies}


def _cell(values: list[dict], signed: bool) -> str:
    fmt = (lambda x: f"{100 * x:+.1f}") if signed else (lambda x: f"{100 * x:.1f}")
    est = [v["estimate"] for v in values]
    low = float(np.mean([v["low"] for v in values]))
    high = float(np.mean([v["high"] for v in values]))
    spread = f" ± {100 * float(np.std(est, ddof=1)):.1f}" if len(values) > 1 else ""
    return f"{fmt(float(np.mean(est)))}{spread} [{fmt(low)}, {fmt(high)}]"


def table(data: dict, labels: dict[str, str] | None = None) -> str:
    """The results table of one study.json, or of `gather`'s several (mean ± sd [CI]).

    Rows follow `labels` (model -> row label), else the data's own labels."""
    studies = data.get("studies", [data])
    labels = labels or dict(data.get("labels") or [(m, m) for m in studies[0]["models"]])
    lines = [
        "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for m, label in labels.items():
        cells = []
        for key, _, signed in COLUMNS:
            rows = [s["models"][m] for s in studies]
            cells.append(_cell([r[key] for r in rows], signed) if key in rows[0] else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "majority_by_task" in studies[0]:
        first = studies[0]
        lines += ["", "| task | chance | majority class | bar: max + 20 | tuned, observed |"]
        lines += ["|---|---|---|---|---|"]
        base = next(iter(labels))
        for t in first["tasks"]:
            bar = task_bar(first, t)
            got = _mean(s["models"][base]["observed_by_task"][t] for s in studies)
            lines.append(
                f"| {t} | {100 * first['chance_by_task'][t]:.1f} | "
                f"{100 * first['majority_by_task'][t]:.1f} | {100 * bar:.1f} | {got} |"
            )
    lines += [
        "",
        "| model | task | observed | paraphrase | held-out | dev |",
        "|---|---|---|---|---|---|",
    ]
    for m, label in labels.items():
        for t in studies[0]["tasks"]:
            cells = []
            for r in ("observed", "paraphrase", "heldout"):
                cells.append(_mean(s["models"][m][f"{r}_by_task"][t] for s in studies))
            dev = [s["dev"][m]["by_task"][t] for s in studies if "dev" in s]
            cells.append(_mean(dev) if dev else "–")
            lines.append(f"| {label} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def task_bar(study: dict, task: str) -> float:
    """What a task must reach on observed templates to count as learned: 20 points over
    max(chance, majority class)."""
    return max(study["chance_by_task"][task], study["majority_by_task"][task]) + 0.2


def _mean(values) -> str:
    values = list(values)
    spread = f" ± {100 * float(np.std(values, ddof=1)):.1f}" if len(values) > 1 else ""
    return f"{100 * float(np.mean(values)):.1f}{spread}"


def caption(data: dict) -> str:
    """One line saying what the table's numbers are."""
    studies = data.get("studies", [data])
    first = studies[0]
    n = len(studies)
    what = (
        f"mean over {n} seeds ({', '.join(map(str, data['seeds']))}) ± across-seed standard "
        "deviation; in brackets the mean of the per-seed 95% CI bounds"
        if n > 1
        else "one seed; 95% CIs in brackets"
    )
    return (
        f"Accuracy (%), {first['n_passages']} test passages x {len(first['templates'])} "
        f"templates per model, mean over the {len(first['tasks'])} tasks of the mean over their "
        f"templates; chance {100 * first['chance']:.1f}; {what}. Per task: the same means "
        "(dev: dev templates on validation passages)."
    )


def write(
    folders: Sequence[pathlib.Path], report_dir: pathlib.Path, labels: dict[str, str], baseline: str
) -> pathlib.Path:
    """Writes study_seeds.json and study.md (`table`) into `report_dir`; returns it."""
    del baseline  # The effects in each study.json are already against it.
    data = gather(folders, labels)
    report_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(report_dir / "study_seeds.json", data)
    files.write_atomic(report_dir / "study.md", caption(data) + "\n\n" + table(data))
    return report_dir
