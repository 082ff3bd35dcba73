"""Point metrics against hand-computed values and independent implementations
(sklearn, scipy, statsmodels), including the degenerate cases. The bootstrap and
the permutation test are in test_stats.py."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance
from sklearn.metrics import f1_score, precision_recall_fscore_support
from statsmodels.stats import inter_rater

from jaxrobust.analysis import metrics

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


@pytest.mark.parametrize("negative", ["no_relation", None])
def test_re_outcomes_per_example_sum_to_sklearn_f1_score(negative):
    """Without invalid answers the scored labels are exactly the positive relations."""
    rng = np.random.default_rng(5)
    positive = ["r1", "r2", "r3"]
    pool = positive + ([negative] * 3 if negative else [])
    gold = list(rng.choice(pool, 300))
    pred = [g if rng.random() < 0.5 else rng.choice(pool) for g in gold]
    tp, fp, fn = metrics.re_outcomes(pred, gold, [negative] * len(gold))
    assert set(np.unique(np.concatenate([tp, fp, fn]))) <= {0.0, 1.0}
    want = f1_score(gold, pred, labels=positive, average="micro")
    assert metrics.f1_from_counts(tp.sum(), fp.sum(), fn.sum()) == pytest.approx(want, abs=1e-12)
    # Elementwise on arrays: [tp, fp, fn] of two templates, the second with TP = 0.
    two = metrics.f1_from_counts([tp.sum(), 0.0], [fp.sum(), 3.0], [fn.sum(), 1.0])
    assert two[0] == pytest.approx(want, abs=1e-12) and two[1] == 0.0


# ----------------------------------------------------------------------------
# Spread over templates, observed vs unobserved
# ----------------------------------------------------------------------------


def test_spread_stats_by_hand():
    s = metrics.spread_stats([0.2, 0.9, 0.4])
    assert s.n_templates == 3
    assert s.mean == pytest.approx(0.5)
    assert s.std == pytest.approx(math.sqrt((0.09 + 0.16 + 0.01) / 2))  # ddof=1
    assert (s.min, s.max) == (0.2, 0.9)
    one = metrics.spread_stats([0.7])
    assert math.isnan(one.std) and one.min == one.max == one.mean == 0.7
    assert metrics.spread_stats([0.7], ddof=0).std == 0.0
    with pytest.raises(ValueError):
        metrics.spread_stats([])


def test_observed_gap_by_hand():
    g = metrics.observed_gap([0.8, 0.6, 0.5, 0.3], [True, True, False, False])
    assert (g.observed_mean, g.unobserved_mean, g.gap) == pytest.approx((0.7, 0.4, 0.3))
    assert g.drop_rate == pytest.approx(1 - 0.4 / 0.7)  # PromptBench: 1 - unobserved / observed.
    zero = metrics.observed_gap([0.0, 0.0, 0.5], [True, True, False])
    assert zero.gap == -0.5 and math.isnan(zero.drop_rate)
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


def _zhang_micro_f1(key, prediction, no_relation="no_relation"):
    """Zhang et al.'s TACRED scorer (yuhaozhang/tacred-relation, utils/scorer.py),
    restated: a guess is any prediction other than no_relation (an invalid answer
    included); gold counts every non-no_relation key; micro P (1 when nothing is
    guessed), R and F1 = 2PR / (P + R)."""
    correct = guessed = gold = 0
    for g, p in zip(key, prediction, strict=True):
        guessed += p != no_relation
        gold += g != no_relation
        correct += g != no_relation and p == g
    precision = correct / guessed if guessed else 1.0
    recall = correct / gold if gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_tacred_micro_f1_is_zhang_et_al_scorer():
    """The TACRED-family score excludes no_relation exactly as Zhang et al.'s scorer,
    invalid answers counting as guesses of a wrong relation."""
    rng = np.random.default_rng(0)
    labels = ["no_relation", "per:title", "org:founded_by", "per:age"]
    for n in (1, 5, 200):
        for _ in range(40):
            key = list(rng.choice(labels, n, p=[0.7, 0.1, 0.1, 0.1]))
            pred = list(rng.choice(labels + ["invalid"], n))
            tp, fp, fn = metrics.re_outcomes(pred, key, ["no_relation"] * n)
            ours = metrics.f1_from_counts(tp.sum(), fp.sum(), fn.sum())
            assert ours == pytest.approx(_zhang_micro_f1(key, pred), abs=1e-12)
            prf = metrics.re_micro_f1(
                pred, key, positive_labels=labels[1:], negative_label="no_relation"
            )
            assert prf.f1 == ours
