"""A run against InstructionEval's published per-instruction results.

Sun et al. (2023) published one table per benchmark and model
(``result_csv/Main/<MMLU|BBL>/<model>.csv``; `instructioneval.read_results`).
`compare` matches each row to the run's records of the same instruction
(template id `instructioneval.template_id`, as `jaxrobust.tasks.qa`'s
``add_instructioneval`` registers them) on the same data set, and writes one
line per instruction: their score, ours, and the difference. MMLU is scored as
they did, over the 57 subjects pooled into one data set; a BIG-bench Lite task
on its own examples. Rows with no matching records (their observed Flan / T0
instructions, whose wording the project takes from the collections themselves,
or a task the run did not evaluate) are counted, not guessed.

``python -m jaxrobust.main report --output_dir=OUT --compare_csv=T0++.csv``
writes ``report/instructioneval__<table>.md`` and ``.csv``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from jaxrobust.analysis import scoring
from jaxrobust.data import instructioneval
from jaxrobust.storage import records
from jaxrobust.storage.files import write_atomic


@dataclasses.dataclass(frozen=True)
class Row:
    """One instruction: their score and the run's."""

    benchmark: str  # InstructionEval's data set name (MMLU_General, Winowhy).
    instruction_id: str  # MMLU/Unobserved/3.
    template_id: str
    theirs: float
    ours: float | None  # None: no records of this instruction in the run.
    n_examples: int


def _ours(files: Sequence[records.RecordFile], model: str) -> dict[tuple[str, str], tuple]:
    """(data set key, template id) -> (score over the pooled examples, n)."""
    parts: dict[tuple[str, str], list[scoring.Outcomes]] = {}
    for f in sorted(files, key=lambda f: (f.header["dataset"], f.header["template_id"])):
        if f.header["config"]["model"] != model:
            continue
        dataset = f.header["dataset"]
        key = "mmlu" if dataset.startswith("mmlu_") else dataset
        parts.setdefault((key, f.header["template_id"]), []).append(scoring.outcomes(f))
    return {
        k: (scoring.concatenate(v).score, sum(len(o.correct) for o in v)) for k, v in parts.items()
    }


def compare(
    files: Sequence[records.RecordFile], results: Sequence[instructioneval.Result], model: str
) -> list[Row]:
    """Their rows (``Include?`` true, zero-shot) beside the run's scores for `model`."""
    ours = _ours(files, model)
    rows = []
    for r in results:
        if not r.include or r.shots != 0:
            continue
        datasets = instructioneval.BENCHMARKS.get(r.benchmark, (None, ()))[1]
        tid = instructioneval.template_id(r.benchmark, r.instruction_id)
        found = [ours[(d, tid)] for d in datasets if (d, tid) in ours]
        score, n = found[0] if found else (None, 0)
        rows.append(Row(r.benchmark, r.instruction_id, tid, r.performance, score, n))
    return rows


def summary(rows: Sequence[Row]) -> dict:
    """Matched count, mean difference (ours - theirs) and mean absolute difference."""
    matched = [r for r in rows if r.ours is not None]
    diffs = np.array([r.ours - r.theirs for r in matched], np.float64)
    return {
        "rows": len(rows),
        "matched": len(matched),
        "mean_difference": float(diffs.mean()) if matched else None,
        "mean_abs_difference": float(np.abs(diffs).mean()) if matched else None,
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def write(
    output_dir: str | os.PathLike, csv_path: str | os.PathLike, model: str | None = None
) -> epath.Path:
    """Compares the run in `output_dir` with one result table; returns the Markdown file.

    Args:
      model: the run's model to compare (default: the only model in the run).

    Raises:
      ValueError: several models in the run and no `model` named, or an unknown one.
    """
    models, files = scoring.load(output_dir)
    if model is None:
        if len(models) != 1:
            raise ValueError(
                f"{output_dir}: models {sorted(models)}; name the one to compare (--compare_model)"
            )
        (model,) = models
    if model not in models:
        raise ValueError(f"{output_dir}: no model {model!r}; found {sorted(models)}")
    results = instructioneval.read_results(csv_path)
    rows = compare(files, results, model)
    stats = summary(rows)
    name = epath.Path(csv_path).stem
    out = epath.Path(output_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {model} against InstructionEval's {name} ({epath.Path(csv_path).name})\n",
        f"{stats['matched']} of {stats['rows']} zero-shot instructions matched; mean "
        f"difference (ours - theirs) {_pct(stats['mean_difference'])}, mean absolute "
        f"difference {_pct(stats['mean_abs_difference'])} (percentage points).\n",
        "| benchmark | instruction | theirs (%) | ours (%) | difference | examples |",
        "|---|---|---|---|---|---|",
    ]
    table = ["benchmark,instruction_id,template_id,theirs,ours,difference,n_examples"]
    for r in rows:
        diff = None if r.ours is None else r.ours - r.theirs
        lines.append(
            f"| {r.benchmark} | {r.instruction_id} | {_pct(r.theirs)} | {_pct(r.ours)} | "
            f"{_pct(diff)} | {r.n_examples} |"
        )
        table.append(
            ",".join(
                [r.benchmark, r.instruction_id, r.template_id, repr(r.theirs)]
                + ["" if v is None else repr(v) for v in (r.ours, diff)]
                + [str(r.n_examples)]
            )
        )
    md = out / f"instructioneval__{name}.md"
    write_atomic(md, "\n".join(lines) + "\n")
    write_atomic(out / f"instructioneval__{name}.csv", "\n".join(table) + "\n")
    return md
