"""The statistics core: one two-level bootstrap and one paired permutation test.

Every interval in the report and in the built-in study comes from `bootstrap`,
every p-value from `paired_permutation_test`. Pure numpy/scipy.

Shapes: K templates, N examples, B resamples. A component matrix `[K, N]`
holds one per-example quantity of each template (correctness; or true
positives, false positives, false negatives); every template is evaluated on
the same N examples.

The bootstrap answers "how much would the score move with other examples and
other wordings of the instruction": resample b draws N example indices with
replacement (one draw shared by every template), computes each template's
statistic on the drawn examples, then draws templates with replacement within
each stratum (a task) and group (observed / unobserved), and averages: a
group's score is the mean over strata of the mean over the stratum's drawn
templates. Strata keep task difficulty out of the gap (a resample must not
let four easy-task templates stand for "observed").

One quantile definition everywhere: the percentile interval takes
`scipy.stats.quantile`'s default (linear interpolation between order
statistics, Hyndman and Fan type 7), the one `scipy.stats.bootstrap` uses. So
with one template the interval equals `scipy.stats.bootstrap(...,
method='percentile')` on the same seed exactly (tested).

Randomness comes from `np.random.default_rng(seed)`; equal seeds give
identical results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from jaxrobust.analysis import metrics


@dataclasses.dataclass(frozen=True)
class Statistic:
    """A per-template statistic computed from sums of per-example components.

    `of_sums(n, *sums)` receives each component summed over the N (drawn)
    examples, arrays `[..., K]`, and returns the statistic `[..., K]`. Sums let
    a resample be one matrix product per component: a resample that draws
    example n c_n times weighs it by c_n.
    """

    name: str
    n_components: int
    of_sums: Callable[..., np.ndarray]


MEAN = Statistic("mean", 1, lambda n, total: total / n)  # Accuracy from correctness.
MICRO_F1 = Statistic(  # Relation-extraction micro-F1 from (tp, fp, fn).
    "micro_f1", 3, lambda n, tp, fp, fn: metrics.f1_from_counts(tp, fp, fn)
)


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


def percentile_interval(distribution: np.ndarray, confidence_level: float) -> tuple[float, float]:
    """The (1-c)/2 and 1-(1-c)/2 quantiles of a bootstrap distribution (the one definition)."""
    alpha = (1 - confidence_level) / 2
    low, high = stats.quantile(np.asarray(distribution), np.asarray([alpha, 1 - alpha]))
    return float(low), float(high)


def _components(values, statistic: Statistic) -> list[np.ndarray]:
    comps = [values] if statistic.n_components == 1 and not isinstance(values, tuple) else values
    comps = [np.asarray(c, np.float64) for c in comps]
    if len(comps) != statistic.n_components:
        raise ValueError(
            f"statistic {statistic.name!r} needs {statistic.n_components} component "
            f"matrices, got {len(comps)}"
        )
    shape = comps[0].shape
    if len(shape) != 2 or 0 in shape or any(c.shape != shape for c in comps):
        shapes = [c.shape for c in comps]
        raise ValueError(f"need non-empty [templates, examples] matrices of one shape: {shapes}")
    if not all(np.all(np.isfinite(c)) for c in comps):
        raise ValueError("component matrices must be finite")
    return comps


def bootstrap(
    values: np.ndarray | tuple[np.ndarray, ...],
    *,
    statistic: Statistic = MEAN,
    strata: Sequence | None = None,
    observed: Sequence[bool] | None = None,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapCI]:
    """Two-level percentile bootstrap: examples, then templates within stratum and group.

    Draw order (fixed, so results are reproducible from the seed): the example
    draws first, as one `rng.integers(0, N, (B, N))` call (the call
    `scipy.stats.bootstrap` makes), then for each group in order ('mean'; or
    'observed', 'unobserved') and each stratum in order of first appearance,
    one `rng.integers(0, K_gs, (B, K_gs))` call for that cell's K_gs templates.
    Memory: B x N int64 for the draws.

    Args:
      values: `[K, N]` for a one-component statistic (e.g. correctness, 0/1 or
        scores in [0, 1]), else a tuple of `statistic.n_components` such
        matrices (MICRO_F1: tp, fp, fn).
      statistic: how a template's score follows from its examples' sums.
      strata: optional `[K]` stratum (task) of each template; None: one stratum.
      observed: optional `[K]` boolean mask splitting the templates into
        'observed' and 'unobserved' (both non-empty).
      n_resamples: B.
      confidence_level: c; the interval is `percentile_interval`'s.
      seed: for `np.random.default_rng`.

    Returns:
      {'mean': ...} (every template), plus 'observed', 'unobserved' and 'gap'
      (observed - unobserved) when `observed` is given. Point estimates are the
      same means over strata of means over templates, on the data as given.
    """
    comps = _components(values, statistic)
    k, n = comps[0].shape
    if n_resamples < 1 or not 0 < confidence_level < 1:
        raise ValueError("need n_resamples >= 1 and 0 < confidence_level < 1")
    strata = np.zeros(k, int) if strata is None else np.asarray(strata)
    if strata.shape != (k,):
        raise ValueError(f"strata must have shape ({k},), got {strata.shape}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (n_resamples, n))  # [B, N] example draws.
    per_template = np.empty((n_resamples, k))  # [B, K] each template's statistic on the draw.
    for start, counts in draw_counts(draws, n):
        sums = [counts @ c.T for c in comps]
        per_template[start : start + len(counts)] = statistic.of_sums(n, *sums)
    point = np.asarray(statistic.of_sums(n, *(c.sum(axis=1) for c in comps)))  # [K]

    groups = {"mean": np.ones(k, bool)}
    if observed is not None:
        m = metrics.observed_mask(observed, k)
        groups = {"observed": m, "unobserved": ~m}
    order = list(dict.fromkeys(strata.tolist()))
    drawn: dict[str, dict] = {g: {} for g in groups}  # group -> stratum -> [B, K_gs]
    for g, member in groups.items():
        for s in order:
            cols = np.flatnonzero(member & (strata == s))
            if cols.size:
                picks = rng.integers(0, cols.size, (n_resamples, cols.size))
                drawn[g][s] = (cols, np.take_along_axis(per_template[:, cols], picks, axis=1))
    dists = {
        g: np.mean([d.mean(axis=1) for _, d in cells.values()], axis=0)
        for g, cells in drawn.items()
    }
    points = {
        g: float(np.mean([point[cols].mean() for cols, _ in cells.values()]))
        for g, cells in drawn.items()
    }
    if observed is not None:
        by_stratum = [[drawn[g][s][1] for g in groups if s in drawn[g]] for s in order]
        dists["mean"] = np.mean([np.concatenate(d, axis=1).mean(axis=1) for d in by_stratum], 0)
        points["mean"] = float(np.mean([point[strata == s].mean() for s in order]))
        dists["gap"] = dists["observed"] - dists["unobserved"]
        points["gap"] = points["observed"] - points["unobserved"]
    return {
        name: BootstrapCI(points[name], *percentile_interval(dist, confidence_level), dist)
        for name, dist in dists.items()
    }


@dataclasses.dataclass(frozen=True)
class PairedTest:
    mean_difference: float  # Mean over examples of (observed - unobserved) mean correctness.
    p_value: float  # Two-sided.
    n_examples: int
    exact: bool  # True: all sign patterns enumerated; False: Monte Carlo.


def _total(x: np.ndarray, axis: int) -> np.ndarray:
    return np.sum(x, axis=axis)


def paired_permutation_test(
    correct, observed: Sequence[bool], *, n_resamples: int = 10000, seed: int = 0
) -> PairedTest:
    """Paired sign-flip permutation test, observed vs unobserved templates.

    Per example n, d_n = (mean correctness over observed templates) - (mean
    over unobserved templates). Under the null the sign of each d_n is a fair
    coin; the statistic is sum(d) (equivalently mean(d)), two-sided. This is
    `scipy.stats.permutation_test` with one sample and
    `permutation_type='samples'` on the nonzero d_n (a zero keeps its value
    under either sign): every sign pattern when 2^(nonzero d_n) <= n_resamples
    (p = 2 min(P(T* <= T), P(T* >= T)), which for this symmetric null is
    P(|T*| >= |T|)); otherwise n_resamples seeded random patterns, with
    scipy's +1 correction, so p is never 0.

    Args:
      correct: [K, N] correctness (0/1, or scores in [0, 1]).
      observed: [K] mask of observed templates (both groups non-empty).
    """
    c = np.asarray(correct, np.float64)
    if c.ndim != 2 or 0 in c.shape:
        raise ValueError(f"correct must be a non-empty [templates, examples] matrix, got {c.shape}")
    m = metrics.observed_mask(observed, c.shape[0])
    n_o, n_u = int(m.sum()), int((~m).sum())
    # Scaled by n_o * n_u: integers for 0/1 data, so scipy's comparisons are exact.
    d = n_u * c[m].sum(axis=0) - n_o * c[~m].sum(axis=0)  # [N]
    mean_difference = float(d.mean() / (n_o * n_u))
    d = d[d != 0]
    if d.size < 2:  # Every sign pattern gives |T*| = |T| (scipy needs two values).
        return PairedTest(mean_difference, 1.0, c.shape[1], True)
    res = stats.permutation_test(
        (d,),
        _total,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=256,
        rng=np.random.default_rng(seed),
    )
    return PairedTest(mean_difference, float(res.pvalue), c.shape[1], 2**d.size <= n_resamples)
