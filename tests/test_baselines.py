"""The baselines of Tables 2 and 3 (Cole et al. 2021) and the absolute-threshold LL variants,
against values computed by hand from their definitions on a 2x3 example."""
import math

import pytest
import torch

import losses
import methods
from helpers import method_loss
from methods import cole

# Rows: images; columns: classes. Observed: +1 at (0,0), -1 at (1,1), the rest unobserved.
LOGITS = [[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]
OBS = [[1, 0, 0], [0, -1, 0]]
K = 3


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def nl(p):
    """Cole et al.'s -log(p + 1e-5)."""
    return -math.log(p + 1e-5)


P = [[sigmoid(x) for x in row] for row in LOGITS]
ENTRIES = [(i, j) for i in range(2) for j in range(3)]


def loss(scheme, epoch=2, estimate_logits=None, **cfg):
    value, modified = method_loss(scheme, LOGITS, OBS, epoch, state=estimate_logits, **cfg)
    return value.item(), modified


def test_wan_divides_assumed_negatives_by_k_minus_1():
    expected = 0.0
    for i, j in ENTRIES:
        if OBS[i][j] == 1:
            expected += nl(P[i][j])
        elif OBS[i][j] == -1:                       # an observed negative keeps full weight
            expected += nl(1 - P[i][j])
        else:
            expected += nl(1 - P[i][j]) / (K - 1)
    value, modified = loss("WAN")
    assert value == pytest.approx(expected / 6, rel=1e-5)
    assert not modified.any()


def test_lsan_smooths_every_target_by_0_1():
    expected = 0.0
    for i, j in ENTRIES:
        target = 0.9 if OBS[i][j] == 1 else 0.1
        expected += target * nl(P[i][j]) + (1 - target) * nl(1 - P[i][j])
    assert loss("LSAN")[0] == pytest.approx(expected / 6, rel=1e-5)


def test_iu_uses_the_observed_entries_only():
    # (0,0) observed positive, (1,1) observed negative; the sum is still divided by B*K = 6.
    expected = (nl(P[0][0]) + nl(1 - P[1][1])) / 6
    assert loss("IU")[0] == pytest.approx(expected, rel=1e-5)


def test_epr_adds_the_expected_positive_regularizer():
    k_hat = 1.5
    mean_positives = (sum(P[0]) + sum(P[1])) / 2
    expected = (nl(P[0][0]) + nl(1 - P[1][1])) / 6 + (mean_positives - k_hat) ** 2 / K ** 2
    assert loss("EPR", expected_num_pos=k_hat)[0] == pytest.approx(expected, rel=1e-5)


def test_role_combines_positive_cross_and_regularizer_terms():
    k_hat = 2.0
    estimate = [[0.3, -0.2, 1.0], [0.0, 0.5, -1.0]]
    G = [[sigmoid(x) for x in row] for row in estimate]
    matrix = 0.0
    for i, j in ENTRIES:
        f, g = P[i][j], G[i][j]
        if OBS[i][j] == 1:
            matrix += 0.5 * (nl(f) + nl(g))
        matrix += 0.5 * (g * nl(f) + (1 - g) * nl(1 - f) + f * nl(g) + (1 - f) * nl(1 - g))
    epr_f = ((sum(P[0]) + sum(P[1])) / 2 - k_hat) ** 2 / K ** 2
    epr_g = ((sum(G[0]) + sum(G[1])) / 2 - k_hat) ** 2 / K ** 2
    expected = matrix / 6 + 0.5 * (epr_f + epr_g)
    value, modified = loss("ROLE", expected_num_pos=k_hat, estimate_logits=torch.tensor(estimate))
    assert value == pytest.approx(expected, rel=1e-5)
    assert not modified.any()


def test_role_trains_the_classifier_and_the_estimate_each_against_the_other_detached():
    logits = torch.tensor(LOGITS, requires_grad=True)
    estimate = torch.zeros(2, 3, requires_grad=True)                 # g = 0.5 everywhere
    value, _ = method_loss("ROLE", logits, OBS, 1, state=estimate, expected_num_pos=1.5)
    value.backward()
    # d/dx of the cross term 0.5 * [g nl(f) + (1-g) nl(1-f)] / 6 at an unobserved entry, g = 0.5,
    # with f = sigmoid(x): 0.5/6 * [-0.5 f(1-f)/(f+eps) + 0.5 f(1-f)/(1-f+eps)], plus the EPR term
    # 0.5 * 2 (mean_f - k_hat) / K^2 * f(1-f) / B.
    f = P[0][1]
    dfdx = f * (1 - f)
    cross = 0.5 / 6 * (-0.5 * dfdx / (f + 1e-5) + 0.5 * dfdx / (1 - f + 1e-5))
    mean_f = (sum(P[0]) + sum(P[1])) / 2
    reg = 0.5 * 2 * (mean_f - 1.5) / K ** 2 * dfdx / 2
    assert logits.grad[0, 1].item() == pytest.approx(cross + reg, rel=1e-4)


def test_baselines_use_the_bounded_log_of_upstream():
    # 1 - sigmoid(30) is 0 in float32: -log(0 + 1e-5) = log(1e5), not infinity.
    value, _ = method_loss("IU", [[30.0]], [[-1]], 1)
    assert value.item() == pytest.approx(math.log(1e5), rel=1e-4)


def test_baselines_that_need_k_hat_or_the_estimate_say_so():
    with pytest.raises(ValueError, match="expected_num_pos"):
        loss("EPR")
    with pytest.raises(ValueError, match="estimate_logits"):
        loss("ROLE", expected_num_pos=1.0)


def test_label_estimate_initialisation():
    obs = torch.tensor([[1, 0, -1, 0]] * 50)
    estimate = cole.LabelEstimate(obs, generator=torch.Generator().manual_seed(0))
    assert estimate.logits.shape == (50, 4) and estimate.logits.requires_grad
    probs = torch.sigmoid(estimate.logits.detach())
    assert torch.allclose(probs[:, 0], torch.tensor(0.995))
    assert torch.allclose(probs[:, 2], torch.tensor(0.005))
    unobserved = probs[:, [1, 3]]
    assert unobserved.min() >= 0.4 - 1e-6 and unobserved.max() <= 0.6 + 1e-6 and unobserved.std() > 0.03
    assert torch.equal(estimate(torch.tensor([3, 1])), estimate.logits[[3, 1]])


@pytest.mark.parametrize("scheme", ["LL-R-abs", "LL-Ct-abs"])
def test_absolute_threshold_schedule(scheme):
    # R(t) = R0 - t * delta_abs = 1.5 - 0.5 t. Unobserved losses: (0,1) 0.313, (0,2) 0.974,
    # (1,0) 0.693, (1,2) 0.127; the observed (1,1) has 3.049 but is never modified.
    bce0 = [[math.log1p(math.exp(x)) for x in row] for row in LOGITS]      # BCE(x, 0)
    schedule = dict(R0=1.5, delta_abs=0.5)
    assert losses.absolute_threshold(1, **schedule) == math.inf
    assert losses.absolute_threshold(2, **schedule) == 0.5
    _, modified = loss(scheme, epoch=1, **schedule)
    assert not modified.any()                                               # warm-up
    value, modified = loss(scheme, epoch=2, **schedule)                     # R = 0.5
    assert modified.tolist() == [[False, False, True], [True, False, False]]
    replaced = (0.0, 0.0) if scheme == "LL-R-abs" else (math.log1p(math.exp(-0.5)), math.log(2))
    expected = (math.log1p(math.exp(-2.0)) + bce0[0][1] + replaced[0] + replaced[1] + bce0[1][1] + bce0[1][2]) / 6
    assert value == pytest.approx(expected, rel=1e-6)
    _, modified = loss(scheme, epoch=3, **schedule)                         # R = 0: every unobserved
    assert torch.equal(modified, torch.tensor(OBS) == 0)


def test_rate_schedule_is_zero_for_baselines_and_absolute_variants():
    for scheme in ("WAN", "LSAN", "EPR", "ROLE", "IU", "LL-R-abs", "LL-Ct-abs"):
        assert methods.get(scheme).rate(5, 0.4) == 0.0 and not methods.get(scheme).rate_scheme
