"""Metrics for instruction robustness: accuracy, relation-extraction F1,
statistics over instruction templates, and the representation-distance
analysis. Pure numpy/scipy; the SemEval-2010 Task 8 official scorer is in
`semeval_scorer.py`.

Shapes: K templates, N examples, M models, D representation width. A
correctness matrix `correct[K, N]` holds 1 where template k's prediction on
example n is right (bool or 0/1; floats in [0, 1] are accepted where noted).
Every template is evaluated on the same N examples.

Conventions, chosen once for the whole module:
- Scores are fractions in [0, 1] (the SemEval scorer alone uses percent).
- Empty inputs raise `ValueError`; NaN is returned only where a docstring says
  so (a statistic that is undefined for the given data, e.g. a standard
  deviation of one template).
- Standard deviations over templates use ddof=1 (templates are a sample of
  possible wordings); pass `ddof=0` for the population value.
- Randomness comes from `np.random.default_rng(seed)`; equal seeds give
  identical results.
"""

from __future__ import annotations

import dataclasses
import itertools
import string
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

INVALID = "invalid"  # The label for an answer that maps to no label.

# The negative ("no relation") label of each relation-extraction data set.
RE_NEGATIVE_LABELS: dict[str, str | None] = {
    "tacred": "no_relation",
    "tacrev": "no_relation",
    "retacred": "no_relation",
    "semeval2010_task8": "Other",
    "fewrel": None,
}


def _matrix(correct, name: str = "correct") -> np.ndarray:
    """Validates a [K, N] correctness matrix and returns it as float64."""
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [templates, examples] matrix, got {c.shape}")
    if not np.all((c >= 0) & (c <= 1)):
        raise ValueError(f"{name} must hold values in [0, 1]")
    return c


def _mask(observed, k: int) -> np.ndarray:
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
# Accuracy
# ----------------------------------------------------------------------------


def accuracy(predictions: Sequence, targets: Sequence) -> float:
    """Share of predictions equal to their target.

    Args:
      predictions: [N] predicted labels.
      targets: [N] gold labels.
    """
    p, t = np.asarray(predictions, dtype=object), np.asarray(targets, dtype=object)
    if p.shape != t.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"need two non-empty [N] sequences, got {p.shape} and {t.shape}")
    return float(np.mean(p == t))


@dataclasses.dataclass(frozen=True)
class AccuracySummary:
    per_task: dict[str, float]  # Accuracy of each task.
    n_examples: dict[str, int]  # Examples per task.
    macro: float  # Mean of the per-task accuracies (each task weighs the same).
    pooled: float  # Correct over all examples (each example weighs the same).


def task_accuracies(correct_by_task: Mapping[str, Sequence]) -> AccuracySummary:
    """Macro and pooled accuracy over tasks (MMLU is reported both ways).

    Args:
      correct_by_task: task name -> [N_task] correctness (bool or 0/1).
    """
    if not correct_by_task:
        raise ValueError("no tasks given")
    per_task, sizes, total = {}, {}, 0.0
    for task, c in correct_by_task.items():
        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 1 or c.size == 0:
            raise ValueError(
                f"task {task!r}: need a non-empty [N] correctness vector, got {c.shape}"
            )
        per_task[task], sizes[task] = float(c.mean()), int(c.size)
        total += c.sum()
    return AccuracySummary(
        per_task=per_task,
        n_examples=sizes,
        macro=float(np.mean(list(per_task.values()))),
        pooled=float(total / sum(sizes.values())),
    )


# ----------------------------------------------------------------------------
# Relation extraction
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int
    precision: float  # tp / (tp + fp); 0 when tp + fp = 0.
    recall: float  # tp / (tp + fn); 0 when tp + fn = 0.
    f1: float  # 2PR / (P + R); 0 when P + R = 0.


def re_micro_f1(
    predictions: Sequence[str],
    targets: Sequence[str],
    *,
    positive_labels: Iterable[str],
    negative_label: str | None,
    invalid_label: str = INVALID,
) -> PRF:
    """Micro P/R/F1 over the positive relations, invalid answers counted as errors.

    Per example with gold g and prediction p:
      - p == g, g positive: one TP.
      - g positive, p != g: one FN; and one FP too when p is positive or invalid.
      - g negative, p positive or invalid: one FP.
      - g negative, p negative: nothing.
    So an invalid answer is a false positive wherever it appears, exactly like a
    wrong relation; this equals sklearn's micro average with
    `labels=positive_labels + [invalid_label]`, and with no invalid answers the
    usual TACRED score (`labels=positive_labels`). With `negative_label=None`
    (every example has a relation) and no invalid answers, P = R = accuracy.

    Args:
      predictions: [N] predicted labels, each positive, negative or invalid;
        map free-form answers (and multiple-choice letters, `choices_to_labels`)
        to these first.
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
    tp = fp = fn = 0
    for pred, gold in zip(p, t, strict=True):
        if pred == gold and gold in positive:
            tp += 1
            continue
        if gold in positive:
            fn += 1
        if pred != gold and pred != negative_label:
            fp += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(tp, fp, fn, precision, recall, f1)


def choices_to_labels(
    letters: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    alphabet: str = string.ascii_uppercase,
    invalid_label: str = INVALID,
) -> list[str]:
    """Maps multiple-choice answers back to relation labels.

    Args:
      letters: [N] answered letters (surrounding spaces, case and a trailing
        '.' or ')' are ignored).
      options: [N] the labels offered, in letter order, for each example.
      alphabet: the option letters, in order.

    Returns:
      [N] labels; `invalid_label` where the answer is no offered letter.
    """
    if len(letters) != len(options):
        raise ValueError(f"{len(letters)} answers but {len(options)} option lists")
    out = []
    for answer, offered in zip(letters, options, strict=True):
        a = answer.strip().rstrip(".)").upper()
        i = alphabet.find(a) if len(a) == 1 else -1
        out.append(offered[i] if 0 <= i < len(offered) else invalid_label)
    return out


# ----------------------------------------------------------------------------
# Robustness over templates
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpreadStats:
    n_templates: int
    mean: float
    std: float  # With `ddof`; NaN when n_templates <= ddof.
    ddof: int
    min: float
    max: float
    spread: float  # max - min.
    quantiles: dict[float, float]  # q -> np.quantile(scores, q) (linear interpolation).


def spread_stats(
    scores: Sequence[float], *, ddof: int = 1, quantiles: Sequence[float] = (0.25, 0.5, 0.75)
) -> SpreadStats:
    """Summary of per-template scores [K] (one model, one task)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"need a non-empty [K] vector of finite scores, got {s.shape}")
    std = float(np.std(s, ddof=ddof)) if s.size > ddof else float("nan")
    return SpreadStats(
        n_templates=int(s.size),
        mean=float(s.mean()),
        std=std,
        ddof=ddof,
        min=float(s.min()),
        max=float(s.max()),
        spread=float(s.max() - s.min()),
        quantiles={float(q): float(np.quantile(s, q)) for q in quantiles},
    )


@dataclasses.dataclass(frozen=True)
class ObservedGap:
    observed_mean: float  # Mean score of templates seen in instruction tuning.
    unobserved_mean: float  # Mean score of novel templates.
    gap: float  # observed_mean - unobserved_mean (positive: novel wordings hurt).
    drop_rate: float  # gap / observed_mean; NaN when observed_mean == 0.
    template_drop_rate: np.ndarray  # [K] (observed_mean - score_k) / observed_mean; NaN likewise.


def observed_gap(scores: Sequence[float], observed: Sequence[bool]) -> ObservedGap:
    """Observed vs unobserved templates: means, gap and performance drop rate.

    The drop rate is PromptBench's performance drop rate, 1 - unobserved /
    observed, with the observed templates' mean as the reference; per template
    it is the relative drop of that template from the observed mean (negative
    for templates that beat it).

    Args:
      scores: [K] per-template scores.
      observed: [K] True for templates seen in instruction tuning.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"need a non-empty [K] score vector, got {s.shape}")
    m = _mask(observed, s.size)
    obs, unobs = float(s[m].mean()), float(s[~m].mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        per_template = (obs - s) / obs if obs != 0 else np.full_like(s, np.nan)
    return ObservedGap(
        observed_mean=obs,
        unobserved_mean=unobs,
        gap=obs - unobs,
        drop_rate=(obs - unobs) / obs if obs != 0 else float("nan"),
        template_drop_rate=per_template,
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


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
    estimate: float  # The statistic on the data as given.
    low: float
    high: float
    distribution: np.ndarray  # [B] the statistic on each resample.


def draw_counts(draws: np.ndarray, n: int, chunk: int = 256):
    """How often each example was drawn, in chunks of resamples.

    Args:
      draws: `[B, N]` example indices of B bootstrap resamples.
      n: the number of examples N.

    Yields:
      (start, counts `[b, N]`) for resamples `start:start + b`; chunks bound the
      memory of the count matrix.
    """
    for start in range(0, len(draws), chunk):
        d = draws[start : start + chunk]
        offsets = (np.arange(len(d)) * n)[:, None]
        yield start, np.bincount((d + offsets).ravel(), minlength=len(d) * n).reshape(len(d), n)


def two_level_bootstrap(
    correct,
    *,
    observed: Sequence[bool] | None = None,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapCI]:
    """Percentile bootstrap CIs resampling both examples and templates.

    Resample b draws N example indices and K template indices, each with
    replacement (templates within the observed and unobserved groups
    separately when `observed` is given), and recomputes the mean score:
    mean over the drawn templates of each template's mean over the drawn
    examples. The example draws come first, as one `rng.integers(0, N, (B, N))`
    call, which is the call scipy.stats.bootstrap makes; so with one template
    (every template draw is 0) the distribution and interval equal
    `scipy.stats.bootstrap((correct[0],), np.mean, n_resamples=B,
    method='percentile', rng=np.random.default_rng(seed))` exactly for 0/1 data
    (sums of 0/1 values are exact in any order; for fractional data they agree
    to rounding). Memory: B x N int64 for the draws.

    Args:
      correct: [K, N] correctness (0/1, or scores in [0, 1]).
      observed: optional [K] mask of observed templates.
      n_resamples: B.
      confidence_level: the interval is the (1-c)/2 and 1-(1-c)/2 quantiles.
      seed: for `np.random.default_rng`.

    Returns:
      {'mean': ...}, plus 'observed', 'unobserved' and 'gap' (observed -
      unobserved) when `observed` is given.
    """
    c = _matrix(correct)
    k, n = c.shape
    if n_resamples < 1 or not 0 < confidence_level < 1:
        raise ValueError("need n_resamples >= 1 and 0 < confidence_level < 1")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (n_resamples, n))  # [B, N] example draws.
    acc = np.empty((n_resamples, k))  # [B, K] each template's mean over the drawn examples.
    for start, counts in draw_counts(draws, n):
        acc[start : start + len(counts)] = (counts @ c.T) / n

    def resample_templates(columns: np.ndarray) -> np.ndarray:
        picks = rng.integers(0, columns.size, (n_resamples, columns.size))
        return np.take_along_axis(acc[:, columns], picks, axis=1)  # [B, K_group]

    groups = {"mean": np.arange(k)}
    if observed is not None:
        m = _mask(observed, k)
        groups = {"observed": np.flatnonzero(m), "unobserved": np.flatnonzero(~m)}
    drawn = {name: resample_templates(cols) for name, cols in groups.items()}
    dists = {name: d.mean(axis=1) for name, d in drawn.items()}
    points = {name: float(c[cols].mean(axis=1).mean()) for name, cols in groups.items()}
    if observed is not None:
        dists["mean"] = np.concatenate(list(drawn.values()), axis=1).mean(axis=1)
        dists["gap"] = dists["observed"] - dists["unobserved"]
        points["mean"] = float(c.mean(axis=1).mean())
        points["gap"] = points["observed"] - points["unobserved"]
    alpha = (1 - confidence_level) / 2
    out = {}
    for name, dist in dists.items():
        low, high = stats.quantile(dist, np.asarray([alpha, 1 - alpha]))
        out[name] = BootstrapCI(points[name], float(low), float(high), dist)
    return out


@dataclasses.dataclass(frozen=True)
class PairedTest:
    mean_difference: float  # Mean over examples of (observed - unobserved) mean correctness.
    p_value: float  # Two-sided.
    n_examples: int
    exact: bool  # True: all sign patterns enumerated; False: Monte Carlo.


def paired_permutation_test(
    correct, observed: Sequence[bool], *, n_resamples: int = 10000, seed: int = 0
) -> PairedTest:
    """Paired sign-flip permutation test, observed vs unobserved templates.

    Per example n, d_n = (mean correctness over observed templates) - (mean
    over unobserved templates). Under the null the sign of each d_n is a fair
    coin; the statistic is mean(d), two-sided. When 2^(nonzero d_n) <=
    n_resamples every sign pattern is enumerated and p = #{|T*| >= |T|} / 2^n
    (equal to scipy.stats.permutation_test with one sample and
    `permutation_type='samples'`); otherwise p = (1 + #{|T*| >= |T|}) / (1 + B)
    over B seeded random sign patterns, which is never 0.

    Args:
      correct: [K, N] correctness.
      observed: [K] mask of observed templates (both groups non-empty).
    """
    c = _matrix(correct)
    m = _mask(observed, c.shape[0])
    n_o, n_u = int(m.sum()), int((~m).sum())
    # Scaled by n_o * n_u: integers for 0/1 data, so the comparisons below are exact.
    d = n_u * c[m].sum(axis=0) - n_o * c[~m].sum(axis=0)  # [N]
    mean_difference = float(d.mean() / (n_o * n_u))
    d = d[d != 0]  # A zero keeps its value under either sign.
    t_obs = abs(d.sum())
    tol = 1e-12 * np.abs(d).sum()
    if d.size == 0:
        return PairedTest(mean_difference, 1.0, c.shape[1], True)
    if 2**d.size <= n_resamples:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        hits = np.sum(np.abs(signs @ d) >= t_obs - tol)
        return PairedTest(mean_difference, float(hits / len(signs)), c.shape[1], True)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, 256):
        signs = rng.integers(0, 2, (min(256, n_resamples - start), d.size)) * 2.0 - 1.0
        hits += int(np.sum(np.abs(signs @ d) >= t_obs - tol))
    return PairedTest(mean_difference, (1 + hits) / (1 + n_resamples), c.shape[1], False)


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
    m = _mask(observed, s.size)
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
