"""Assume-negative loss and the large-loss modification of Kim et al. (CVPR 2022), Section 3.3.

Label semantics everywhere: observed labels are -1 (observed negative), 0 (unobserved),
+1 (observed positive). The assume-negative target (Eq. 1) is 1 for +1 and 0 otherwise; only
unobserved entries are ever rejected or corrected.
"""
import math

import torch
import torch.nn.functional as F

SCHEMES = ("AN", "LL-R", "LL-Ct", "LL-Cp")


def modification_rate(epoch, scheme, delta_rel):
    """Fraction of the batch's B*K label entries to modify in a (1-based) epoch.

    Epoch 1 is the warm-up and is never modified. LL-R and LL-Ct grow the rate linearly,
    r(t) = (t - 1) * delta_rel / 100 (Eq. 4-6); LL-Cp uses the constant delta_rel / 100 (Eq. 7-9),
    since what it corrects stays corrected.

    Args:
        epoch: 1-based epoch index t.
        scheme: one of SCHEMES.
        delta_rel: growth of the rate in percent per epoch (the paper's and upstream's unit).
    Returns:
        The rate r(t) as a fraction in [0, 1] (not percent).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    if scheme == "AN" or epoch <= 1:
        return 0.0
    if scheme == "LL-Cp":
        return delta_rel / 100
    # From t directly rather than by repeated subtraction, which drifts (SPEC 4).
    return (epoch - 1) * delta_rel / 100


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


def compute_batch_loss(logits, label_vec_obs, scheme, delta_rel, epoch):
    """Assume-negative BCE with the large-loss rejection (LL-R) or correction (LL-Ct, LL-Cp).

    Args:
        logits: (B, K) classifier outputs before the sigmoid.
        label_vec_obs: (B, K) observed labels in {-1, 0, +1}.
        scheme: "AN" (Naive AN, Eq. 2), "LL-R" (Eq. 4), "LL-Ct" (Eq. 5-6) or "LL-Cp" (Eq. 7-9).
        delta_rel: percent per epoch (see ``modification_rate``).
        epoch: 1-based epoch index.
    Returns:
        loss: scalar, mean over all B*K entries (rejected entries count as 0 in the mean).
        modified: (B, K) bool, the entries rejected (LL-R) or corrected (LL-Ct, LL-Cp). For LL-Cp
            the caller writes these as +1 into its training label matrix.
    """
    # Selection and loss in fp32 whatever the autocast dtype, so the same entries are picked.
    logits = logits.float()
    unobserved = label_vec_obs == 0
    target = (label_vec_obs == 1).float()
    loss_matrix = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, K)

    k = num_to_modify(*logits.shape, modification_rate(epoch, scheme, delta_rel))
    modified = large_loss_mask(loss_matrix, unobserved, k)
    if scheme == "LL-R":
        loss_matrix = loss_matrix.masked_fill(modified, 0.0)
    elif scheme in ("LL-Ct", "LL-Cp"):
        corrected = F.binary_cross_entropy_with_logits(logits, torch.ones_like(target), reduction="none")
        loss_matrix = torch.where(modified, corrected, loss_matrix)
    return loss_matrix.mean(), modified
