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
    """The lines between the markers: the caption, then the tables (`study.seeds.table`)."""
    from jaxrobust.study import pipeline, seeds

    labels = None if "studies" in data else pipeline.MODEL_LABELS
    return seeds.caption(data) + "\n\n" + seeds.table(data, labels)


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
