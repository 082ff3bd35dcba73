"""Record files -> per-example outcomes and scores: the one place records are scored.

The report (`report.py`) and the built-in study's summary
(`jaxrobust.study.summary`) read record files through `read_model` and score
them through `outcomes`, so both count a right answer, a relation-extraction
true positive and a template's score the same way.

Definitions:
* Benchmark (`benchmark_of`): the data set and answer format (``semeval/re``,
  ``boolq/qa``); all ``mmlu_*`` subjects form ``mmlu/qa`` and ``bbl_*`` tasks
  ``bigbench_lite/qa``.
* Metric (`METRICS`): accuracy for ``qa``. For ``re`` and ``mcqa``: on
  SemEval-2010 Task 8 its official score (``semeval_official``: macro-F1 over
  the nine relations, direction counted, Other excluded; computed by the scorer
  port `semeval_scorer.score`, an answer matching no option counted as Other);
  on the other data sets micro-F1 over the positive relations (``micro_f1``:
  the negative label, e.g. TACRED's ``no_relation``, excluded as Zhang et al.'s
  TACRED scorer does; an answer matching no option is a wrong relation guessed,
  a false positive; `metrics.re_outcomes`, `metrics.f1_from_counts`). Micro-F1
  is kept beside the official SemEval score (`Outcomes.micro_f1`): Ni et al.
  (QA4RE) report micro-F1 on every data set.
* Truncation: each record says whether its input was shortened (``truncated``)
  and whether even so protected text was cut (``protected_cut``, schema 3;
  older records count every truncation so); `truncation_summary` gives the
  shares and the gap on the examples no template truncated.
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

from jaxrobust.analysis import metrics, semeval_scorer, stats
from jaxrobust.data import tuning
from jaxrobust.storage import records

# A template's group for a model; format variants (`jaxrobust.data.formats`) apart.
GROUPS = ("observed", "unobserved", "other", "variants")
# Metric name -> what the report says it is.
METRICS = {
    "accuracy": "accuracy",
    "micro_f1": (
        "micro-F1 over the positive relations (the negative label excluded, as Zhang et "
        "al.'s TACRED scorer; an answer matching no option counts as a wrong relation)"
    ),
    "semeval_official": (
        "the official SemEval-2010 Task 8 score (macro-F1 over the nine relations, direction "
        "counted, Other excluded; scorer v1.2 port; an answer matching no option counts as Other)"
    ),
}
SEMEVAL = "semeval"  # The data set scored by its official scorer.


def metric_of(dataset: str, fmt: str) -> str:
    """The metric of a data set's record files (`METRICS`)."""
    if fmt == "qa":
        return "accuracy"
    return "semeval_official" if dataset == SEMEVAL else "micro_f1"


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

    metric: str  # `METRICS`: 'accuracy' (qa), 'micro_f1' or 'semeval_official' (re, mcqa).
    example_ids: list[tuple[str, str]]  # (data set, example id).
    predicted: np.ndarray  # Predicted labels (object).
    correct: np.ndarray  # 1.0 where the predicted label is the gold label.
    tp: np.ndarray  # Relation-extraction true positives (`metrics.re_outcomes`).
    fp: np.ndarray
    fn: np.ndarray
    truncated: np.ndarray  # bool: the input was truncated to fit.
    gold: np.ndarray  # Gold labels (object).
    protected_cut: np.ndarray  # bool: even shortened it did not fit; protected text cut.

    @property
    def score(self) -> float:
        """The metric's value: accuracy, micro-F1 of the summed counts, or SemEval's
        official score (`semeval_official`) as a fraction."""
        if self.metric == "accuracy":
            return float(self.correct.mean())
        if self.metric == "semeval_official":
            return semeval_official(self.predicted, self.gold) / 100
        return self.micro_f1

    @property
    def micro_f1(self) -> float | None:
        """Micro-F1 over the positive relations (None for qa)."""
        if self.metric == "accuracy":
            return None
        return metrics.f1_from_counts(self.tp.sum(), self.fp.sum(), self.fn.sum())

    @property
    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tp, self.fp, self.fn

    def subset(self, keep: np.ndarray) -> Outcomes:
        """The outcomes of the examples where `keep` [N] is True."""
        return Outcomes(
            metric=self.metric,
            example_ids=[i for i, k in zip(self.example_ids, keep, strict=True) if k],
            **{
                f.name: getattr(self, f.name)[keep]
                for f in dataclasses.fields(Outcomes)
                if f.name not in ("metric", "example_ids")
            },
        )


def semeval_official(predicted, gold) -> float:
    """SemEval-2010 Task 8's official score (percent) of aligned label lists, by the
    scorer port (`semeval_scorer.score`); an answer matching no option counts as Other
    (for every relation's P, R and F1 this equals leaving the example unanswered)."""
    labels = set(semeval_scorer.LABELS)
    ids = [str(i + 1) for i in range(len(gold))]
    proposed = {i: (p if p in labels else "Other") for i, p in zip(ids, predicted, strict=True)}
    return semeval_scorer.score(proposed, dict(zip(ids, gold, strict=True))).official_score


def _relation(label: str) -> str:
    return label.split("(")[0]


def _semeval_macro_f1(n, *sums):
    """Official macro-F1 from per-relation sums (tp, predicted, actual for each of the
    nine relations, `[..., K]` each): F1_r = 2 tp / (predicted + actual), 0 without a
    true positive, averaged over the relations the key holds."""
    del n
    r = len(semeval_scorer.RELATIONS)
    tp, pred, act = (np.stack(sums[i * r : (i + 1) * r]) for i in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (pred + act), 0.0)
    present = act > 0
    return (f1 * present).sum(0) / present.sum(0)


SEMEVAL_MACRO_F1 = stats.Statistic(
    "semeval_macro_f1", 3 * len(semeval_scorer.RELATIONS), _semeval_macro_f1
)


def _semeval_components(o: Outcomes) -> list[np.ndarray]:
    """Per example and relation: exact hit, predicted (either direction), in the key."""
    gold = np.array([_relation(g) for g in o.gold], dtype=object)
    pred = np.array([_relation(p) for p in o.predicted], dtype=object)
    hit = o.gold == o.predicted
    out = []
    for parts in (
        [hit & (gold == r) for r in semeval_scorer.RELATIONS],
        [pred == r for r in semeval_scorer.RELATIONS],
        [gold == r for r in semeval_scorer.RELATIONS],
    ):
        out += [x.astype(np.float64) for x in parts]
    return out


def bootstrap_values(outs: Sequence[Outcomes]) -> tuple[np.ndarray | tuple, stats.Statistic]:
    """The `stats.bootstrap` inputs of templates on the same examples: `[K, N]`
    component matrices and the statistic of their metric."""
    metric = outs[0].metric
    if metric == "accuracy":
        return np.stack([o.correct for o in outs]), stats.MEAN
    if metric == "semeval_official":
        comps = [_semeval_components(o) for o in outs]
        return tuple(np.stack(c) for c in zip(*comps, strict=True)), SEMEVAL_MACRO_F1
    return tuple(np.stack([o.counts[i] for o in outs]) for i in range(3)), stats.MICRO_F1


def truncation_summary(outs: Sequence[Outcomes], groups: Sequence[str]) -> dict:
    """Truncation over templates on the same examples, and the gap without it.

    Args:
      outs: each template's outcomes, on the same examples.
      groups: `[K]` each template's group (`GROUPS`).

    Returns:
      ``truncated_share`` / ``protected_cut_share``: shares of the examples some
      template's input was shortened / cut in protected text; ``n_untruncated``
      and ``gap_untruncated``: the gap (observed - unobserved, means over
      templates) on the examples no template truncated (None without such
      examples or without both groups).
    """
    truncated = np.any([o.truncated for o in outs], axis=0)
    cut = np.any([o.protected_cut for o in outs], axis=0)
    out = {
        "truncated_share": float(truncated.mean()),
        "protected_cut_share": float(cut.mean()),
        "n_untruncated": int((~truncated).sum()),
        "gap_untruncated": None,
    }
    groups = np.asarray(groups)
    keep = np.isin(groups, ("observed", "unobserved"))
    both = (groups == "observed").any() and (groups == "unobserved").any()
    if both and (~truncated).any():
        kept = [o.subset(~truncated) for o, k in zip(outs, keep, strict=True) if k]
        scores = np.array([o.score for o in kept])
        out["gap_untruncated"] = metrics.observed_gap(scores, groups[keep] == "observed").gap
    return out


def outcomes(file: records.RecordFile) -> Outcomes:
    """The per-example outcomes of one record file."""
    rows = file.records
    pred = [r["predicted_label"] for r in rows]
    tp, fp, fn = metrics.re_outcomes(
        pred, [r["gold_label"] for r in rows], [r["negative_label"] or None for r in rows]
    )
    return Outcomes(
        metric=metric_of(file.header["dataset"], file.header["format"]),
        example_ids=[(file.header["dataset"], r["example_id"]) for r in rows],
        predicted=np.array(pred, dtype=object),
        correct=np.array([r["correct"] for r in rows], np.float64),
        tp=tp,
        fp=fp,
        fn=fn,
        truncated=np.array([r["truncated"] for r in rows], bool),
        gold=np.array([r["gold_label"] for r in rows], dtype=object),
        # Schema < 3: the model's plain cut, which may have cut protected text.
        protected_cut=np.array([r.get("protected_cut", r["truncated"]) for r in rows], bool),
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
