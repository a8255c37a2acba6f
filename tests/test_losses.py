"""Losses against values computed by hand from the paper's equations on a 2x3 example."""
import math

import pytest
import torch
import torch.nn.functional as F

import methods
from helpers import method_loss
from losses import constant_rate, growing_rate, large_loss_mask, num_to_modify, permanent_corrections


def compute_batch_loss(logits, obs, scheme, delta_rel, epoch):
    """A scheme's registered loss (methods/large_loss.py) on one batch: (loss, modified)."""
    return method_loss(scheme, logits, obs, epoch, delta_rel=delta_rel)


def softplus(x):
    """BCE(x, 0) = log(1 + e^x); BCE(x, 1) = softplus(-x)."""
    return math.log1p(math.exp(x))


# Rows: images; columns: classes. Observed: +1 at (0,0), -1 at (1,1), the rest unobserved.
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
OBS = torch.tensor([[1, 0, 0], [0, -1, 0]])
# Assume-negative loss of every entry: (0,0) is positive, all others negative targets.
AN = [[softplus(-2.0), softplus(-1.0), softplus(0.5)], [softplus(0.0), softplus(3.0), softplus(-2.0)]]
# Unobserved losses: (0,1) 0.313, (0,2) 0.974, (1,0) 0.693, (1,2) 0.127; the largest two are
# (0,2) and (1,0). (1,1) has the largest loss of all (3.049) but is observed: never modified.
TOP2 = torch.tensor([[False, False, True], [True, False, False]])


def test_rate_schedule_in_percent_per_epoch():
    assert growing_rate(1, 0.2) == 0.0                      # warm-up
    assert constant_rate(1, 0.2) == 0.0
    assert growing_rate(3, 0.2) == pytest.approx(0.004)     # (3-1) * 0.2 %
    assert growing_rate(7, 0.5) == pytest.approx(0.03)
    assert constant_rate(7, 0.5) == pytest.approx(0.005)    # constant
    # The registry's schemes: LL-R and LL-Ct grow, LL-Cp is constant, Naive AN modifies nothing.
    assert methods.get("LL-Ct").rate(7, 0.5) == pytest.approx(0.03)
    assert methods.get("LL-Cp").rate(7, 0.5) == pytest.approx(0.005) and methods.get("AN").rate(7, 0.5) == 0.0


def test_k_from_epoch_does_not_drift():
    # SPEC 4: delta 0.5 %, B=16, K=20: k = ceil(320 * (t - 1) * 0.005) = ceil(1.6 * (t - 1)), by hand:
    # 0, ceil 1.6, 3.2, 4.8, 6.4, 8.0, 9.6, 11.2, 12.8, 14.4 for t = 1..10. Epoch 6 is 8, where
    # upstream's repeated subtraction of the rate drifts to 9.
    expected = [0, 2, 4, 5, 7, 8, 10, 12, 13, 15]
    assert [num_to_modify(16, 20, growing_rate(t, 0.5)) for t in range(1, 11)] == expected
    # The last, smaller batch has its own k: ceil(5 * 20 * 0.025) = 3.
    assert num_to_modify(5, 20, growing_rate(6, 0.5)) == 3
    assert num_to_modify(16, 80, growing_rate(3, 0.2)) == 6     # ceil(1280 * 0.004 = 5.12)


@pytest.mark.parametrize("scheme", ["AN", "LL-R", "LL-Ct", "LL-Cp"])
def test_epoch_one_is_plain_assume_negative(scheme):
    loss, modified = compute_batch_loss(LOGITS, OBS, scheme, delta_rel=30, epoch=1)
    assert not modified.any()
    assert loss.item() == pytest.approx(sum(map(sum, AN)) / 6, rel=1e-6)
    target = (OBS == 1).float()
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(LOGITS, target).item(), rel=1e-6)


def test_ll_r_rejects_the_k_largest_unobserved_losses():
    # Epoch 2, delta 30 %: r = 0.3, k = ceil(6 * 0.3) = 2.
    loss, modified = compute_batch_loss(LOGITS, OBS, "LL-R", delta_rel=30, epoch=2)
    assert torch.equal(modified, TOP2)
    expected = (AN[0][0] + AN[0][1] + 0 + 0 + AN[1][1] + AN[1][2]) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_ll_ct_corrects_the_k_largest_unobserved_losses():
    loss, modified = compute_batch_loss(LOGITS, OBS, "LL-Ct", delta_rel=30, epoch=2)
    assert torch.equal(modified, TOP2)
    expected = (AN[0][0] + AN[0][1] + softplus(-0.5) + softplus(-0.0) + AN[1][1] + AN[1][2]) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_ll_ct_grows_k_while_ll_cp_keeps_it_constant():
    # Epoch 3, delta 30 %: LL-Ct r = 0.6, k = ceil(3.6) = 4 (all unobserved); LL-Cp r = 0.3, k = 2.
    _, modified_ct = compute_batch_loss(LOGITS, OBS, "LL-Ct", delta_rel=30, epoch=3)
    _, modified_cp = compute_batch_loss(LOGITS, OBS, "LL-Cp", delta_rel=30, epoch=3)
    assert torch.equal(modified_ct, OBS == 0)
    assert torch.equal(modified_cp, TOP2)


def test_k_beyond_the_unobserved_entries_never_touches_observed_ones():
    # r = 0.9: k = ceil(5.4) = 6 > 4 unobserved entries; the observed (0,0) and (1,1) keep their loss.
    loss, modified = compute_batch_loss(LOGITS, OBS, "LL-R", delta_rel=90, epoch=2)
    assert torch.equal(modified, OBS == 0)
    assert loss.item() == pytest.approx((AN[0][0] + AN[1][1]) / 6, rel=1e-6)


def test_only_unobserved_entries_are_modified_and_count_is_k():
    gen = torch.Generator().manual_seed(0)
    for batch_size in (16, 7):                   # a full batch and a smaller last batch
        logits = torch.randn(batch_size, 20, generator=gen) * 3
        obs = torch.randint(-1, 2, (batch_size, 20), generator=gen)
        obs[:, :10] = 0                            # enough unobserved entries for k
        _, modified = compute_batch_loss(logits, obs, "LL-Ct", delta_rel=2.5, epoch=5)
        assert not (modified & (obs != 0)).any()
        assert modified.sum().item() == math.ceil(batch_size * 20 * 4 * 2.5 / 100)
        unobserved_losses = F.softplus(logits)[obs == 0]
        threshold = unobserved_losses.sort(descending=True).values[modified.sum() - 1]
        assert (F.softplus(logits)[modified] >= threshold).all()


def test_rate_zero_equals_assume_negative_bce():
    logits = torch.randn(4, 5)
    obs = torch.tensor([[1, 0, 0, -1, 0]] * 4)
    loss, modified = compute_batch_loss(logits, obs, "LL-R", delta_rel=0.0, epoch=5)
    assert not modified.any()
    target = (obs == 1).float()
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits, target))


def test_large_loss_mask_with_k_zero_and_gradients_flow():
    assert not large_loss_mask(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool), 0).any()
    logits = LOGITS.clone().requires_grad_()
    loss, _ = compute_batch_loss(logits, OBS, "LL-R", delta_rel=30, epoch=2)
    loss.backward()
    assert logits.grad[0, 2] == 0 and logits.grad[1, 0] == 0      # rejected: no gradient
    # d/dx softplus(x) / 6 = sigmoid(x) / 6 for a kept negative term.
    assert logits.grad[0, 1].item() == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item() / 6, rel=1e-6)


# LL-Cp's permanent write (issue 27). Masked losses (observed entries at 0), by hand:
# (0,0) 0 [observed], (0,1) 0.313, (0,2) 0.974, (1,0) 0.693, (1,1) 0 [observed], (1,2) 0.127.
@pytest.mark.parametrize("delta_rel, corrected, written_by_authors", [
    # k = ceil(6 * 50 %) = 3: the loss corrects 0.974, 0.693, 0.313; the authors write the 2 strictly
    # above the 3rd largest (0.313).
    (50, [[0, 1, 1], [1, 0, 0]], [[0, 0, 1], [1, 0, 0]]),
    # k = ceil(6 * 10 %) = 1: the loss corrects 0.974; nothing lies strictly above it, so nothing is written.
    (10, [[0, 0, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]),
])
def test_ll_cp_writes_the_corrected_entries_strictly_above_the_kth_loss(delta_rel, corrected, written_by_authors):
    loss, modified = compute_batch_loss(LOGITS, OBS, "LL-Cp", delta_rel=delta_rel, epoch=2)
    assert torch.equal(modified, torch.tensor(corrected, dtype=torch.bool))
    k = num_to_modify(2, 3, constant_rate(2, delta_rel))
    assert k == sum(map(sum, corrected))
    authors = permanent_corrections(LOGITS, OBS, modified, k)
    assert torch.equal(authors, torch.tensor(written_by_authors, dtype=torch.bool))
    assert authors.sum() == k - 1
    assert torch.equal(permanent_corrections(LOGITS, OBS, modified, k, "all"), modified)
    # The loss itself does not depend on the write rule: the k corrected entries use BCE(x, 1).
    corrected_an = [[AN[i][j] if not corrected[i][j] else softplus(-LOGITS[i, j].item()) for j in range(3)]
                    for i in range(2)]
    assert loss.item() == pytest.approx(sum(map(sum, corrected_an)) / 6, rel=1e-6)


def test_ll_cp_write_with_a_tie_at_the_kth_loss_follows_the_authors_comparison():
    # (0,1) and (0,2) tie at softplus(1) = 1.313; then (1,0) softplus(0.5) = 0.974, (1,2) softplus(-2) = 0.127.
    logits = torch.tensor([[2.0, 1.0, 1.0], [0.5, 3.0, -2.0]])
    tied = torch.tensor([[False, True, True], [False, False, False]])
    # k = 2: both tied entries are corrected and the k-th value is theirs: none is strictly above it.
    _, modified = compute_batch_loss(logits, OBS, "LL-Cp", delta_rel=30, epoch=2)
    assert torch.equal(modified, tied)
    assert not permanent_corrections(logits, OBS, modified, 2).any()
    # k = 3: the k-th value is 0.974, so both tied entries (and only they) are written: 2 = k - 1.
    _, modified = compute_batch_loss(logits, OBS, "LL-Cp", delta_rel=50, epoch=2)
    assert torch.equal(permanent_corrections(logits, OBS, modified, 3), tied)
    # k = 1: one of the tied entries is corrected in the loss; nothing lies above the k-th value.
    _, modified = compute_batch_loss(logits, OBS, "LL-Cp", delta_rel=10, epoch=2)
    assert modified.sum() == 1 and (modified & tied).any()
    assert not permanent_corrections(logits, OBS, modified, 1).any()
    with pytest.raises(ValueError):
        permanent_corrections(logits, OBS, modified, 1, "some")
