"""AP / mAP against sklearn.metrics.average_precision_score."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from metrics import average_precision_per_class, mean_average_precision


def sklearn_aps(y_true, y_score):
    return np.array([average_precision_score(y_true[:, k], y_score[:, k]) if y_true[:, k].any() else 0.0
                     for k in range(y_true.shape[1])])


def finite(y_score):
    """The same order and ties without infinities, which sklearn rejects."""
    return np.clip(y_score.astype(np.float64), -1e30, 1e30)


def scores_with_ties(dtype, seed=0):
    """Random labels and scores with ties, plus the columns that take their own paths."""
    rng = np.random.RandomState(seed)
    y_true = rng.rand(300, 13) < 0.2
    y_score = np.round(rng.randn(300, 13) + y_true, 1).astype(dtype)   # 1 decimal: ties, -0.0 beside 0.0
    y_true[:, 1] = False                                # no positive: AP 0
    y_true[:, 2] = True                                 # only positives: AP 1
    y_score[:, 3] = 0.5                                 # one tie: AP = share of positives
    y_score[:4, 4] = [np.inf, -np.inf, np.inf, -np.inf]  # infinities tie among themselves
    y_true[:4, 4] = [True, True, False, False]
    return y_true, y_score


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_size", [1, 5, 32])    # 5: a partial last chunk
def test_ap_equals_sklearn_with_ties(dtype, chunk_size):
    y_true, y_score = scores_with_ties(dtype)
    assert (np.signbit(y_score) & (y_score == 0)).any() and (y_score == 0).any()
    np.testing.assert_allclose(average_precision_per_class(y_true, y_score, chunk_size=chunk_size),
                               sklearn_aps(y_true, finite(y_score)), rtol=0, atol=1e-9)


def test_ap_equals_sklearn_without_ties():
    rng = np.random.RandomState(0)
    y_true = (rng.rand(500, 37) < 0.2).astype(np.float32)
    y_score = rng.randn(500, 37) + y_true
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


@pytest.mark.parametrize("chunk_size", [4, 32])
def test_partial_labels_use_annotated_entries_only_skip_rule(chunk_size):
    y_true, y_score = scores_with_ties(np.float32, seed=1)
    annotated = np.random.RandomState(1).rand(*y_true.shape) < 0.5
    annotated[:4, 4] = True                             # the infinities of column 4 stay in
    annotated[:, 5] &= ~y_true[:, 5]                    # class 5: no annotated positive -> skipped (skip rule)
    annotated[:, 8:] &= ~y_true[:, 8:]                  # a whole chunk without one (chunk_size 4)
    y_score[y_true & ~annotated] = np.inf               # unannotated positives ranked first: no effect
    scored = [k for k in range(y_true.shape[1]) if (y_true & annotated)[:, k].any()]
    expected = [average_precision_score(y_true[annotated[:, k], k], finite(y_score[annotated[:, k], k]))
                for k in scored]
    ap = average_precision_per_class(y_true, y_score, annotated, chunk_size=chunk_size, skip_without_positive=True)
    np.testing.assert_allclose(ap[scored], expected, rtol=0, atol=1e-9)
    assert np.isnan(np.delete(ap, scored)).all() and len(scored) == 6
    assert mean_average_precision(y_true, y_score, annotated, skip_without_positive=True) == pytest.approx(
        100 * np.mean(expected), abs=1e-9)
    assert mean_average_precision(y_true[:, 5:6], y_score[:, 5:6], annotated[:, 5:6], skip_without_positive=True) is None
    # The upstream rule: the same APs, and 0 for every class with annotated entries but no annotated positive.
    upstream = average_precision_per_class(y_true, y_score, annotated, chunk_size=chunk_size)
    np.testing.assert_allclose(upstream[scored], expected, rtol=0, atol=1e-9)
    assert (np.delete(upstream, scored) == 0).all()


# OpenImages-like partial test labels, worked by hand: +1 positive, -1 negative, 0 unannotated.
# Class 0: annotated rows 0-3 = P N P N, scores 0.9 0.8 0.3 0.1 (row 4, unannotated, scores 0.95);
#   ranked: P (precision 1/1), N, P (2/3), N -> AP (1 + 2/3) / 2 = 5/6.
# Class 1: annotated negatives only (rows 0, 1) -> AP 0, counted (upstream's compute_metrics_openimages).
# Class 2: no annotated entry -> skipped by both rules.
OI_OBS = np.array([[1, -1, 0], [-1, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 0]])
OI_SCORES = np.array([[0.9, 0.2, 0.5], [0.8, 0.7, 0.5], [0.3, 0.1, 0.5], [0.1, 0.4, 0.5], [0.95, 0.6, 0.5]],
                     dtype=np.float32)


def test_openimages_rule_on_a_negatives_only_and_an_unannotated_class():
    ap = average_precision_per_class(OI_OBS == 1, OI_SCORES, annotated=OI_OBS != 0)
    np.testing.assert_allclose(ap[:2], [5 / 6, 0.0], rtol=0, atol=1e-12)
    assert np.isnan(ap[2])
    assert average_precision_score([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(5 / 6)
    assert mean_average_precision(OI_OBS == 1, OI_SCORES, OI_OBS != 0) == pytest.approx(100 * (5 / 6 + 0) / 2)
    assert mean_average_precision(OI_OBS == 1, OI_SCORES, OI_OBS != 0, skip_without_positive=True) == pytest.approx(
        100 * 5 / 6)


def test_openimages_rule_in_evaluate_and_its_groups():
    """train.evaluate's mAP and per-group means (groups G1 = {class 0}, G2 = {classes 1, 2})."""
    import types

    import torch

    import train

    class Scores(torch.nn.Module):            # "images" are the scores
        def forward(self, images):
            return images
    import labels
    split = types.SimpleNamespace(labels=None, labels_obs=labels.Labels(labels.DenseStore(OI_OBS), range(len(OI_OBS))))
    loader = [(torch.from_numpy(OI_SCORES[:3]), torch.arange(3)),
              (torch.from_numpy(OI_SCORES[3:]), torch.arange(3, len(OI_SCORES)))]
    groups = np.array([0, 1, 1])
    upstream = train.evaluate(Scores(), loader, split, "cpu", class_groups=groups)
    assert upstream == pytest.approx({"map": 100 * 5 / 12, "map_G1": 100 * 5 / 6, "map_G2": 0.0})
    skip = train.evaluate(Scores(), loader, split, "cpu", class_groups=groups, skip_without_positive=True)
    assert skip["map"] == pytest.approx(100 * 5 / 6) and skip["map_G2"] is None


def test_shape_mismatch_and_nan_are_errors():
    with pytest.raises(ValueError):
        average_precision_per_class(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        average_precision_per_class(np.eye(3), np.array([[0.1, np.nan, 0.3]] * 3))


def test_ap_of_known_entries_equals_sklearn_and_the_masked_dense_ap():
    """average_precision_entries (memory of the known entries only) against sklearn on each class's
    known entries and against the dense computation with an annotated mask: ties within a class,
    equal scores across classes, a class without a positive and one without any known entry."""
    from metrics import average_precision_entries
    rng = np.random.RandomState(3)
    n, k = 300, 7
    scores = rng.randint(0, 25, size=(n, k)).astype(np.float32) / 5        # many ties
    obs = rng.choice([-1, 0, 1], size=(n, k), p=[0.45, 0.35, 0.2]).astype(np.int8)
    obs[:, 5] = np.where(obs[:, 5] == 1, -1, obs[:, 5])                     # no known positive
    obs[:, 6] = 0                                                          # nothing known
    rows, cols = np.nonzero(obs)
    order = rng.permutation(len(rows))                                     # any order of the entries
    ap = average_precision_entries(cols[order], scores[rows, cols][order], obs[rows, cols][order] == 1, k)
    for c in range(5):
        known = obs[:, c] != 0
        assert ap[c] == pytest.approx(average_precision_score(obs[known, c] == 1, scores[known, c]), abs=1e-12)
    assert ap[5] == 0 and np.isnan(ap[6])
    dense = average_precision_per_class(obs == 1, scores, annotated=obs != 0)
    np.testing.assert_allclose(ap, dense, rtol=0, atol=1e-12)
    skipped = average_precision_entries(cols, scores[rows, cols], obs[rows, cols] == 1, k, skip_without_positive=True)
    assert np.isnan(skipped[5]) and np.isnan(skipped[6])
    with pytest.raises(ValueError, match="NaN"):
        average_precision_entries([0], [np.nan], [True], 1)
