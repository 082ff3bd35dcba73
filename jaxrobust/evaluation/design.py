"""Sampled designs: which (template, example) cells of the grid an evaluation scores.

A full evaluation scores every template on every example. `sample_cells`
draws a seeded subset at a budget (a share of the grid, e.g. 5%) in which
every template and every example is seen at least once and the cells are
spread as evenly as the budget allows: each template gets ``floor`` or
``ceil`` of budget / templates cells, each example likewise. The estimator of
`jaxrobust.analysis.prompteval` predicts the cells left out.

Construction: a seeded permutation of the examples is laid out as a ring and
the templates, in a seeded order, take consecutive blocks of it (wrapping
around), so no template sees an example twice and example counts differ by at
most one. The result depends only on the shape, the budget and the seed.
"""

from __future__ import annotations

import math

import numpy as np


def n_cells(n_templates: int, n_examples: int, budget: float) -> int:
    """How many cells a budget buys: ``ceil(budget x T x E)``, at least ``max(T, E)``
    (every template and every example once).

    Raises:
      ValueError: the budget is not in (0, 1].
    """
    if not 0 < budget <= 1:
        raise ValueError(f"design budget {budget!r}: expected a share of the grid in (0, 1]")
    if n_templates < 1 or n_examples < 1:
        raise ValueError(f"design of {n_templates} templates x {n_examples} examples: both >= 1")
    cells = math.ceil(budget * n_templates * n_examples - 1e-9)
    return min(max(cells, n_templates, n_examples), n_templates * n_examples)


def sample_cells(n_templates: int, n_examples: int, budget: float, seed: int) -> np.ndarray:
    """The cells to score, as a bool mask ``[templates, examples]`` (see the module doc).

    Args:
      n_templates: rows of the grid.
      n_examples: columns.
      budget: share of the grid, in (0, 1].
      seed: which cells.
    """
    m = n_cells(n_templates, n_examples, budget)
    rng = np.random.default_rng([seed, n_templates, n_examples])
    ring = rng.permutation(n_examples)
    order = rng.permutation(n_templates)
    quota = np.full(n_templates, m // n_templates)
    quota[order[: m % n_templates]] += 1
    mask = np.zeros((n_templates, n_examples), bool)
    start = 0
    for t in order:
        mask[t, ring[(start + np.arange(quota[t])) % n_examples]] = True
        start += quota[t]
    return mask


def cells_of(mask: np.ndarray, template: int) -> np.ndarray:
    """The example indices a design scores for one template, ascending."""
    return np.flatnonzero(mask[template])
