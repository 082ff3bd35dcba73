"""The statistics core (`jaxrobust.analysis.stats`) against scipy, sklearn, loops written
out by hand and hand-computed values."""

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import f1_score

from jaxrobust.analysis import metrics, stats

# ----------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------


def test_percentile_interval_by_hand():
    dist = np.arange(11) / 10  # 0.0, 0.1, ..., 1.0
    # Type-7 quantiles: position q * (B - 1); 0.1 -> element 1, 0.9 -> element 9.
    assert stats.percentile_interval(dist, 0.8) == pytest.approx((0.1, 0.9), abs=1e-15)
    # 0.025 * 10 = 0.25: a quarter of the way from 0.0 to 0.1.
    assert stats.percentile_interval(dist, 0.95) == pytest.approx((0.025, 0.975), abs=1e-15)


@pytest.mark.parametrize(("n", "n_resamples", "seed"), [(9, 999, 0), (120, 2000, 7)])
def test_one_template_equals_scipy_bootstrap(n, n_resamples, seed):
    x = np.random.default_rng(seed).random(n) < 0.7
    ours = stats.bootstrap(x[None], n_resamples=n_resamples, seed=seed)["mean"]
    ref = sps.bootstrap(
        (x.astype(float),),
        np.mean,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    np.testing.assert_array_equal(ours.distribution, ref.bootstrap_distribution)
    assert (ours.low, ours.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert ours.estimate == x.mean()


def test_micro_f1_one_template_equals_scipy_bootstrap_of_sklearn_f1():
    """scipy draws the same example indices (paired resampling) and sklearn scores each
    resample from the labels, so the F1 statistic is checked end to end."""
    rng = np.random.default_rng(2)
    n, positive = 60, [1, 2, 3]  # 0 is the negative label, 4 an invalid answer.
    gold = rng.choice([0, 1, 2, 3], n)
    pred = np.where(rng.random(n) < 0.5, gold, rng.choice([0, 1, 2, 3, 4], n))
    tp, fp, fn = metrics.re_outcomes(pred.tolist(), gold.tolist(), [0] * n)
    ours = stats.bootstrap(
        (tp[None], fp[None], fn[None]), statistic=stats.MICRO_F1, n_resamples=300, seed=4
    )["mean"]

    def sklearn_f1(g, p):
        return f1_score(g, p, labels=positive + [4], average="micro", zero_division=0)

    ref = sps.bootstrap(
        (gold, pred),
        sklearn_f1,
        paired=True,
        vectorized=False,
        n_resamples=300,
        method="percentile",
        rng=np.random.default_rng(4),
    )
    np.testing.assert_allclose(ours.distribution, ref.bootstrap_distribution, atol=1e-12)
    assert ours.estimate == pytest.approx(sklearn_f1(gold, pred), abs=1e-12)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def _naive(c, strata, observed, n_resamples, seed):
    """The resampling scheme written out loop by loop: {group: [B] distribution}."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, c.shape[1], (n_resamples, c.shape[1]))
    order = list(dict.fromkeys(strata))
    groups = {"observed": observed, "unobserved": ~observed}
    cells = {}  # (group, stratum) -> (template indices, [B, K_gs] picks)
    for g, member in groups.items():
        for s in order:
            idx = [k for k in range(len(strata)) if member[k] and strata[k] == s]
            if idx:
                cells[(g, s)] = (idx, rng.integers(0, len(idx), (n_resamples, len(idx))))
    out = {g: np.zeros(n_resamples) for g in (*groups, "mean")}
    for b in range(n_resamples):
        for g in groups:
            per_stratum = []
            for s in order:
                if (g, s) in cells:
                    idx, picks = cells[(g, s)]
                    per_stratum.append(np.mean([c[idx[p], draws[b]].mean() for p in picks[b]]))
            out[g][b] = np.mean(per_stratum)
        per_stratum = []
        for s in order:
            values = []
            for g in groups:
                if (g, s) in cells:
                    idx, picks = cells[(g, s)]
                    values += [c[idx[p], draws[b]].mean() for p in picks[b]]
            per_stratum.append(np.mean(values))
        out["mean"][b] = np.mean(per_stratum)
    return out


@pytest.mark.parametrize("strata", [list("aaaaa"), list("abbab")])
def test_two_levels_and_strata_against_naive_loop(strata):
    rng = np.random.default_rng(4)
    c = (rng.random((5, 300)) < np.array([[0.9], [0.8], [0.5], [0.4], [0.0]])).astype(float)
    observed = np.array([True, True, False, False, False])  # Template 4 has zero correct.
    res = stats.bootstrap(c, strata=strata, observed=observed, n_resamples=400, seed=11)
    naive = _naive(c, strata, observed, 400, 11)
    for g in ("observed", "unobserved", "mean"):
        np.testing.assert_allclose(res[g].distribution, naive[g], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        res["gap"].distribution, naive["observed"] - naive["unobserved"], atol=1e-15
    )
    for ci in res.values():
        want = np.quantile(ci.distribution, [0.025, 0.975])  # numpy's type 7, same definition.
        np.testing.assert_allclose([ci.low, ci.high], want, rtol=1e-12)
    means = c.mean(axis=1)
    if len(set(strata)) == 1:
        assert res["gap"].estimate == pytest.approx(means[:2].mean() - means[2:].mean())
        assert res["mean"].estimate == pytest.approx(means.mean())
    else:  # a: templates 0, 3; b: 1, 2, 4. Means over strata of means over templates.
        assert res["observed"].estimate == pytest.approx((means[0] + means[1]) / 2)
        assert res["unobserved"].estimate == pytest.approx(
            (means[3] + (means[2] + means[4]) / 2) / 2
        )
        assert res["mean"].estimate == pytest.approx(
            (means[[0, 3]].mean() + means[[1, 2, 4]].mean()) / 2
        )
    assert res["gap"].low > 0  # Observed templates are clearly better here.


def test_strata_keep_task_difficulty_out_of_the_gap():
    """Task a: every template right; task b: every template wrong. Each group has
    one template per task, so the gap is exactly 0 in every resample, while
    resampling templates across tasks swings it between -1 and +1."""
    correct = np.array([[1.0] * 10, [0.0] * 10, [1.0] * 10, [0.0] * 10])
    observed = np.array([True, True, False, False])
    ours = stats.bootstrap(correct, strata=list("abab"), observed=observed, n_resamples=200)
    assert ours["observed"].estimate == ours["unobserved"].estimate == 0.5
    assert (ours["gap"].low, ours["gap"].estimate, ours["gap"].high) == (0.0, 0.0, 0.0)
    pooled = stats.bootstrap(correct, observed=observed, n_resamples=200)
    assert set(np.unique(pooled["gap"].distribution)) == {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert (pooled["gap"].low, pooled["gap"].high) == (-1.0, 1.0)


def test_micro_f1_statistic_equals_mean_when_f1_is_accuracy():
    # Every gold label positive, predictions never negative: micro-F1 = accuracy.
    rng = np.random.default_rng(1)
    correct = rng.random((5, 30)) < 0.6
    counts = (correct * 1.0, ~correct * 1.0, ~correct * 1.0)
    observed = np.array([True, True, False, False, False])
    a = stats.bootstrap(correct, observed=observed, n_resamples=300, seed=7)
    b = stats.bootstrap(
        counts, statistic=stats.MICRO_F1, observed=observed, n_resamples=300, seed=7
    )
    for key in ("mean", "observed", "unobserved", "gap"):
        np.testing.assert_allclose(b[key].distribution, a[key].distribution, atol=1e-12)
        assert b[key].estimate == pytest.approx(a[key].estimate)


def test_bootstrap_seeded_and_degenerate():
    c = np.random.default_rng(0).random((3, 50)) < 0.5
    a = stats.bootstrap(c, n_resamples=300, seed=2)["mean"]
    b = stats.bootstrap(c, n_resamples=300, seed=2)["mean"]
    other = stats.bootstrap(c, n_resamples=300, seed=3)["mean"]
    np.testing.assert_array_equal(a.distribution, b.distribution)
    assert not np.array_equal(a.distribution, other.distribution)
    ones = stats.bootstrap(np.ones((2, 10)), n_resamples=50)["mean"]
    assert (ones.estimate, ones.low, ones.high) == (1.0, 1.0, 1.0)
    split = stats.bootstrap(np.array([[1.0] * 4, [0.0] * 4]), observed=np.array([True, False]))
    assert (split["gap"].low, split["gap"].high) == (1.0, 1.0)  # Any draw: 1 - 0.
    with pytest.raises(ValueError, match="non-empty"):
        stats.bootstrap(np.ones((2, 0)))
    with pytest.raises(ValueError, match="3 component"):
        stats.bootstrap(np.ones((2, 3)), statistic=stats.MICRO_F1)
    with pytest.raises(ValueError, match="observed and one unobserved"):
        stats.bootstrap(np.ones((2, 3)), observed=np.array([True, True]))
    with pytest.raises(ValueError, match="strata"):
        stats.bootstrap(np.ones((2, 3)), strata=["a"])


# ----------------------------------------------------------------------------
# Paired permutation test
# ----------------------------------------------------------------------------


def test_paired_test_by_hand():
    # Observed right and unobserved wrong on all 3 examples: of the 8 sign patterns,
    # only all-plus and all-minus reach |sum| = 3, so p = 2 / 8.
    c = np.array([[1.0, 1, 1], [0, 0, 0]])
    res = stats.paired_permutation_test(c, np.array([True, False]))
    assert (res.mean_difference, res.p_value, res.exact, res.n_examples) == (1.0, 0.25, True, 3)
    one = stats.paired_permutation_test(np.array([[1.0, 0], [0, 0]]), np.array([True, False]))
    assert (one.mean_difference, one.p_value) == (0.5, 1.0)  # One nonzero difference.


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paired_test_exact_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    c = (rng.random((3, 10)) < np.array([[0.8], [0.7], [0.4]])).astype(float)
    observed = np.array([True, True, False])
    res = stats.paired_permutation_test(c, observed, n_resamples=10_000)
    d = c[:2].mean(axis=0) - c[2]
    ref = sps.permutation_test(
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
    exact = sps.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", n_resamples=np.inf
    ).pvalue
    assert 2 ** np.count_nonzero(d) > 2000  # So 2000 resamples go to Monte Carlo.
    mc = stats.paired_permutation_test(c, observed, n_resamples=2000, seed=1)
    again = stats.paired_permutation_test(c, observed, n_resamples=2000, seed=1)
    assert not mc.exact and mc == again
    assert mc.p_value == pytest.approx(exact, abs=0.035)  # 2000 draws: sd about 0.011.
    same = stats.paired_permutation_test(np.ones((2, 8)), observed)
    assert (same.mean_difference, same.p_value) == (0.0, 1.0)
