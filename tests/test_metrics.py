"""Metrics against hand-computed values and independent implementations
(sklearn, scipy, statsmodels), including the degenerate cases."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance
from sklearn.metrics import precision_recall_fscore_support
from statsmodels.stats import inter_rater

from jaxrobust.analysis import metrics

# ----------------------------------------------------------------------------
# Accuracy
# ----------------------------------------------------------------------------


def test_accuracy_macro_and_pooled_by_hand():
    summary = metrics.task_accuracies({"a": [1, 1, 0, 0], "b": [True]})
    assert summary.per_task == {"a": 0.5, "b": 1.0}
    assert summary.n_examples == {"a": 4, "b": 1}
    assert summary.macro == 0.75  # (0.5 + 1.0) / 2
    assert summary.pooled == 0.6  # 3 / 5
    assert metrics.accuracy(["x", "y", "z"], ["x", "y", "y"]) == pytest.approx(2 / 3)


def test_accuracy_empty_inputs_raise():
    with pytest.raises(ValueError, match="no tasks"):
        metrics.task_accuracies({})
    with pytest.raises(ValueError, match="task 'b'"):
        metrics.task_accuracies({"a": [1], "b": []})
    with pytest.raises(ValueError):
        metrics.accuracy([], [])


# ----------------------------------------------------------------------------
# Relation extraction
# ----------------------------------------------------------------------------


def test_re_micro_f1_by_hand():
    pairs = [  # (gold, prediction) -> counts
        ("A", "A"),  # TP
        ("A", "B"),  # FN + FP
        ("A", "invalid"),  # FN + FP
        ("A", "no_relation"),  # FN
        ("no_relation", "A"),  # FP
        ("no_relation", "invalid"),  # FP
        ("no_relation", "no_relation"),  # -
        ("B", "B"),  # TP
    ]
    gold, pred = zip(*pairs, strict=True)
    r = metrics.re_micro_f1(pred, gold, positive_labels=["A", "B"], negative_label="no_relation")
    assert (r.tp, r.fp, r.fn) == (2, 4, 3)
    assert (r.precision, r.recall) == (2 / 6, 2 / 5)
    assert r.f1 == pytest.approx(4 / 11, abs=1e-15)


@pytest.mark.parametrize("negative", ["no_relation", "Other", None])
@pytest.mark.parametrize("with_invalid", [False, True])
def test_re_micro_f1_matches_sklearn(negative, with_invalid):
    rng = np.random.default_rng(0)
    positive = [f"rel{i}" for i in range(6)]
    gold_pool = positive + ([negative] * 4 if negative else [])
    pred_pool = gold_pool + (["invalid"] * 2 if with_invalid else [])
    gold = list(rng.choice(gold_pool, 500))
    pred = [g if rng.random() < 0.4 else rng.choice(pred_pool) for g in gold]
    r = metrics.re_micro_f1(pred, gold, positive_labels=positive, negative_label=negative)
    # Invalid answers are false positives: sklearn counts them once 'invalid' is a scored label.
    labels = positive + (["invalid"] if with_invalid else [])
    p, rc, f, _ = precision_recall_fscore_support(gold, pred, labels=labels, average="micro")
    assert (r.precision, r.recall, r.f1) == pytest.approx((p, rc, f), abs=1e-12)
    if negative is None and not with_invalid:
        acc = np.mean(np.array(gold) == np.array(pred))
        assert r.precision == pytest.approx(acc) and r.recall == pytest.approx(acc)


def test_re_micro_f1_degenerate():
    zero = metrics.re_micro_f1(["B", "A"], ["A", "B"], positive_labels="AB", negative_label=None)
    assert (zero.tp, zero.precision, zero.recall, zero.f1) == (0, 0.0, 0.0, 0.0)
    none = metrics.re_micro_f1(["O"], ["O"], positive_labels=["A"], negative_label="O")
    assert (none.tp, none.fp, none.fn, none.f1) == (0, 0, 0, 0.0)
    with pytest.raises(ValueError, match="unknown predicted labels"):
        metrics.re_micro_f1(["A "], ["A"], positive_labels=["A"], negative_label="O")
    with pytest.raises(ValueError, match="gold labels"):
        metrics.re_micro_f1(["A"], ["invalid"], positive_labels=["A"], negative_label="O")
    with pytest.raises(ValueError, match="non-empty"):
        metrics.re_micro_f1([], [], positive_labels=["A"], negative_label="O")


def test_choices_to_labels():
    options = [["per:age", "no_relation"]] * 5
    got = metrics.choices_to_labels(["A", " b.", "C", "", "B)"], options)
    assert got == ["per:age", "no_relation", "invalid", "invalid", "no_relation"]


# ----------------------------------------------------------------------------
# Spread over templates, observed vs unobserved
# ----------------------------------------------------------------------------


def test_spread_stats_by_hand():
    s = metrics.spread_stats([0.2, 0.9, 0.4])
    assert s.mean == pytest.approx(0.5)
    assert s.std == pytest.approx(math.sqrt((0.09 + 0.16 + 0.01) / 2))  # ddof=1
    assert (s.min, s.max, s.spread) == pytest.approx((0.2, 0.9, 0.7))
    assert s.quantiles == pytest.approx({0.25: 0.3, 0.5: 0.4, 0.75: 0.65})
    one = metrics.spread_stats([0.7])
    assert math.isnan(one.std) and one.spread == 0.0 and one.mean == 0.7
    assert metrics.spread_stats([0.7], ddof=0).std == 0.0
    with pytest.raises(ValueError):
        metrics.spread_stats([])


def test_observed_gap_by_hand():
    g = metrics.observed_gap([0.8, 0.6, 0.5, 0.3], [True, True, False, False])
    assert (g.observed_mean, g.unobserved_mean, g.gap) == pytest.approx((0.7, 0.4, 0.3))
    assert g.drop_rate == pytest.approx(0.3 / 0.7)
    np.testing.assert_allclose(g.template_drop_rate, np.array([-0.1, 0.1, 0.2, 0.4]) / 0.7)
    zero = metrics.observed_gap([0.0, 0.0, 0.5], [True, True, False])
    assert zero.gap == -0.5 and math.isnan(zero.drop_rate)
    assert np.isnan(zero.template_drop_rate).all()
    with pytest.raises(ValueError, match="observed and one unobserved"):
        metrics.observed_gap([0.1, 0.2], [True, True])


# ----------------------------------------------------------------------------
# Agreement between templates
# ----------------------------------------------------------------------------


def test_prediction_consistency():
    assert metrics.prediction_consistency([["a", "b", "c"], ["a", "b", "d"]]) == pytest.approx(
        2 / 3
    )
    assert metrics.prediction_consistency([[1, 2, 3]]) == 1.0  # One template.
    assert metrics.prediction_consistency([["x"] * 4] * 3) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fleiss_kappa_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, 60)
    preds = np.where(rng.random((5, 60)) < 0.6, truth, rng.integers(0, 4, (5, 60)))
    table, _ = inter_rater.aggregate_raters(preds.T)  # [subjects, categories]
    want = inter_rater.fleiss_kappa(table, method="fleiss")
    assert metrics.fleiss_kappa(preds) == pytest.approx(want, abs=1e-12)
    labels = np.array(["A", "B", "C", "D"], dtype=object)[preds]
    assert metrics.fleiss_kappa(labels) == pytest.approx(want, abs=1e-12)


def test_fleiss_kappa_degenerate():
    assert metrics.fleiss_kappa([["a", "b", "a"], ["a", "b", "a"]]) == pytest.approx(1.0)
    assert math.isnan(metrics.fleiss_kappa([["a"] * 5] * 3))  # All predictions equal.
    with pytest.raises(ValueError, match="two templates"):
        metrics.fleiss_kappa([["a", "b"]])


def test_kendall_tau_matches_scipy():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (4, 7)) / 4.0  # Ties on purpose.
    scores[3] = 0.5  # A template under which all models tie.
    tau = metrics.kendall_tau_matrix(scores)
    for i, j in itertools.product(range(3), repeat=2):
        assert tau[i, j] == pytest.approx(stats.kendalltau(scores[i], scores[j]).statistic)
    assert np.isnan(tau[3]).all() and np.isnan(tau[:, 3]).all()
    pairs = [stats.kendalltau(scores[i], scores[j]).statistic for i, j in [(0, 1), (0, 2), (1, 2)]]
    assert metrics.mean_kendall_tau(scores) == pytest.approx(np.mean(pairs))
    assert math.isnan(metrics.mean_kendall_tau(scores[:1]))
    with pytest.raises(ValueError):
        metrics.kendall_tau_matrix([[0.1], [0.2]])


# ----------------------------------------------------------------------------
# Bootstrap and paired test
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "n_resamples", "seed"), [(9, 999, 0), (120, 2000, 7)])
def test_bootstrap_one_template_equals_scipy(n, n_resamples, seed):
    x = np.random.default_rng(seed).random(n) < 0.7
    ours = metrics.two_level_bootstrap(x[None], n_resamples=n_resamples, seed=seed)["mean"]
    ref = stats.bootstrap(
        (x.astype(float),),
        np.mean,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    np.testing.assert_array_equal(ours.distribution, ref.bootstrap_distribution)
    assert (ours.low, ours.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert ours.estimate == x.mean()


def _naive_two_level(c, observed, n_resamples, seed):
    """The resampling scheme written out loop by loop, for comparison."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, c.shape[1], (n_resamples, c.shape[1]))
    groups = [np.flatnonzero(observed), np.flatnonzero(~observed)]
    picks = [rng.integers(0, len(g), (n_resamples, len(g))) for g in groups]
    out = []
    for b in range(n_resamples):
        means = [c[g[p[b]]][:, draws[b]].mean() for g, p in zip(groups, picks, strict=True)]
        out.append(means)
    return np.array(out)  # [B, 2]


def test_bootstrap_two_levels_against_naive_loop():
    rng = np.random.default_rng(4)
    c = (rng.random((5, 300)) < np.array([[0.9], [0.8], [0.5], [0.4], [0.0]])).astype(float)
    observed = np.array([True, True, False, False, False])  # Template 4 has zero correct.
    res = metrics.two_level_bootstrap(c, observed=observed, n_resamples=600, seed=11)
    naive = _naive_two_level(c, observed, 600, 11)
    np.testing.assert_allclose(res["observed"].distribution, naive[:, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res["unobserved"].distribution, naive[:, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res["gap"].distribution, naive[:, 0] - naive[:, 1], atol=1e-15)
    assert res["gap"].estimate == pytest.approx(c[:2].mean() - c[2:].mean())
    assert res["mean"].estimate == pytest.approx(c.mean())
    pooled = (2 * naive[:, 0] + 3 * naive[:, 1]) / 5  # Mean over all 5 drawn templates.
    np.testing.assert_allclose(res["mean"].distribution, pooled, rtol=0, atol=1e-15)
    for ci in res.values():
        want = np.quantile(ci.distribution, [0.025, 0.975])
        np.testing.assert_allclose([ci.low, ci.high], want, rtol=1e-12)
    assert res["gap"].low > 0  # Observed templates are clearly better here.


def test_bootstrap_seeded_and_degenerate():
    c = np.random.default_rng(0).random((3, 50)) < 0.5
    a = metrics.two_level_bootstrap(c, n_resamples=300, seed=2)["mean"]
    b = metrics.two_level_bootstrap(c, n_resamples=300, seed=2)["mean"]
    other = metrics.two_level_bootstrap(c, n_resamples=300, seed=3)["mean"]
    np.testing.assert_array_equal(a.distribution, b.distribution)
    assert not np.array_equal(a.distribution, other.distribution)
    ones = metrics.two_level_bootstrap(np.ones((2, 10)), n_resamples=50)["mean"]
    assert (ones.estimate, ones.low, ones.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.two_level_bootstrap(np.ones((2, 0)))
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        metrics.two_level_bootstrap([[2.0]])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paired_test_exact_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    c = (rng.random((3, 10)) < np.array([[0.8], [0.7], [0.4]])).astype(float)
    observed = np.array([True, True, False])
    res = metrics.paired_permutation_test(c, observed, n_resamples=10_000)
    d = c[:2].mean(axis=0) - c[2]
    ref = stats.permutation_test(
        (d,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
    )
    assert res.exact
    assert res.mean_difference == pytest.approx(d.mean())
    assert res.p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_paired_test_monte_carlo():
    rng = np.random.default_rng(7)  # 11 nonzero differences, exact p = 0.227.
    c = (rng.random((2, 16)) < np.array([[0.6], [0.3]])).astype(float)
    observed = np.array([True, False])
    d = c[0] - c[1]
    exact = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", n_resamples=np.inf
    ).pvalue
    assert 2 ** np.count_nonzero(d) > 2000  # So 2000 resamples go to Monte Carlo.
    mc = metrics.paired_permutation_test(c, observed, n_resamples=2000, seed=1)
    again = metrics.paired_permutation_test(c, observed, n_resamples=2000, seed=1)
    assert not mc.exact and mc == again
    assert mc.p_value == pytest.approx(exact, abs=0.035)  # 2000 draws: sd about 0.011.
    same = metrics.paired_permutation_test(np.ones((2, 8)), observed)
    assert (same.mean_difference, same.p_value) == (0.0, 1.0)


# ----------------------------------------------------------------------------
# Representation analysis
# ----------------------------------------------------------------------------


def test_representation_drift():
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(7, 5))
    scores = rng.random(7)
    observed = np.array([True, True, True, False, False, False, False])
    res = metrics.representation_drift(pooled, scores, observed)
    centroid = pooled[:3].mean(axis=0)
    for k in range(7):
        assert res.cosine_distance[k] == pytest.approx(distance.cosine(pooled[k], centroid))
        assert res.euclidean_distance[k] == pytest.approx(distance.euclidean(pooled[k], centroid))
    drop = scores[:3].mean() - scores
    np.testing.assert_allclose(res.drop, drop)
    dist, dr = res.cosine_distance[3:], drop[3:]
    assert res.pearson["cosine"][0] == pytest.approx(np.corrcoef(dist, dr)[0, 1])
    ranks = [np.argsort(np.argsort(v)) for v in (dist, dr)]  # No ties in random data.
    assert res.spearman["cosine"][0] == pytest.approx(np.corrcoef(*ranks)[0, 1])
    all_res = metrics.representation_drift(pooled, scores, observed, over="all")
    r = np.corrcoef(all_res.euclidean_distance, drop)[0, 1]
    assert all_res.pearson["euclidean"][0] == pytest.approx(r)


def test_representation_drift_degenerate():
    pooled = np.eye(4)[:, :3] + 1.0
    observed = np.array([True, True, False, False])
    two = metrics.representation_drift(pooled, [0.5, 0.4, 0.3, 0.1], observed)
    assert math.isnan(two.pearson["cosine"][0])  # Only two unobserved templates.
    flat = metrics.representation_drift(pooled, [0.5] * 4, observed, over="all")
    assert math.isnan(flat.spearman["euclidean"][0])  # Constant drop.
    with pytest.raises(ValueError, match="zero vector"):
        metrics.representation_drift(np.zeros((4, 3)), [0.1] * 4, observed)
