"""CP, CR, CF1, OP, OR, OF1 against a hand-worked case and scikit-learn; F1-optimal thresholds."""
import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from metrics import f1_thresholds, report, threshold_metrics

# 3 images, 2 classes. At 0.5 the predictions are [[1, 1], [0, 1], [1, 1]]:
# class 0: TP 1 (image 0), FP 1 (image 2), FN 1 (image 1) -> P 1/2, R 1/2
# class 1: TP 2 (images 1, 2), FP 1 (image 0), FN 0     -> P 2/3, R 1
Y = np.array([[1, 0], [1, 1], [0, 1]])
S = np.array([[0.9, 0.6], [0.4, 0.7], [0.6, 0.8]])


def test_hand_worked_case():
    m = threshold_metrics(Y, S)
    cp, cr = (1 / 2 + 2 / 3) / 2, (1 / 2 + 1) / 2                      # 7/12, 3/4
    assert m["CP"] == pytest.approx(100 * 7 / 12) and m["CR"] == pytest.approx(75)
    assert m["CF1"] == pytest.approx(100 * 2 * cp * cr / (cp + cr))      # 21/32
    assert m["CF1"] == pytest.approx(100 * 21 / 32)
    assert m["OP"] == pytest.approx(100 * 3 / 5) and m["OR"] == pytest.approx(75)   # 3 TP of 5 predicted, of 4 true
    assert m["OF1"] == pytest.approx(100 * 2 / 3)
    np.testing.assert_allclose(m["per_class"], 100 * np.array([[1 / 2, 1 / 2, 1 / 2], [2 / 3, 1, 0.8]]))


def test_per_class_thresholds_and_annotated_mask():
    m = threshold_metrics(Y, S, thresholds=np.array([0.95, 0.75]))   # predictions [[0, 0], [0, 0], [0, 1]]
    np.testing.assert_allclose(m["per_class"][:, :2], 100 * np.array([[0, 0], [1, 1 / 2]]))  # P 0 when nothing predicted
    # Leaving out image 2 of class 0 (its false positive): class 0 is TP 1, FN 1 -> P 1, R 1/2.
    annotated = np.ones_like(Y, bool)
    annotated[2, 0] = False
    m = threshold_metrics(Y, S, annotated=annotated)
    np.testing.assert_allclose(m["per_class"][0], 100 * np.array([1, 1 / 2, 2 / 3]))
    assert m["OP"] == pytest.approx(100 * 3 / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_on_random_data(seed):
    rng = np.random.RandomState(seed)
    y, s = rng.rand(60, 7) < 0.3, rng.rand(60, 7)
    y[:, 3] = False                                                       # a class without positives
    m = threshold_metrics(y, s, 0.4)
    pred = s >= 0.4
    p, r, _, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert (m["CP"], m["CR"]) == pytest.approx((100 * p, 100 * r))
    assert m["CF1"] == pytest.approx(100 * 2 * p * r / (p + r))
    micro = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)[:3]
    assert (m["OP"], m["OR"], m["OF1"]) == pytest.approx(tuple(100 * v for v in micro))
    np.testing.assert_allclose(m["per_class"][:, 2], 100 * f1_score(y, pred, average=None, zero_division=0))


def test_f1_thresholds_hand_worked():
    # class 0 truth [1, 1, 0], scores [0.9, 0.4, 0.6]: F1 at 0.4 = 0.8, at 0.6 = 0.5, at 0.9 = 2/3.
    # class 1 truth [0, 1, 1], scores [0.6, 0.7, 0.8]: F1 at 0.7 = 1 (the best).
    # class 2 has no positive: it keeps the default.
    y = np.column_stack([Y, [0, 0, 0]])
    s = np.column_stack([S, [0.1, 0.2, 0.3]])
    np.testing.assert_allclose(f1_thresholds(y, s), [0.4, 0.7, 0.5])
    annotated = np.ones_like(y, bool)
    annotated[1, 0] = False                      # without image 1, class 0 is best at 0.9 (F1 1)
    np.testing.assert_allclose(f1_thresholds(y, s, annotated), [0.9, 0.7, 0.5])


def test_report_names_every_class():
    logits = np.log(S / (1 - S))
    r = report(Y, logits, ["cat", "dog"], 0.5)
    # cat ranks +, -, + (AP (1/1 + 2/3) / 2); dog ranks its two positives first (AP 1).
    assert r["per_class_ap"] == pytest.approx({"cat": 100 * (1 / 1 + 2 / 3) / 2, "dog": 100.0})
    assert r["per_class"]["dog"] == pytest.approx({"precision": 200 / 3, "recall": 100.0, "f1": 80.0})
    assert r["threshold"] == 0.5 and r["OF1"] == pytest.approx(200 / 3)


def test_known_entry_metrics_equal_the_annotated_dense_ones():
    """threshold_metrics_entries and f1_thresholds_entries (partially labelled splits: memory of the
    known entries only) give the dense functions' numbers with an annotated mask."""
    from metrics import f1_thresholds_entries, threshold_metrics_entries
    rng = np.random.RandomState(1)
    obs = rng.choice([-1, 0, 1], size=(80, 5), p=[0.4, 0.3, 0.3]).astype(np.int8)
    obs[:, 4] = 0                                           # a class with nothing known
    scores = rng.rand(80, 5)
    rows, cols = np.nonzero(obs)
    thresholds = np.array([0.3, 0.5, 0.7, 0.5, 0.5])
    dense = threshold_metrics(obs == 1, scores, thresholds, annotated=obs != 0)
    entries = threshold_metrics_entries(cols, obs[rows, cols] == 1, scores[rows, cols], thresholds, 5)
    np.testing.assert_allclose(entries.pop("per_class"), dense.pop("per_class"), rtol=0, atol=1e-12)
    assert entries == pytest.approx(dense, abs=1e-12)
    np.testing.assert_array_equal(f1_thresholds_entries(cols, obs[rows, cols] == 1, scores[rows, cols], 5),
                                  f1_thresholds(obs == 1, scores, annotated=obs != 0))
