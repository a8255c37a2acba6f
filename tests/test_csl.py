"""The class-aware selective loss (Ben-Baruch et al. 2022) against hand-computed values."""
import json
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


def test_model_prior_is_the_mean_predicted_probability():
    """A model whose logits are logit(q_k) for every image estimates the prior q exactly."""
    import train
    q = torch.tensor([0.1, 0.5, 0.8])

    class Constant(torch.nn.Module):
        def forward(self, images):
            return torch.logit(q).expand(len(images), -1)
    loader = [(torch.zeros(4, 3, 2, 2), torch.arange(4)), (torch.zeros(3, 3, 2, 2), torch.arange(3))]
    np.testing.assert_allclose(train.estimate_class_prior(Constant(), loader, "cpu"), q.numpy(), rtol=1e-6)


def test_csl_through_the_cli_saves_and_reuses_priors(demo_args, tmp_path, capsys):
    import main
    assert main.main(demo_args("--mod_scheme", "CSL", "--csl_mode", "ignore", "--num_epochs", "1",
                               "--exp_name", "ignore")) == 0
    prior_path = tmp_path / "ignore" / "class_prior_model.npy"
    prior = np.load(prior_path)
    assert prior.shape == (12,) and ((prior >= 0) & (prior <= 1)).all()
    assert main.main(demo_args("--mod_scheme", "CSL", "--csl_prior", str(prior_path), "--num_epochs", "1",
                               "--exp_name", "selective")) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "selective" / "class_prior.npy"), prior)
    log = json.loads((tmp_path / "selective" / "log.jsonl").read_text().splitlines()[0])
    assert log["num_modified"] > 0                    # ignored labels are logged as modified
    np.save(tmp_path / "bad.npy", np.zeros(5))
    assert main.main(demo_args("--mod_scheme", "CSL", "--csl_prior", str(tmp_path / "bad.npy"),
                               "--exp_name", "bad")) == 2
    assert "expected (12,)" in capsys.readouterr().err
