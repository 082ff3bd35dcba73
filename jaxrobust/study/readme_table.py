"""Writes README's built-in-study results table from the study's numbers.

README's table is not typed: it is this script's output for
``docs/study_results.json``, a copy of a study's ``report/study_seeds.json``
(``--gin.SEEDS=[0,1,2]``) or of one seed's ``eval/report/study.json``, and
tests/test_study_readme.py checks that README holds exactly that.

    python -m jaxrobust.study.readme_table --results study_output/report/study_seeds.json \
        --copy_to docs/study_results.json --write

replaces the lines between README's two markers (`START`, `END`); without
``--write`` it prints them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "study_results.json"
README = REPO / "README.md"
START = "<!-- study-table: written by `python -m jaxrobust.study.readme_table`; do not edit -->"
END = "<!-- /study-table -->"


def render(data: dict) -> str:
    """The lines between the markers: the caption, the tables (`study.seeds.table`), then
    `findings`."""
    from jaxrobust.study import pipeline, seeds

    labels = None if "studies" in data else pipeline.MODEL_LABELS
    table = seeds.table(data, labels)
    return seeds.caption(data) + "\n\n" + table + "\n" + findings(data, labels) + "\n"


def _interval(values: list[dict]) -> tuple[float, float, float]:
    """Mean over seeds of the estimate and of each CI bound, in points."""
    n = len(values)
    return tuple(100 * sum(v[k] for v in values) / n for k in ("estimate", "low", "high"))


def _verdict(values: list[dict]) -> str:
    """Whether the 95% CIs exclude 0: 'excludes 0', 'includes 0', or 'excludes 0 in k of n
    seeds'."""
    out = [v["low"] > 0 or v["high"] < 0 for v in values]
    if len(out) == 1:
        return "excludes 0" if out[0] else "includes 0"
    return f"excludes 0 in {sum(out)} of {len(out)} seeds"


def findings(data: dict, labels: dict[str, str] | None = None) -> str:
    """What the table says, as sentences computed from it: the tuned model's gap, the tasks
    over the bar, and each condition's change of the gap (mean over seeds; CIs' verdicts)."""
    from jaxrobust.study import seeds

    studies = data.get("studies", [data])
    labels = labels or dict(data.get("labels") or [(m, m) for m in studies[0]["models"]])
    base, *conditions = labels
    first = studies[0]
    gap = [s["models"][base]["gap"] for s in studies]
    est, low, high = _interval(gap)
    lines = [
        f"- The tuned model scores {est:+.1f} points on observed minus held-out wordings "
        f"(95% CI [{low:+.1f}, {high:+.1f}]; the CI {_verdict(gap)})."
    ]
    over = []
    for t in first["tasks"]:
        bar = seeds.task_bar(first, t)
        got = sum(s["models"][base]["observed_by_task"][t] for s in studies) / len(studies)
        over.append(f"{t} {100 * got:.1f} {'>=' if got >= bar - 1e-9 else '<'} {100 * bar:.1f}")
    n_over = sum(">=" in o for o in over)
    lines.append(
        f"- Tasks at least 20 points over max(chance, majority class) on observed templates: "
        f"{n_over} of {len(over)} ({'; '.join(over)})."
    )
    for m in conditions:
        effect = [s["models"][m]["effect_gap"] for s in studies]
        est, low, high = _interval(effect)
        way = "narrows" if est < 0 else "widens"
        lines.append(
            f"- {labels[m].lstrip('+ ').strip()} {way} the gap by {abs(est):.1f} points "
            f"(change {est:+.1f}, 95% CI [{low:+.1f}, {high:+.1f}]; the CI {_verdict(effect)})."
        )
    return "\n".join(lines)


def block(readme_text: str) -> str:
    """README's current lines between the markers."""
    if START not in readme_text or END not in readme_text:
        raise ValueError(f"README has no study table between {START!r} and {END!r}")
    return readme_text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def replace(readme_text: str, lines: str) -> str:
    head, rest = readme_text.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n{lines.rstrip()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="study_seeds.json or study.json")
    parser.add_argument("--copy_to", default="", help="also copy the results file here")
    parser.add_argument("--readme", default=str(README))
    parser.add_argument("--write", action="store_true", help="replace README's table")
    args = parser.parse_args(argv)
    data = json.loads(pathlib.Path(args.results).read_text())
    lines = render(data)
    if args.copy_to:
        shutil.copyfile(args.results, args.copy_to)
    if not args.write:
        print(lines, end="")
        return 0
    readme = pathlib.Path(args.readme)
    readme.write_text(replace(readme.read_text(), lines))
    print(f"{readme}: study table written from {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
