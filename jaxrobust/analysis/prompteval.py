"""Estimating the distribution of accuracy over templates from a fraction of the grid.

In the spirit of PromptEval (Polo et al. 2024): correctness of template t on
example e is modelled as

    P(correct) = sigmoid(mu + a_t + x_t . w + b_e)

with a template effect ``a_t``, optional template covariates ``x_t`` (e.g.
the answer words or which format rules a variant applied, `template_covariates`)
and an example effect
``b_e`` (its difficulty), each with a zero-mean Gaussian prior (an L2 penalty;
``mu`` is free). The maximum a posteriori fit on the sampled cells
(`jaxrobust.evaluation.design`) and the Laplace approximation of the
posterior around it predict every cell left out: under one draw of the
parameters a template's accuracy is its observed correct cells plus the
probabilities of the rest, over all examples. `estimate` returns per-template
accuracy, the mean across templates, the 5/25/50/75/95th percentiles and the
spread (95th - 5th), each the posterior mean of that statistic over parameter
draws (its Bayes estimate under squared error; ``point="map"`` gives the
plug-in of the MAP parameters instead, which is biased: the sigmoid of the
most probable logit is not the expected probability), with a 90% interval from
draws of the parameters and of the unobserved cells (Bernoulli). `naive` is the
baseline at the same budget: each template's plain average of its sampled cells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

QUANTILES = (5, 25, 50, 75, 95)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What an estimator says about the grid (accuracies as fractions).

    Attributes:
      per_template: estimated accuracy of each template [T].
      summary: 'mean', 'p5', 'p25', 'p50', 'p75', 'p95', 'spread' (p95 - p5); for
        'prompteval' each the posterior mean of that statistic, so a percentile need
        not equal the percentile of `per_template` (the posterior means).
      interval: the same keys -> (low, high), a 90% interval ({} for `naive`).
      per_template_interval: [T, 2] 90% intervals (None for `naive`).
      budget: share of the grid observed.
      n_observed: cells observed.
      method: 'prompteval' or 'naive'.
    """

    per_template: np.ndarray
    summary: dict[str, float]
    interval: dict[str, tuple[float, float]]
    per_template_interval: np.ndarray | None
    budget: float
    n_observed: int
    method: str


def summarize(per_template: np.ndarray) -> dict[str, float]:
    """Mean, percentiles (numpy's linear interpolation) and spread over templates."""
    acc = np.asarray(per_template, float)
    out = {"mean": float(acc.mean())}
    for q in QUANTILES:
        out[f"p{q}"] = float(np.percentile(acc, q))
    out["spread"] = out["p95"] - out["p5"]
    return out


def _summaries(per_template: np.ndarray) -> dict[str, np.ndarray]:
    """`summarize` over a batch of draws [S, T]."""
    out = {"mean": per_template.mean(axis=1)}
    for q in QUANTILES:
        out[f"p{q}"] = np.percentile(per_template, q, axis=1)
    out["spread"] = out["p95"] - out["p5"]
    return out


def _check(mask: np.ndarray, correct: np.ndarray) -> None:
    if mask.shape != correct.shape or mask.ndim != 2:
        raise ValueError(
            f"mask {mask.shape} and correct {correct.shape}: expected equal [templates, examples]"
        )
    if not mask.any(axis=1).all():
        raise ValueError(f"templates {np.flatnonzero(~mask.any(axis=1))[:5]} have no cell observed")


def naive(mask: np.ndarray, correct: np.ndarray) -> Estimate:
    """Each template's accuracy = the plain average of its sampled cells."""
    mask, correct = np.asarray(mask, bool), np.asarray(correct, bool)
    _check(mask, correct)
    per = (correct & mask).sum(axis=1) / mask.sum(axis=1)
    return Estimate(per, summarize(per), {}, None, mask.mean(), int(mask.sum()), "naive")


def template_covariates(
    parents: Sequence[str],
    answer_words: Sequence[str],
    rules: Sequence[Sequence[str]] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Template covariates known before any evaluation, one 0/1 column each:

    * ``answer_words=<w>``: the words the model must answer with when they are the
      same on every example (``A|B|C|D``, ``1|2|3|4``; '' for option texts): the
      format change that moves accuracy most (see the built-in study's report);
    * ``parent=<id>``: the format description a variant comes from, or
      ``bank_template`` for a bank's own templates;
    * with `rules`, one column per grammar rule value a variant applied
      (``casing="upper"``, ...).

    Returns (matrix [T, C], column names).
    """
    cols: list[tuple[str, ...]] = []
    for t, (p, w) in enumerate(zip(parents, answer_words, strict=True)):
        c = [f"parent={p}" if p else "bank_template"]
        if w:
            c.append(f"answer_words={w}")
        if rules is not None:
            c += list(rules[t])
        cols.append(tuple(c))
    names = sorted({c for cs in cols for c in cs})
    index = {n: i for i, n in enumerate(names)}
    x = np.zeros((len(cols), len(names)))
    for t, cs in enumerate(cols):
        x[t, [index[c] for c in cs]] = 1.0
    return x, names


def gold_position(gold_index: Sequence[int]) -> np.ndarray:
    """Example covariates: the gold option's position, one-hot [E, positions]."""
    gold = np.asarray(gold_index, int)
    return (gold[:, None] == np.arange(gold.max() + 1)[None]).astype(float)


@dataclasses.dataclass(frozen=True)
class Fit:
    """The MAP parameters and the Laplace covariance's Cholesky factor."""

    mu: float
    a: np.ndarray  # [T] template effects
    w: np.ndarray  # [C] covariate weights
    b: np.ndarray  # [E] example effects
    v: np.ndarray  # [C, D] template covariate x example covariate weights
    chol: np.ndarray  # lower Cholesky factor of the posterior covariance, [P, P]
    evidence: float  # Laplace approximation of the log marginal likelihood
    priors: dict  # the prior scales used


def fit(
    mask: np.ndarray,
    correct: np.ndarray,
    covariates: np.ndarray | None = None,
    example_covariates: np.ndarray | None = None,
    interacting: Sequence[int] | None = None,
    *,
    template_sd: float = 1.0,
    example_sd: float = 1.0,
    covariate_sd: float = 1.0,
) -> Fit:
    """The MAP fit of the logistic model on the observed cells (Newton's method).

    `example_covariates` [E, D] (e.g. the gold option's position, one-hot) enter
    through their products with the template covariates (those of columns
    `interacting`, default all), ``x_t' V g_e`` (a format that always answers 'A'
    is right exactly where the gold option is first), with the covariates' prior
    scale.
    """
    mask, correct = np.asarray(mask, bool), np.asarray(correct, bool)
    _check(mask, correct)
    n_t, n_e = mask.shape
    x, g = _covariates(covariates, example_covariates, n_t, n_e)
    xi = x if interacting is None else x[:, list(interacting)]
    n_c, n_v = x.shape[1], xi.shape[1] * g.shape[1]
    ti, ei = np.nonzero(mask)
    y = correct[ti, ei].astype(float)
    prec = np.concatenate(
        [[0.0], np.full(n_t, template_sd**-2), np.full(n_c, covariate_sd**-2)]
        + [np.full(n_e, example_sd**-2), np.full(n_v, covariate_sd**-2)]
    )
    # Design matrix of the observed cells: [mu, a_t, x_t, b_e, x_t (x) g_e].
    rows = len(y)
    design = np.zeros((rows, 1 + n_t + n_c + n_e + n_v))
    design[:, 0] = 1.0
    design[np.arange(rows), 1 + n_t + n_c + ei] = 1.0
    design[np.arange(rows), 1 + ti] = 1.0
    design[:, 1 + n_t : 1 + n_t + n_c] = x[ti]
    design[:, 1 + n_t + n_c + n_e :] = (xi[ti][:, :, None] * g[ei][:, None, :]).reshape(rows, n_v)

    def objective(theta):
        z = design @ theta
        return np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(prec * theta**2)

    # Newton's method with backtracking: the objective is strictly convex.
    theta = np.zeros(design.shape[1])
    value = objective(theta)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (p - y) + prec * theta
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(prec)
        hess[0, 0] += 1e-6  # mu's flat prior: keep the Hessian invertible
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while objective(theta - t * step) > value - 1e-4 * t * grad @ step and t > 1e-8:
            t /= 2
        theta = theta - t * step
        new = objective(theta)
        done = value - new < 1e-10 * max(1.0, abs(value))
        value = new
        if done:
            break
    p = 1.0 / (1.0 + np.exp(-(design @ theta)))
    hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(prec)
    hess[0, 0] += 1e-6
    cov = np.linalg.inv(hess)
    chol = np.linalg.cholesky((cov + cov.T) / 2)
    # Laplace approximation of the log marginal likelihood (mu's flat prior dropped).
    _, logdet_h = np.linalg.slogdet(hess[1:, 1:])
    evidence = -value + 0.5 * np.sum(np.log(prec[1:])) - 0.5 * logdet_h
    return Fit(
        float(theta[0]),
        theta[1 : 1 + n_t],
        theta[1 + n_t : 1 + n_t + n_c],
        theta[1 + n_t + n_c : 1 + n_t + n_c + n_e],
        theta[1 + n_t + n_c + n_e :].reshape(xi.shape[1], g.shape[1]),
        chol,
        float(evidence),
        dict(template_sd=template_sd, example_sd=example_sd, covariate_sd=covariate_sd),
    )


# Prior scales tried by `empirical_priors` (logit units).
PRIOR_GRID = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def empirical_priors(
    mask: np.ndarray,
    correct: np.ndarray,
    covariates: np.ndarray | None = None,
    example_covariates: np.ndarray | None = None,
    interacting: Sequence[int] | None = None,
) -> dict[str, float]:
    """Empirical Bayes: the prior scales (from `PRIOR_GRID`) of highest Laplace evidence
    on the observed cells, by coordinate ascent (two sweeps over template, example and
    covariate scale, starting from 1); no unobserved cell is read."""
    names = ["template_sd", "example_sd"] + (["covariate_sd"] if covariates is not None else [])
    current = {n: 1.0 for n in names}
    cache: dict[tuple, float] = {}

    def evidence(priors):
        key = tuple(priors[n] for n in names)
        if key not in cache:
            f = fit(mask, correct, covariates, example_covariates, interacting, **priors)
            cache[key] = f.evidence
        return cache[key]

    for _ in range(2):
        for n in names:
            current[n] = max(PRIOR_GRID, key=lambda v, n=n: evidence({**current, n: v}))
    return current


def _covariates(covariates, example_covariates, n_t, n_e):
    x = np.zeros((n_t, 0)) if covariates is None else np.asarray(covariates, float)
    g = np.zeros((n_e, 0)) if example_covariates is None else np.asarray(example_covariates, float)
    if x.shape[0] != n_t or g.shape[0] != n_e:
        raise ValueError(
            f"covariates {x.shape} / example covariates {g.shape}: expected {n_t} template "
            f"rows and {n_e} example rows"
        )
    return x, g


def _probabilities(theta: np.ndarray, x: np.ndarray, xi: np.ndarray, g: np.ndarray) -> np.ndarray:
    """P(correct) of every cell for one parameter vector theta [P] -> [T, E]."""
    n_t, n_c, n_e = x.shape[0], x.shape[1], g.shape[0]
    mu = theta[0]
    a = theta[1 : 1 + n_t, None]
    xw = (x @ theta[1 + n_t : 1 + n_t + n_c])[:, None]
    b = theta[None, 1 + n_t + n_c : 1 + n_t + n_c + n_e]
    v = theta[1 + n_t + n_c + n_e :].reshape(xi.shape[1], g.shape[1])
    return 1.0 / (1.0 + np.exp(-(mu + a + xw + b + xi @ v @ g.T)))


def estimate(
    mask: np.ndarray,
    correct: np.ndarray,
    covariates: np.ndarray | None = None,
    example_covariates: np.ndarray | None = None,
    interacting: Sequence[int] | None = None,
    *,
    draws: int = 200,
    seed: int = 0,
    point: str = "posterior",
    **priors: float,
) -> Estimate:
    """Per-template accuracy and its distribution across templates from the observed cells.

    Args:
      mask: bool [T, E], the cells observed (`design.sample_cells`).
      correct: bool [T, E]; only the cells under `mask` are read.
      covariates: optional [T, C] template covariates (`template_covariates`).
      example_covariates: optional [E, D] example covariates (`gold_position`),
        which act through their products with `covariates` (columns
        `interacting`, default all).
      draws: posterior draws for the point estimates and the intervals.
      seed: seeds the draws.
      point: 'posterior' (each statistic's posterior mean over the parameter draws,
        from the cells' expected probabilities) or 'map' (the statistics of the
        MAP fit's plug-in probabilities; they do not depend on the draws).
      priors: ``template_sd``, ``example_sd``, ``covariate_sd`` for `fit`; none
        given: `empirical_priors` chooses the first two.
    """
    mask, correct = np.asarray(mask, bool), np.asarray(correct, bool)
    if point not in ("posterior", "map"):
        raise ValueError(f"estimate point {point!r}: expected 'posterior' or 'map'")
    if not priors:
        priors = empirical_priors(mask, correct, covariates, example_covariates, interacting)
    f = fit(mask, correct, covariates, example_covariates, interacting, **priors)
    n_t, n_e = mask.shape
    x, g = _covariates(covariates, example_covariates, n_t, n_e)
    xi = x if interacting is None else x[:, list(interacting)]
    theta = np.concatenate([[f.mu], f.a, f.w, f.b, f.v.ravel()])
    observed = (correct & mask).sum(axis=1)
    p_hat = _probabilities(theta, x, xi, g)
    per = (observed + np.where(mask, 0.0, p_hat).sum(axis=1)) / n_e
    rng = np.random.default_rng(seed)
    samples = theta + rng.standard_normal((draws, theta.size)) @ f.chol.T
    per_draws = np.empty((draws, n_t))
    expected = np.empty((draws, n_t))
    for s in range(draws):
        p = _probabilities(samples[s], x, xi, g)
        expected[s] = (observed + np.where(mask, 0.0, p).sum(axis=1)) / n_e
        cells = rng.random(p.shape) < p
        per_draws[s] = (observed + (cells & ~mask).sum(axis=1)) / n_e
    if point == "posterior":
        per = expected.mean(axis=0)
        summary = {k: float(v.mean()) for k, v in _summaries(expected).items()}
    else:
        summary = summarize(per)
    sums = _summaries(per_draws)
    interval = {
        k: (float(np.percentile(v, 5)), float(np.percentile(v, 95))) for k, v in sums.items()
    }
    per_interval = np.percentile(per_draws, [5, 95], axis=0).T
    return Estimate(
        per, summary, interval, per_interval, mask.mean(), int(mask.sum()), "prompteval"
    )
