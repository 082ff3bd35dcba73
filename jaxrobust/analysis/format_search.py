"""Budgeted search for a task's best and worst format (FormatSpread-style bandit).

Sclar et al. (2023) spend an evaluation budget on sampled formats with
Thompson sampling: each format's accuracy has a Beta posterior (Beta(1, 1)
prior), each step draws one accuracy per format from its posterior and
evaluates one more example with the format whose draw is highest (searching
the best) or lowest (the worst). `search` runs both searches, half the budget
each, and ranks the formats by posterior mean; `uniform` spends the same
budget evenly (round robin) for comparison. An evaluation is a callable
``(format index, draw number) -> correct`` so the same search runs on a live
model or on a grid computed before (`grid_evaluator`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

Evaluate = Callable[[int, int], bool]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a budgeted search found.

    Attributes:
      best: format indices, best first (by posterior mean of the best-search).
      worst: format indices, worst first (of the worst-search).
      pulls: evaluations spent on each format [K] (both searches).
      spent: evaluations spent in all.
      spread: posterior mean of the best found minus that of the worst found.
    """

    best: list[int]
    worst: list[int]
    pulls: np.ndarray
    spent: int
    spread: float


def grid_evaluator(correct: np.ndarray, seed: int) -> Evaluate:
    """Evaluations read from a full grid [K, E]: format k's n-th evaluation is its n-th
    example in a seeded permutation (no example twice until all are used)."""
    correct = np.asarray(correct, bool)
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(correct.shape[1]) for _ in range(correct.shape[0])]

    def evaluate(k: int, n: int) -> bool:
        return bool(correct[k, orders[k][n % correct.shape[1]]])

    return evaluate


def _thompson(evaluate, n_formats, budget, rng, sign, pulls, wins):
    for _ in range(budget):
        theta = rng.beta(1 + wins, 1 + pulls - wins)
        k = int(np.argmax(sign * theta))
        wins[k] += evaluate(k, int(pulls[k]))
        pulls[k] += 1


def search(evaluate: Evaluate, n_formats: int, budget: int, *, seed: int = 0) -> SearchResult:
    """Thompson sampling for the best and the worst format, `budget` evaluations in all.

    Each search first evaluates every format once, then spends the rest of its
    half by Thompson sampling; both searches share one record of outcomes per
    format (a format's n-th evaluation is the same example in both).

    Raises:
      ValueError: the budget does not cover every format once per search.
    """
    if budget < 2 * n_formats:
        raise ValueError(
            f"search budget {budget}: expected at least 2 x {n_formats} formats (one "
            "evaluation of each format per search)"
        )
    rng = np.random.default_rng(seed)
    pulls = np.zeros(n_formats)
    wins = np.zeros(n_formats)
    results = {}
    for sign, half in ((1, budget // 2), (-1, budget - budget // 2)):
        p, w = np.zeros(n_formats), np.zeros(n_formats)
        for k in range(n_formats):
            w[k] += evaluate(k, 0)
            p[k] += 1
        _thompson(evaluate, n_formats, half - n_formats, rng, sign, p, w)
        mean = (1 + w) / (2 + p)
        results[sign] = (np.argsort(-sign * mean, kind="stable"), mean)
        pulls += p
        wins += w
    best, best_mean = results[1]
    worst, worst_mean = results[-1]
    return SearchResult(
        [int(k) for k in best],
        [int(k) for k in worst],
        pulls,
        int(pulls.sum()),
        float(best_mean[best[0]] - worst_mean[worst[0]]),
    )


def uniform(evaluate: Evaluate, n_formats: int, budget: int) -> SearchResult:
    """The same budget spent round robin over the formats, ranked by posterior mean."""
    pulls = np.zeros(n_formats)
    wins = np.zeros(n_formats)
    for i in range(budget):
        k = i % n_formats
        wins[k] += evaluate(k, int(pulls[k]))
        pulls[k] += 1
    mean = (1 + wins) / (2 + pulls)
    best = np.argsort(-mean, kind="stable")
    worst = np.argsort(mean, kind="stable")
    return SearchResult(
        [int(k) for k in best],
        [int(k) for k in worst],
        pulls,
        budget,
        float(mean[best[0]] - mean[worst[0]]),
    )


def found(result: SearchResult, correct: np.ndarray, top: int = 3) -> tuple[bool, bool]:
    """Whether the grid's best and worst format (by full accuracy; ties count as either)
    are among the search's `top` best and `top` worst."""
    acc = np.asarray(correct, bool).mean(axis=1)
    best = set(np.flatnonzero(acc == acc.max()))
    worst = set(np.flatnonzero(acc == acc.min()))
    return bool(best & set(result.best[:top])), bool(worst & set(result.worst[:top]))
