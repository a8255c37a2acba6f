"""The class-aware selective loss (Ben-Baruch et al. 2022) against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from losses import partial_selective_loss, prior_from_annotations


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def softplus(x):
    return math.log1p(math.exp(x))


LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
OBS = torch.tensor([[1, 0, 0], [0, -1, 0]])   # +1 at (0,0), -1 at (1,1), the rest unannotated
# -log p = softplus(-x) for the positive; -log(1 - p) = softplus(x) for the others.
POS = softplus(-2.0)
NEG = softplus(3.0)
UNANN = {(0, 1): -1.0, (0, 2): 0.5, (1, 0): 0.0, (1, 2): -2.0}


def loss(**kwargs):
    return partial_selective_loss(LOGITS, OBS, **kwargs)


def test_negative_mode_without_focusing_is_assume_negative_bce():
    value, ignored = loss(mode="negative", gamma_pos=0, gamma_neg=0, gamma_unann=0)
    assert not ignored.any()
    assert value.item() == pytest.approx((POS + NEG + sum(softplus(x) for x in UNANN.values())) / 6, rel=1e-6)


def test_asymmetric_focusing():
    # Weight (1 - p_t)^gamma: positive (1 - p)^1, negative and unannotated p^gamma.
    value, _ = loss(mode="negative", gamma_pos=1, gamma_neg=1, gamma_unann=2)
    expected = (POS * (1 - sigmoid(2.0)) + NEG * sigmoid(3.0)
                + sum(softplus(x) * sigmoid(x) ** 2 for x in UNANN.values())) / 6
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_probability_shifting_clips_negatives():
    value, _ = loss(mode="ignore", gamma_pos=0, gamma_neg=0, clip=0.05)
    shifted = min(1 - sigmoid(3.0) + 0.05, 1.0)
    assert value.item() == pytest.approx((POS - math.log(shifted)) / 6, rel=1e-6)


def test_ignore_and_class_normalisation():
    value, ignored = loss(mode="ignore", gamma_pos=0, gamma_neg=0)
    assert torch.equal(ignored, OBS == 0)
    assert value.item() == pytest.approx((POS + NEG) / 6, rel=1e-6)
    # Each row has one annotated entry: weight 1 + 1 / (1 + 1) = 1.5.
    value, _ = loss(mode="ignore_normalize", gamma_pos=0, gamma_neg=0)
    assert value.item() == pytest.approx(1.5 * (POS + NEG) / 6, rel=1e-6)


def test_selective_ignores_likely_positives_and_high_prior_classes():
    # Top 1 * B = 2 unannotated by probability: (0,2) p=0.62 and (1,0) p=0.5.
    value, ignored = loss(mode="selective", gamma_pos=0, gamma_neg=0, gamma_unann=0, likelihood_topk=1)
    assert torch.equal(ignored, torch.tensor([[False, False, True], [True, False, False]]))
    assert value.item() == pytest.approx((POS + NEG + softplus(-1.0) + softplus(-2.0)) / 6, rel=1e-6)
    # Class 2's prior 0.9 > 0.5: its unannotated entries are ignored; top-k 0 adds nothing.
    prior = torch.tensor([0.1, 0.2, 0.9])
    _, ignored = loss(mode="selective", prior=prior, prior_threshold=0.5, likelihood_topk=0)
    assert torch.equal(ignored, torch.tensor([[False, False, True], [False, False, True]]))
    with pytest.raises(ValueError):
        loss(mode="bogus")


def test_prior_from_annotations():
    obs = np.array([[1, -1, 0], [0, -1, 1], [1, 0, -1], [0, 0, -1]])
    # Class 0: no observed negative -> 2 of 4 images; class 1: 0 of 2 annotated; class 2: 1 of 3.
    np.testing.assert_allclose(prior_from_annotations(obs), [0.5, 0.0, 1 / 3])
