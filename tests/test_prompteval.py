"""Sampled designs, the PromptEval-style estimator and the format bandit, on hand-made
grids, against scikit-learn, and on the committed ground-truth grid."""

import json
import pathlib

import numpy as np
import pytest
import threadpoolctl
from sklearn.linear_model import LogisticRegression

from jaxrobust.analysis import format_search, prompteval
from jaxrobust.evaluation import design
from jaxrobust.study import format_grid

GRID = pathlib.Path(__file__).resolve().parent / "fixtures" / "prompteval_grid.npz"


# ---------------------------------------------------------------- designs


@pytest.mark.parametrize("shape,budget", [((72, 200), 0.05), ((10, 7), 0.3), ((3, 50), 0.01)])
def test_design_covers_every_template_and_example_evenly(shape, budget):
    mask = design.sample_cells(*shape, budget, seed=4)
    assert mask.sum() == design.n_cells(*shape, budget)
    assert mask.sum() >= max(shape) and mask.sum() >= np.ceil(budget * shape[0] * shape[1])
    per_t, per_e = mask.sum(axis=1), mask.sum(axis=0)
    assert per_t.min() >= 1 and per_e.min() >= 1
    assert per_t.max() - per_t.min() <= 1 and per_e.max() - per_e.min() <= 1
    assert (design.sample_cells(*shape, budget, seed=4) == mask).all()
    assert (design.sample_cells(*shape, budget, seed=5) != mask).any()


def test_design_budget_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"design budget 0: expected a share of the grid"):
        design.sample_cells(5, 5, 0, seed=0)


# ---------------------------------------------------------------- the estimator


def _toy(seed, n_t=12, n_e=40):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n_t), rng.normal(0, 1, n_e)
    p = 1 / (1 + np.exp(-(0.3 + a[:, None] + b[None])))
    return rng.random((n_t, n_e)) < p


def test_fit_is_sklearns_l2_logistic_regression():
    correct = _toy(0)
    mask = design.sample_cells(*correct.shape, 0.5, seed=1)
    n_t, n_e = mask.shape
    f = prompteval.fit(mask, correct, template_sd=0.7, example_sd=0.7)
    ti, ei = np.nonzero(mask)
    x = np.zeros((len(ti), n_t + n_e))
    x[np.arange(len(ti)), ti] = 1
    x[np.arange(len(ti)), n_t + ei] = 1
    # sklearn minimises 0.5 ||w||^2 + C sum(log-loss), the intercept unpenalised:
    # the same objective as a N(0, sd^2) prior with C = sd^2.
    ref = LogisticRegression(C=0.49, tol=1e-10, max_iter=10_000).fit(x, correct[ti, ei])
    np.testing.assert_allclose(f.mu, ref.intercept_[0], atol=1e-4)
    np.testing.assert_allclose(np.concatenate([f.a, f.b]), ref.coef_[0], atol=1e-4)


def test_naive_is_plain_averages_and_a_full_grid_is_exact():
    correct = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], bool)
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], bool)
    n = prompteval.naive(mask, correct)
    np.testing.assert_allclose(n.per_template, [0.5, 0.5, 1.0])
    assert n.summary["mean"] == pytest.approx(2 / 3)
    full = np.ones_like(mask)
    e = prompteval.estimate(full, correct, draws=20)
    np.testing.assert_allclose(e.per_template, [0.75, 0.25, 1.0])
    assert e.interval["mean"] == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert e.summary["p50"] == pytest.approx(0.75) and e.summary["spread"] == pytest.approx(
        np.percentile([0.75, 0.25, 1.0], 95) - np.percentile([0.75, 0.25, 1.0], 5)
    )
    with pytest.raises(ValueError, match=r"templates \[1\] have no cell observed"):
        prompteval.naive(np.array([[1, 1], [0, 0]], bool), np.ones((2, 2), bool))


def test_template_covariates_from_answer_words_parents_and_rules():
    x, names = prompteval.template_covariates(
        ["", "f1", "f1"], ["A|B", "", "1|2"], rules=[(), ("casing=1",), ()]
    )
    assert names == [
        "answer_words=1|2",
        "answer_words=A|B",
        "bank_template",
        "casing=1",
        "parent=f1",
    ]
    np.testing.assert_array_equal(x, [[0, 1, 1, 0, 0], [0, 0, 0, 1, 1], [1, 0, 0, 0, 1]])


def test_the_committed_grid_is_real_and_spread():
    g = format_grid.load_grid(GRID)
    acc = g.correct.sum(axis=1) / 2  # percent of 200 examples
    assert g.correct.shape[0] >= 50 and g.correct.shape[1] >= 200
    assert sum(bool(p) for p in g.parents) >= 50
    assert np.percentile(acc, 95) - np.percentile(acc, 5) >= 15
    # README: 104 templates (14 bank, 2 x 45 variants); 18.5 to 56.5%; top four variants.
    assert acc.min() == 18.5 and acc.max() == 56.5 and g.correct.shape == (104, 200)
    assert sorted(acc[[bool(p) for p in g.parents]])[-4:] == [55.5, 55.5, 56.0, 56.5]
    assert len(set(g.example_ids)) == g.correct.shape[1]


@pytest.mark.heavy
def test_readme_measurements_on_the_committed_grid(capsys):
    """README's acceptance numbers, from its command: 20 seeds, 5% of the cells, the 90th
    percentile of |error|; the bandit over the grid's 90 format variants, 20 seeds."""
    with threadpoolctl.threadpool_limits(1):
        assert format_grid.main(["check", f"--grid={GRID}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["grid"] == [104, 200] and out["cells"] == 1040
    assert out["truth"]["spread"] == pytest.approx(36.43)
    pe, naive = out["prompteval"], out["naive"]
    assert pe["p5"] <= 5.0 and pe["p95"] <= 5.0
    assert all(pe[k] < naive[k] for k in ("mean", "p5", "p95"))
    # As README says: the mean misses the 2-point target by a hair.
    assert pe["mean"] == pytest.approx(2.02, abs=0.03) and naive["mean"] == pytest.approx(2.06)
    assert naive["p5"] == pytest.approx(9.0) and naive["p95"] == pytest.approx(24.58)
    ts, uniform = out["search"]["thompson"], out["search"]["uniform"]
    assert ts["worst_in_top3"] >= 15 and ts["worst_in_top3"] > uniform["worst_in_top3"]
    # The best format is not found: the top four lie within 1 point (2 of 200 examples).
    assert ts["best_in_top3"] == 1 and uniform["best_in_top3"] == 3


# ---------------------------------------------------------------- the bandit


def test_thompson_search_on_a_hand_grid():
    rng = np.random.default_rng(0)
    acc = np.array([0.1, 0.5, 0.5, 0.5, 0.9, 0.5])
    correct = rng.random((6, 400)) < acc[:, None]
    r = format_search.search(format_search.grid_evaluator(correct, 0), 6, 300, seed=0)
    assert r.best[0] == 4 and r.worst[0] == 0 and r.spent == 300 == r.pulls.sum()
    assert r.pulls[4] > r.pulls[1] and r.pulls[0] > r.pulls[2]
    assert format_search.found(r, correct) == (True, True)
    u = format_search.uniform(format_search.grid_evaluator(correct, 0), 6, 300)
    assert (u.pulls == 50).all()
    with pytest.raises(ValueError, match="at least 2 x 6 formats"):
        format_search.search(format_search.grid_evaluator(correct, 0), 6, 11)
