"""Point metrics for instruction robustness: relation-extraction F1, spread over
templates, the observed-vs-unobserved drop, agreement between templates, and the
representation-distance analysis. Pure numpy/scipy; resampling statistics are
in `stats.py`, the SemEval-2010 Task 8 official scorer in `semeval_scorer.py`.

Shapes: K templates, N examples, M models, D representation width.

Conventions, chosen once for the whole module:
- Scores are fractions in [0, 1] (the SemEval scorer alone uses percent).
- Empty inputs raise `ValueError`; NaN is returned only where a docstring says
  so (a statistic that is undefined for the given data, e.g. a standard
  deviation of one template).
- Standard deviations over templates use ddof=1 (templates are a sample of
  possible wordings); pass `ddof=0` for the population value.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

INVALID_LABEL = "invalid"  # The predicted label of an answer that names no option.


def observed_mask(observed, k: int) -> np.ndarray:
    """Validates an observed-template mask [K] with both groups non-empty."""
    m = np.asarray(observed)
    if m.shape != (k,) or m.dtype != bool:
        raise ValueError(
            f"observed must be a boolean mask of shape ({k},), got {m.dtype} {m.shape}"
        )
    if m.all() or not m.any():
        raise ValueError("need at least one observed and one unobserved template")
    return m


# ----------------------------------------------------------------------------
# Relation extraction
# ----------------------------------------------------------------------------


def re_outcomes(
    predictions: Sequence[str], targets: Sequence[str], negative_labels: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example true positives, false positives and false negatives, `[N]` each (0/1).

    Per example with gold g, prediction p and negative label o (None: every
    relation is positive):
      - p == g, g != o: one TP.
      - g != o, p != g: one FN; and one FP too when p != o (a wrong relation or
        an invalid answer).
      - g == o, p != o: one FP.
      - g == o, p == o: nothing.
    So an invalid answer is a false positive wherever it appears, exactly like a
    wrong relation. Summed and passed to `f1_from_counts`, this is micro-F1 over
    the positive relations: sklearn's `f1_score(average='micro')` with `labels`
    the positive relations plus the invalid label (without invalid answers, the
    usual TACRED score with `labels` the positive relations).

    Args:
      predictions: [N] predicted labels.
      targets: [N] gold labels.
      negative_labels: [N] each example's negative ("no relation") label, or None.
    """
    p, t, o = list(predictions), list(targets), list(negative_labels)
    if not len(p) == len(t) == len(o):
        raise ValueError(f"need equal lengths, got {len(p)}, {len(t)}, {len(o)}")
    positive = np.array([g != n for g, n in zip(t, o, strict=True)], bool)
    right = np.array([a == g for a, g in zip(p, t, strict=True)], bool)
    predicted_negative = np.array([a == n for a, n in zip(p, o, strict=True)], bool)
    tp = right & positive
    fn = positive & ~right
    fp = ~right & ~predicted_negative
    return tp.astype(np.float64), fp.astype(np.float64), fn.astype(np.float64)


def f1_from_counts(tp, fp, fn):
    """Micro-F1 2TP / (2TP + FP + FN), 0 where TP = 0; elementwise on arrays of counts.

    The one F1 formula of the package: `re_micro_f1`, the record scoring
    (`scoring.py`) and the bootstrap statistic (`stats.MICRO_F1`) all call it.
    """
    tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return f1 if f1.ndim else float(f1)


@dataclasses.dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int
    precision: float  # tp / (tp + fp); 0 when tp + fp = 0.
    recall: float  # tp / (tp + fn); 0 when tp + fn = 0.
    f1: float  # `f1_from_counts`: 2tp / (2tp + fp + fn); 0 when tp = 0.


def re_micro_f1(
    predictions: Sequence[str],
    targets: Sequence[str],
    *,
    positive_labels: Iterable[str],
    negative_label: str | None,
    invalid_label: str = INVALID_LABEL,
) -> PRF:
    """Micro P/R/F1 over the positive relations (`re_outcomes`), with the labels checked.

    With `negative_label=None` (every example has a relation) and no invalid
    answers, P = R = accuracy.

    Args:
      predictions: [N] predicted labels, each positive, negative or invalid.
      targets: [N] gold labels, each positive or negative.
      positive_labels: the relations scored.
      negative_label: `no_relation` (TACRED family), `Other` (SemEval), or None.
      invalid_label: the label of answers that name no relation.

    Raises:
      ValueError: empty or mismatched inputs, or a label outside these sets
        (a typo in a label mapping must not pass as a wrong answer).
    """
    positive = set(positive_labels)
    if not positive or negative_label in positive or invalid_label in positive:
        raise ValueError("positive labels must be non-empty and exclude the negative/invalid ones")
    p, t = list(predictions), list(targets)
    if len(p) != len(t) or not p:
        raise ValueError(f"need two non-empty sequences of equal length, got {len(p)}, {len(t)}")
    known = positive | ({negative_label, invalid_label} - {None})
    bad_p = sorted({x for x in p if x not in known})
    bad_t = sorted({x for x in t if x not in positive and x != negative_label})
    if bad_p or bad_t:
        raise ValueError(f"unknown predicted labels {bad_p[:5]} / gold labels {bad_t[:5]}")
    tp, fp, fn = (int(x.sum()) for x in re_outcomes(p, t, [negative_label] * len(p)))
    return PRF(
        tp,
        fp,
        fn,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        f1=f1_from_counts(tp, fp, fn),
    )


# ----------------------------------------------------------------------------
# Robustness over templates
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpreadStats:
    n_templates: int
    mean: float
    std: float  # With `ddof`; NaN when n_templates <= ddof.
    min: float
    max: float


def spread_stats(scores: Sequence[float], *, ddof: int = 1) -> SpreadStats:
    """Mean, standard deviation, min and max of per-template scores [K] (one model, one task)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"need a non-empty [K] vector of finite scores, got {s.shape}")
    return SpreadStats(
        n_templates=int(s.size),
        mean=float(s.mean()),
        std=float(np.std(s, ddof=ddof)) if s.size > ddof else float("nan"),
        min=float(s.min()),
        max=float(s.max()),
    )


@dataclasses.dataclass(frozen=True)
class ObservedGap:
    observed_mean: float  # Mean score of templates seen in instruction tuning.
    unobserved_mean: float  # Mean score of novel templates.
    gap: float  # observed_mean - unobserved_mean (positive: novel wordings hurt).
    drop_rate: float  # gap / observed_mean; NaN when observed_mean == 0.


def observed_gap(scores: Sequence[float], observed: Sequence[bool]) -> ObservedGap:
    """Observed vs unobserved templates: means, gap and performance drop rate.

    The drop rate is PromptBench's performance drop rate, 1 - unobserved /
    observed, with the observed templates' mean as the reference.

    Args:
      scores: [K] per-template scores.
      observed: [K] True for templates seen in instruction tuning.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"need a non-empty [K] score vector, got {s.shape}")
    m = observed_mask(observed, s.size)
    obs, unobs = float(s[m].mean()), float(s[~m].mean())
    return ObservedGap(
        observed_mean=obs,
        unobserved_mean=unobs,
        gap=obs - unobs,
        drop_rate=(obs - unobs) / obs if obs != 0 else float("nan"),
    )


def prediction_consistency(predictions) -> float:
    """Share of examples on which all K templates give the same prediction.

    Args:
      predictions: [K, N] predicted labels (any comparable values).

    Returns:
      A fraction in [0, 1]; 1.0 for a single template.
    """
    p = np.asarray(predictions, dtype=object)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"need a non-empty [templates, examples] array, got {p.shape}")
    return float(np.mean(np.all(p == p[0], axis=0)))


def fleiss_kappa(predictions) -> float:
    """Fleiss' kappa of the templates' predictions (templates as raters).

    Args:
      predictions: [K, N] predicted labels, K >= 2.

    Returns:
      kappa = (P_bar - P_e) / (1 - P_e). NaN when every prediction is the same
      label (P_e = 1: agreement by chance is already perfect, kappa undefined;
      statsmodels returns NaN as well).
    """
    p = np.asarray(predictions, dtype=object)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"need a non-empty [templates, examples] array, got {p.shape}")
    k, n = p.shape
    if k < 2:
        raise ValueError("Fleiss' kappa needs at least two templates (raters)")
    _, codes = np.unique(p.astype(str), return_inverse=True)
    table = np.zeros((n, codes.max() + 1))  # [N, categories] rater counts.
    np.add.at(table, (np.tile(np.arange(n), k), codes.ravel()), 1)
    p_bar = np.mean((np.sum(table**2, axis=1) - k) / (k * (k - 1)))
    p_e = np.sum((table.sum(axis=0) / (n * k)) ** 2)
    return float((p_bar - p_e) / (1 - p_e)) if p_e < 1 else float("nan")


def kendall_tau_matrix(scores) -> np.ndarray:
    """Kendall's tau-b between templates' rankings of models.

    Args:
      scores: [K, M] score of model m under template k, M >= 2.

    Returns:
      [K, K] tau-b (scipy.stats.kendalltau's default variant); NaN in rows and
      columns of templates under which all models tie.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] < 2:
        raise ValueError(f"need [templates, models>=2] scores, got {s.shape}")
    a, b = np.triu_indices(s.shape[1], k=1)
    signs = np.sign(s[:, a] - s[:, b])  # [K, M(M-1)/2] pairwise orderings.
    norms = np.sqrt(np.sum(signs**2, axis=1))  # sqrt(untied pairs) per template.
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (signs @ signs.T) / np.outer(norms, norms)
    tau[(norms == 0)[:, None] | (norms == 0)[None, :]] = np.nan
    return tau


def mean_kendall_tau(scores) -> float:
    """Mean of `kendall_tau_matrix` over template pairs i < j, NaN pairs left out.

    Returns NaN when no pair is defined (one template, or all rankings tied).
    """
    tau = kendall_tau_matrix(scores)
    upper = tau[np.triu_indices(tau.shape[0], k=1)]
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if upper.size else float("nan")


# ----------------------------------------------------------------------------
# Representation analysis
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RepresentationDrift:
    cosine_distance: np.ndarray  # [K] 1 - cos(template, observed centroid).
    euclidean_distance: np.ndarray  # [K] ||template - observed centroid||.
    drop: np.ndarray  # [K] observed mean score - template score.
    correlated: np.ndarray  # [K] bool, templates entering the correlations.
    pearson: dict[str, tuple[float, float]]  # 'cosine'/'euclidean' -> (r, p) with drop.
    spearman: dict[str, tuple[float, float]]  # Likewise, rank correlation.


def representation_drift(
    pooled, scores: Sequence[float], observed: Sequence[bool], *, over: str = "unobserved"
) -> RepresentationDrift:
    """Distance of each template's representation from the observed templates'
    centroid, and its correlation with the template's score drop.

    Args:
      pooled: [K, D] one pooled encoder representation per template (e.g. the
        mean over examples of the mean-pooled encoder states).
      scores: [K] per-template scores.
      observed: [K] mask of observed templates; their mean vector is the centroid.
      over: 'unobserved' (the novel templates, the seed study's analysis) or
        'all' templates enter the correlations.

    Returns:
      Distances and drops for all K templates. Correlations are NaN when fewer
      than 3 templates enter them or when either side is constant.
    """
    x = np.asarray(pooled, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != s.shape[0] or x.shape[1] == 0 or s.ndim != 1:
        raise ValueError(f"need pooled [K, D] and scores [K], got {x.shape} and {s.shape}")
    m = observed_mask(observed, s.size)
    if over not in ("unobserved", "all"):
        raise ValueError(f"over must be 'unobserved' or 'all', got {over!r}")
    centroid = x[m].mean(axis=0)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(centroid)
    if np.any(norms == 0):
        raise ValueError("a representation (or the observed centroid) is the zero vector")
    distances = {
        "cosine": 1.0 - (x @ centroid) / norms,
        "euclidean": np.linalg.norm(x - centroid, axis=1),
    }
    drop = s[m].mean() - s
    use = ~m if over == "unobserved" else np.ones_like(m)
    pearson, spearman = {}, {}
    for name, dist in distances.items():
        a, b = dist[use], drop[use]
        if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
            pearson[name] = spearman[name] = (float("nan"), float("nan"))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            pr, sr = stats.pearsonr(a, b), stats.spearmanr(a, b)
        pearson[name] = (float(pr.statistic), float(pr.pvalue))
        spearman[name] = (float(sr.statistic), float(sr.pvalue))
    return RepresentationDrift(
        cosine_distance=distances["cosine"],
        euclidean_distance=distances["euclidean"],
        drop=drop,
        correlated=use,
        pearson=pearson,
        spearman=spearman,
    )
