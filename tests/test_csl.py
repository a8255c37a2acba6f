"""The class-aware selective loss (Ben-Baruch et al. 2022) against hand-computed values."""
import json
import math

import numpy as np
import pytest
import torch

from methods.csl import TrainingPrior, partial_selective_loss, prior_from_annotations


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
    """The loss divided by B*K = 6 (reduction mean), as the expectations below are written."""
    return partial_selective_loss(LOGITS, OBS, **{"reduction": "mean", **kwargs})


def test_default_reduction_is_the_csl_codes_sum():
    value, _ = partial_selective_loss(LOGITS, OBS, mode="negative", gamma_pos=0, gamma_neg=0, gamma_unann=0)
    assert value.item() == pytest.approx(POS + NEG + sum(softplus(x) for x in UNANN.values()), rel=1e-6)
    with pytest.raises(ValueError):
        partial_selective_loss(LOGITS, OBS, reduction="max")


def test_selective_with_a_high_prior_class_and_top_k_worked_by_hand():
    """Prior 0.9 > 0.5 ignores class 2's unannotated (0,2) and (1,2). Top-k 1 * B = 2 ranks all four
    unannotated entries by p, as the CSL code does (prior-ignored ones included): (0,2) p = 0.62 and
    (1,0) p = 0.5, so (0,1) p = 0.27 is the only unannotated negative left. With the default focusing
    (gamma_pos 0, gamma_neg 1, gamma_unann 4) the summed loss is
        softplus(-2) + softplus(3) * sigmoid(3) + softplus(-1) * sigmoid(-1)^4."""
    prior = torch.tensor([0.1, 0.2, 0.9])
    value, ignored = partial_selective_loss(LOGITS, OBS, mode="selective", prior=prior, prior_threshold=0.5,
                                            likelihood_topk=1)
    assert torch.equal(ignored, torch.tensor([[False, False, True], [True, False, True]]))
    expected = softplus(-2.0) + softplus(3.0) * sigmoid(3.0) + softplus(-1.0) * sigmoid(-1.0) ** 4
    assert value.item() == pytest.approx(expected, rel=1e-6)


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
    # Observed labels [[1, -1, 0], [0, -1, 1], [1, 0, -1], [0, 0, -1]], counted per class: positives
    # 2, 0, 1 and negatives 0, 2, 2. Class 0: no observed negative -> 2 of 4 images; class 1: 0 of 2
    # annotated; class 2: 1 of 3.
    np.testing.assert_allclose(prior_from_annotations([2, 0, 1], [0, 2, 2], 4), [0.5, 0.0, 1 / 3])


def test_training_prior_is_the_running_mean_over_all_training_batches():
    """As the CSL code's ComputePrior: every row of every batch counts once, over the epochs.
    Batches of 2 rows at p = (0.5, 0.2) and 1 row at p = (0.8, 0.2): (2 * 0.5 + 0.8) / 3 = 0.6."""
    prior = TrainingPrior(2)
    prior.update(torch.logit(torch.tensor([[0.5, 0.2], [0.5, 0.2]])))
    prior.update(torch.logit(torch.tensor([[0.8, 0.2]])))
    np.testing.assert_allclose(prior.mean(), [0.6, 0.2], rtol=1e-6)
    resumed = TrainingPrior(2)
    resumed.load_state_dict(prior.state_dict())
    np.testing.assert_allclose(resumed.mean(), [0.6, 0.2], rtol=1e-6)
    old = TrainingPrior(2)                 # a checkpoint of 0976ac2, whose count was an int
    old.load_state_dict({"sum": prior.sum.clone(), "count": 3})
    np.testing.assert_allclose(old.mean(), [0.6, 0.2], rtol=1e-6)


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
    np.save(tmp_path / "logits.npy", np.linspace(-2, 2, 12))
    assert main.main(demo_args("--mod_scheme", "CSL", "--csl_prior", str(tmp_path / "logits.npy"),
                               "--exp_name", "bad2")) == 2
    assert "[0, 1]" in capsys.readouterr().err


def test_annotation_priors_without_observed_negatives_are_refused(demo_args, capsys):
    import main
    assert main.main(demo_args("--mod_scheme", "CSL", "--csl_prior", "annotations", "--num_epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "no observed negative" in err and "two_stage" in err


def test_two_stage_prior_trains_the_ignore_model_first(demo_args, tmp_path):
    import main
    assert main.main(demo_args("--mod_scheme", "CSL", "--num_epochs", "1", "--exp_name", "sel")) == 0
    stage1 = tmp_path / "sel" / "csl_prior_ignore"
    assert json.loads((stage1 / "config.json").read_text())["method_options"]["csl_mode"] == "ignore"
    prior = np.load(stage1 / "class_prior_model.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "sel" / "class_prior.npy"), prior)
    assert json.loads((tmp_path / "sel" / "config.json").read_text())["method_options"]["csl_mode"] == "selective"


def test_a_csl_run_folder_of_0976ac2_resumes(demo_args, tmp_path, monkeypatch):
    """0976ac2 kept CSL's flags at config.json's top level and the prior model's running sums in
    last.pt's "training_prior" (its count an int): such a folder resumes to the uninterrupted run's numbers."""
    import main
    from helpers import interrupt, read_log
    args = demo_args("--mod_scheme", "CSL", "--csl_mode", "ignore", "--num_epochs", "3")
    assert main.main([*args, "--exp_name", "whole"]) == 0
    interrupt(monkeypatch, args, "old", lambda calls, a: calls == 3)
    old = tmp_path / "old"
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, **config.pop("method_options"), "method_options": {}}))
    checkpoint = torch.load(old / "last.pt", weights_only=True)
    prior = checkpoint.pop("label_estimate")
    torch.save({**checkpoint, "label_estimate": None, "training_prior": {"sum": prior["sum"], "count": int(prior["count"])}},
                old / "last.pt")
    assert main.main([*args, "--exp_name", "old", "--resume"]) == 0
    assert read_log(old) == read_log(tmp_path / "whole")
    np.testing.assert_array_equal(np.load(old / "class_prior_model.npy"), np.load(tmp_path / "whole" / "class_prior_model.npy"))
