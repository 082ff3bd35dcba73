"""Budgeted search for a task's best and worst format (FormatSpread-style bandit).

Sclar et al. (2023) spend an evaluation budget on sampled formats with
Thompson sampling: each format's accuracy has a Beta posterior (Beta(1, 1)
prior), each step draws one accuracy per format from its posterior and
evaluates one more example with the format whose draw is highest (searching
the best) or lowest (the worst). `search` runs both searches on one budget,
the turn going to whichever the posterior says is not settled yet (`search`), and
ranks the formats by posterior mean; `uniform` spends the same budget evenly
(round robin) for comparison. An evaluation is a callable
``(format index, draw number) -> correct`` so the same search runs on a live
model or on a grid computed before (`grid_evaluator`).

A format is scored on a finite pool of examples (the task's test split), and
its accuracy on that pool is what the full grid measures, so the search works
on the pool: it never evaluates an example twice for one format (the n-th
evaluation of format k is its n-th example, n < its pool size), and its
posterior is the finite-population one: after ``w`` correct of ``n`` evaluated
of ``N`` examples the pool accuracy is ``(w + Y) / N`` with ``Y`` the correct
among the ``N - n`` left, ``Y ~ Binomial(N - n, p)``, ``p ~ Beta(1 + w, 1 + n - w)``
(beta-binomial). A format evaluated on its whole pool is exhausted: its accuracy
is known exactly (every draw is it), and no evaluation is spent on it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

Evaluate = Callable[[int, int], bool]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a budgeted search found.

    Attributes:
      best: format indices, best first (by posterior mean of the pool accuracy).
      worst: format indices, worst first.
      pulls: evaluations spent on each format [K] (both searches).
      spent: evaluations spent in all (less than the budget only when every format
        is exhausted).
      spread: posterior mean of the best found minus that of the worst found.
    """

    best: list[int]
    worst: list[int]
    pulls: np.ndarray
    spent: int
    spread: float


def grid_evaluator(correct: np.ndarray, seed: int) -> Evaluate:
    """Evaluations read from a full grid [K, E]: format k's n-th evaluation is its n-th
    example in a seeded permutation of the E examples (n < E).

    Raises (when called):
      ValueError: an evaluation beyond the format's E examples.
    """
    correct = np.asarray(correct, bool)
    n_examples = correct.shape[1]
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n_examples) for _ in range(correct.shape[0])]

    def evaluate(k: int, n: int) -> bool:
        if not 0 <= n < n_examples:
            raise ValueError(
                f"format {k}: evaluation {n} asked for, expected 0 <= n < {n_examples} "
                "(its examples; none is evaluated twice)"
            )
        return bool(correct[k, orders[k][n]])

    return evaluate


def _sizes(n_examples: Sequence[int]) -> np.ndarray:
    sizes = np.asarray(n_examples)
    if sizes.ndim != 1 or sizes.size == 0 or sizes.min() < 1:
        raise ValueError(
            f"n_examples {list(sizes.ravel()[:5])}...: expected each format's number of "
            "examples, one positive integer per format"
        )
    return sizes.astype(float)


def _draw(rng, wins, pulls, sizes):
    """One draw of every format's pool accuracy (exact for an exhausted format)."""
    p = rng.beta(1 + wins, 1 + pulls - wins)
    return (wins + rng.binomial((sizes - pulls).astype(np.int64), p)) / sizes


def _posterior_mean(wins, pulls, sizes):
    return (wins + (sizes - pulls) * (1 + wins) / (2 + pulls)) / sizes


def _result(wins, pulls, sizes) -> SearchResult:
    mean = _posterior_mean(wins, pulls, sizes)
    best = np.argsort(-mean, kind="stable")
    worst = np.argsort(mean, kind="stable")
    return SearchResult(
        [int(k) for k in best],
        [int(k) for k in worst],
        pulls,
        int(pulls.sum()),
        float(mean[best[0]] - mean[worst[0]]),
    )


def search(
    evaluate: Evaluate,
    n_examples: Sequence[int],
    budget: int,
    *,
    seed: int = 0,
    top: int = 3,
    shared: bool = True,
) -> SearchResult:
    """Thompson sampling for the best and the worst format, `budget` evaluations in all.

    Every format is evaluated once first. Then each step draws every format's pool
    accuracy from its posterior once; the best-search evaluates the format whose
    draw is highest, the worst-search the one whose draw is lowest, among the
    formats not exhausted. Both share one record of outcomes, so a cell is
    evaluated at most once: what one search learnt the other knows for free
    (evaluating it again would spend budget and teach nothing).

    Which search takes the step: with ``shared=False`` they take turns (half the
    budget each, FormatSpread's split). With ``shared=True`` (the default) the
    budget is shared: a search is unsettled by a draw when the draw's extreme
    (highest for the best, lowest for the worst) is not among its current `top`
    formats by posterior mean, i.e. the draw contradicts its answer; the unsettled
    searches take turns, and when neither is unsettled both do. The draw is a
    one-sample estimate of the posterior probability that a search's answer misses
    the extreme, so the budget goes where the posterior still doubts the answer:
    on a task whose worst format stands apart and whose best does not (as on the
    committed grid) the worst-search is settled more often and hands part of its
    half to the best-search.

    Args:
      evaluate: ``(format, n) -> correct``, format's n-th example (`grid_evaluator`).
      n_examples: each format's number of examples (its pool).
      budget: evaluations in all; the search stops early when every format is exhausted.
      seed: seeds the posterior draws.
      top: how many formats the answer names at each end (for ``shared``).
      shared: share the budget by need (above) or split it in halves.

    Raises:
      ValueError: the budget does not cover every format once.
    """
    sizes = _sizes(n_examples)
    n_formats = len(sizes)
    if budget < n_formats:
        raise ValueError(
            f"search budget {budget}: expected at least {n_formats} (one evaluation of each format)"
        )
    rng = np.random.default_rng(seed)
    pulls = np.zeros(n_formats)
    wins = np.zeros(n_formats)
    for k in range(n_formats):
        wins[k] += evaluate(k, 0)
        pulls[k] += 1
    turn = 0
    for _ in range(budget - n_formats):
        open_ = pulls < sizes
        if not open_.any():
            break
        theta = _draw(rng, wins, pulls, sizes)
        signs = [1, -1]  # the best-search, the worst-search
        if shared:
            mean = _posterior_mean(wins, pulls, sizes)
            unsettled = [
                sign
                for sign in signs
                if (sign * theta)[np.argsort(-sign * mean, kind="stable")[:top]].max()
                < (sign * theta).max()
            ]
            signs = unsettled or signs
        sign = signs[turn % len(signs)]
        turn += 1
        k = int(np.argmax(np.where(open_, sign * theta, -np.inf)))
        wins[k] += evaluate(k, int(pulls[k]))
        pulls[k] += 1
    return _result(wins, pulls, sizes)


def uniform(evaluate: Evaluate, n_examples: Sequence[int], budget: int) -> SearchResult:
    """The same budget spent round robin over the formats not exhausted, ranked by
    posterior mean (the same finite-population posterior as `search`)."""
    sizes = _sizes(n_examples)
    pulls = np.zeros(len(sizes))
    wins = np.zeros(len(sizes))
    k = 0
    for _ in range(min(budget, int(sizes.sum()))):
        while pulls[k] >= sizes[k]:
            k = (k + 1) % len(sizes)
        wins[k] += evaluate(k, int(pulls[k]))
        pulls[k] += 1
        k = (k + 1) % len(sizes)
    return _result(wins, pulls, sizes)


def found(result: SearchResult, correct: np.ndarray, top: int = 3) -> tuple[bool, bool]:
    """Whether the grid's best and worst format (by full accuracy; ties count as either)
    are among the search's `top` best and `top` worst."""
    acc = np.asarray(correct, bool).mean(axis=1)
    best = set(np.flatnonzero(acc == acc.max()))
    worst = set(np.flatnonzero(acc == acc.min()))
    return bool(best & set(result.best[:top])), bool(worst & set(result.worst[:top]))
