"""The method of Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label Classification"
(CVPR 2022), Section 3.3: the assume-negative loss, the schedule of the share of entries modified,
k per batch, and LL-R, LL-Ct and LL-Cp (with the appendix's absolute threshold), as pure functions.
Their registry entries are in methods/large_loss.py; the methods after the paper, and the baselines,
in the other files of methods/.

Label semantics everywhere: observed labels are -1 (observed negative), 0 (unobserved),
+1 (observed positive). The assume-negative target (Eq. 1) is 1 for +1 and 0 otherwise; only
unobserved entries are ever rejected or corrected.
"""
import math

import torch
import torch.nn.functional as F


def neg_log(x, eps):
    """-log(x + eps), the bounded log loss of the baselines' and later methods' code (eps 1e-5 or 1e-7)."""
    return -torch.log(x + eps)


def growing_rate(epoch, delta_rel):
    """LL-R and LL-Ct (Eq. 4-6): the share of a batch's B*K label entries modified in (1-based)
    ``epoch``, r(t) = (t - 1) * delta_rel / 100, computed from t (upstream's repeated subtraction
    drifts, SPEC 4). Epoch 1 is the warm-up: r = 0.

    Args:
        epoch: 1-based epoch index t.
        delta_rel: growth of the rate in percent per epoch (the paper's and upstream's unit).
    Returns:
        r(t) as a fraction in [0, 1] (not percent).
    """
    return 0.0 if epoch <= 1 else (epoch - 1) * delta_rel / 100


def constant_rate(epoch, delta_rel):
    """LL-Cp (Eq. 7-9): the constant share delta_rel / 100 from epoch 2 on, since what it corrects
    stays corrected (epoch 1, the warm-up: 0)."""
    return 0.0 if epoch <= 1 else delta_rel / 100


def num_to_modify(batch_size, num_classes, rate):
    """The paper's k = ceil(B * K * r), counted over all B*K entries as upstream does.

    A tolerance of 1e-9 keeps float noise (e.g. 320 * 0.025 = 8.000000000000002) from adding one.
    """
    return max(0, math.ceil(batch_size * num_classes * rate - 1e-9))


def large_loss_mask(loss_matrix, unobserved, k):
    """Boolean mask of the k unobserved entries with the largest loss.

    Args:
        loss_matrix: (B, K) elementwise assume-negative loss.
        unobserved: (B, K) bool, True where the observed label is 0.
        k: number of entries to select, at most B*K; in effect capped at the number of unobserved
           entries, so observed entries are never selected (upstream's threshold test could).
    Returns:
        (B, K) bool mask.
    """
    mask = torch.zeros_like(unobserved)
    if k == 0:
        return mask
    candidates = loss_matrix.detach().float().masked_fill(~unobserved, float("-inf")).flatten()
    top = torch.topk(candidates, k, sorted=False)
    # Where k exceeds the unobserved entries, topk also returns observed ones (at -inf): drop them.
    # Done with a mask rather than by shrinking k, which would cost a device sync per batch.
    mask.view(-1)[top.indices] = top.values > float("-inf")
    return mask


def absolute_threshold(epoch, R0, delta_abs):
    """The loss threshold of the absolute variants (paper appendix): R(t) = R0 - t * delta_abs.

    Unobserved entries whose assume-negative loss exceeds R(t) are modified. Epoch 1 is the warm-up,
    as for the relative schemes, so the threshold is infinite there.

    Args:
        epoch: 1-based epoch index t.
        R0: initial threshold, in loss units (nats of BCE).
        delta_abs: decrease of the threshold per epoch, in loss units.
    Returns:
        R(t) as a float (math.inf in epoch 1).
    """
    return math.inf if epoch <= 1 else R0 - epoch * delta_abs


def large_loss(logits, label_vec_obs, correct, k=0, threshold=None):
    """Assume-negative BCE (Eq. 2) with its large unobserved losses rejected (LL-R, Eq. 4) or corrected
    to the positive target (LL-Ct, Eq. 5-6; LL-Cp, Eq. 7-9): the ``k`` largest of the batch, or with
    ``threshold`` (the appendix's absolute variants) those above it. k = 0 is Naive AN.

    Args:
        logits: (B, K) classifier outputs before the sigmoid; selected and summed in fp32.
        label_vec_obs: (B, K) observed labels in {-1, 0, +1}.
        correct: correct (BCE(x, 1) instead of BCE(x, 0)) rather than reject (weight 0).
        k: entries to modify (``num_to_modify``), capped at the unobserved ones.
        threshold: loss threshold R(t) (``absolute_threshold``) instead of k.
    Returns:
        loss: scalar, mean over all B*K entries (rejected entries count as 0 in the mean).
        modified: (B, K) bool, the entries rejected or corrected. LL-Cp writes those of
            ``permanent_corrections`` as +1 into the run's training labels.
    """
    logits = logits.float()               # the same entries whatever the autocast dtype
    unobserved = label_vec_obs == 0
    target = (label_vec_obs == 1).float()
    loss_matrix = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, K)
    if threshold is not None:
        modified = unobserved & (loss_matrix.detach() > threshold)
    else:
        modified = large_loss_mask(loss_matrix, unobserved, k)
    if correct:
        corrected = F.binary_cross_entropy_with_logits(logits, torch.ones_like(target), reduction="none")
        loss_matrix = torch.where(modified, corrected, loss_matrix)
    else:
        loss_matrix = loss_matrix.masked_fill(modified, 0.0)
    return loss_matrix.mean(), modified


# LL-Cp's permanent write: "authors" as the code that made the paper's numbers, "all" as its text.
LLCP_WRITE_RULES = ("authors", "all")


def permanent_corrections(logits, label_vec_obs, modified, k, rule="authors"):
    """The entries LL-Cp writes as observed positives (+1) into the run's training labels (Eq. 7-9).

    The loss corrects the k largest unobserved losses (``large_loss``); which of them stay
    corrected for the rest of training depends on ``rule``:
      - "authors": as snucml/LargeLossMatters (ac475fe, which made the paper's numbers; HEAD once its
        ``is 'LL-Cp'`` test is fixed): the entries whose masked loss (observed entries at 0) is
        strictly above the k-th largest, so k - 1 of the k without ties and fewer with ties at the
        k-th value. With the authors' VOC setting k = 1: nothing is ever written.
      - "all": every corrected entry, the paper's text read literally.

    Args:
        logits: (B, K) classifier outputs; label_vec_obs: (B, K) in {-1, 0, +1}.
        modified: (B, K) bool, the entries the loss corrected.
        k: the batch's number of corrections (``num_to_modify``).
        rule: one of LLCP_WRITE_RULES.
    Returns:
        (B, K) bool, a subset of ``modified``.
    """
    if rule not in LLCP_WRITE_RULES:
        raise ValueError(f"unknown LL-Cp write rule {rule!r}; expected one of {LLCP_WRITE_RULES}")
    if rule == "all" or k == 0:
        return modified
    target = (label_vec_obs == 1).float()
    loss_matrix = F.binary_cross_entropy_with_logits(logits.detach().float(), target, reduction="none")
    unobserved_loss = loss_matrix * (label_vec_obs == 0)            # the authors' masked loss, (B, K)
    kth_largest = torch.topk(unobserved_loss.flatten(), k).values[-1]
    return modified & (unobserved_loss > kth_largest)
