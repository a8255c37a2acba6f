"""AP / mAP against sklearn.metrics.average_precision_score."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from metrics import average_precision_per_class, mean_average_precision


def sklearn_aps(y_true, y_score):
    return np.array([average_precision_score(y_true[:, k], y_score[:, k]) if y_true[:, k].any() else 0.0
                     for k in range(y_true.shape[1])])


@pytest.mark.parametrize("decimals", [None, 1])        # 1 decimal: many tied scores
def test_ap_equals_sklearn_with_ties(decimals):
    rng = np.random.RandomState(0)
    y_true = (rng.rand(500, 37) < 0.2).astype(np.float32)
    y_score = rng.randn(500, 37) + y_true
    if decimals is not None:
        y_score = np.round(y_score, decimals)
    np.testing.assert_allclose(average_precision_per_class(y_true, y_score, chunk_size=8),
                               sklearn_aps(y_true, y_score), rtol=0, atol=1e-9)


def test_hand_computed_ap_and_class_without_positives():
    # Class 0 ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = (1/1 + 2/3) / 2 = 5/6.
    # Class 1: a tie of a positive and a negative at the top: precision 1/2 at the tie, AP = 1/2.
    # Class 2: no positive: AP 0 (upstream convention).
    y_true = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    y_score = np.array([[0.9, 0.5, 0.1], [0.8, 0.5, 0.2], [0.7, 0.1, 0.3]])
    np.testing.assert_allclose(average_precision_per_class(y_true, y_score), [5 / 6, 1 / 2, 0.0])
    assert mean_average_precision(y_true, y_score) == pytest.approx(100 * (5 / 6 + 1 / 2) / 3)


def test_partial_labels_use_annotated_entries_only():
    rng = np.random.RandomState(1)
    y_true = (rng.rand(200, 6) < 0.3)
    y_score = rng.rand(200, 6)
    annotated = rng.rand(200, 6) < 0.5
    annotated[:, 5] &= ~y_true[:, 5]                    # class 5: no annotated positive -> skipped
    expected = [average_precision_score(y_true[annotated[:, k], k], y_score[annotated[:, k], k]) for k in range(5)]
    ap = average_precision_per_class(y_true, y_score, annotated)
    np.testing.assert_allclose(ap[:5], expected, rtol=0, atol=1e-9)
    assert np.isnan(ap[5])
    assert mean_average_precision(y_true, y_score, annotated) == pytest.approx(100 * np.mean(expected), abs=1e-9)
    assert mean_average_precision(y_true[:, 5:], y_score[:, 5:], annotated[:, 5:]) is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        average_precision_per_class(np.zeros((3, 2)), np.zeros((3, 3)))
