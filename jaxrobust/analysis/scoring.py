"""Record files -> per-example outcomes and scores: the one place records are scored.

The report (`report.py`) and the built-in study's summary
(`jaxrobust.study.summary`) read record files through `read_model` and score
them through `outcomes`, so both count a right answer, a relation-extraction
true positive and a template's score the same way.

Definitions:
* Benchmark (`benchmark_of`): the data set and answer format (``semeval/re``,
  ``boolq/qa``); all ``mmlu_*`` subjects form ``mmlu/qa`` and ``bbl_*`` tasks
  ``bigbench_lite/qa``.
* Metric: accuracy for ``qa``; for ``re`` and ``mcqa``, micro-F1 over the
  positive relations with unmatched answers counted as false positives
  (`metrics.re_outcomes`, `metrics.f1_from_counts`), using each record's
  negative label.
* Group (`group_for_model`): how a template relates to a model's instruction
  tuning, from the template's provenance and the model's
  `observed_collections`.

Reading needs neither JAX nor the task registry (`jaxrobust.storage.records`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from jaxrobust.analysis import metrics
from jaxrobust.data import tuning
from jaxrobust.storage import records

GROUPS = ("observed", "unobserved", "other")


def benchmark_of(dataset: str, fmt: str) -> str:
    """The benchmark a data set's record files count towards, e.g. ``mmlu/qa``."""
    if dataset.startswith("mmlu"):
        dataset = "mmlu"
    elif dataset.startswith("bbl_"):
        dataset = "bigbench_lite"
    return f"{dataset}/{fmt}"


def group_for_model(provenance: str, observed_collections: Sequence[str]) -> str:
    """``observed``, ``unobserved`` or ``other``: a template's group for one model.

    ``observed`` when the model was tuned on the template's text: its provenance
    is ``observed:<collection>[:<origin>]`` and one of the model's
    `observed_collections` holds it (`tuning.classify`: a tuning such as
    ``t0++`` holds only the P3 prompts of its training data sets; a plain
    collection name every text of it; ``"*"``: any; ``()``: none, for models
    not instruction tuned); ``unobserved`` for novel templates; else ``other``
    (style:*, default, text the model was not tuned on).
    """
    group = tuning.classify(provenance, "", observed_collections)
    return "observed" if group == "observed_dataset" else group


def observed_dataset(provenance: str, dataset: str, observed_collections: Sequence[str]) -> bool:
    """Whether the model was tuned on this data set with this template's text
    ("observed wording and data set", `tuning.classify`)."""
    return tuning.classify(provenance, dataset, observed_collections) == "observed_dataset"


def read_model(
    output_dir: str | os.PathLike, model: str, pattern: str = "*.jsonl"
) -> list[records.RecordFile]:
    """One model's verified record files under `records.model_dir(output_dir, model)`, by name.

    Raises:
      records.RecordsError: a corrupt or truncated file (named; re-run the
        evaluation, which recomputes it).
    """
    return _read_dir(records.model_dir(output_dir, model), pattern)


def _read_dir(model_dir: epath.Path, pattern: str = "*.jsonl") -> list[records.RecordFile]:
    return [records.read_records(p) for p in sorted(model_dir.glob(pattern))]


def load(output_dir: str | os.PathLike) -> tuple[dict[str, dict], list[records.RecordFile]]:
    """(model name -> ModelSpec dict, every verified record file); `gs://` paths work.

    A model is named as its `model.json` names it (`google/flan-t5-xl` for the
    folder `google__flan-t5-xl`), else by its folder.
    """
    root = epath.Path(output_dir) / records.RECORDS_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no records; run `python -m jaxrobust.main eval` first")
    models, files = {}, []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        spec_path = model_dir / "model.json"
        spec = json.loads(spec_path.read_text()) if spec_path.exists() else {}
        models[spec.get("name", model_dir.name)] = spec
        files += _read_dir(model_dir)
    if not files:
        raise FileNotFoundError(f"{root}: no complete record files")
    return models, files


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """One template's per-example outcomes on one or more data sets, `[N]` each."""

    metric: str  # 'accuracy' (qa) or 'micro_f1' (re, mcqa).
    example_ids: list[tuple[str, str]]  # (data set, example id).
    predicted: np.ndarray  # Predicted labels (object).
    correct: np.ndarray  # 1.0 where the predicted label is the gold label.
    tp: np.ndarray  # Relation-extraction true positives (`metrics.re_outcomes`).
    fp: np.ndarray
    fn: np.ndarray
    truncated: np.ndarray  # bool: the input was truncated to fit.

    @property
    def score(self) -> float:
        """Accuracy, or micro-F1 of the summed counts."""
        if self.metric == "accuracy":
            return float(self.correct.mean())
        return metrics.f1_from_counts(self.tp.sum(), self.fp.sum(), self.fn.sum())

    @property
    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tp, self.fp, self.fn


def outcomes(file: records.RecordFile) -> Outcomes:
    """The per-example outcomes of one record file."""
    rows = file.records
    pred = [r["predicted_label"] for r in rows]
    tp, fp, fn = metrics.re_outcomes(
        pred, [r["gold_label"] for r in rows], [r["negative_label"] or None for r in rows]
    )
    return Outcomes(
        metric="accuracy" if file.header["format"] == "qa" else "micro_f1",
        example_ids=[(file.header["dataset"], r["example_id"]) for r in rows],
        predicted=np.array(pred, dtype=object),
        correct=np.array([r["correct"] for r in rows], np.float64),
        tp=tp,
        fp=fp,
        fn=fn,
        truncated=np.array([r["truncated"] for r in rows], bool),
    )


def concatenate(parts: Sequence[Outcomes]) -> Outcomes:
    """One template's outcomes over several data sets, pooled in the given order."""
    return Outcomes(
        metric=parts[0].metric,
        example_ids=[i for o in parts for i in o.example_ids],
        **{
            f.name: np.concatenate([getattr(o, f.name) for o in parts])
            for f in dataclasses.fields(Outcomes)
            if f.name not in ("metric", "example_ids")
        },
    )
