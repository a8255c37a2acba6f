"""Assume-negative loss and the large-loss modification of Kim et al. (CVPR 2022), Section 3.3.

Label semantics everywhere: observed labels are -1 (observed negative), 0 (unobserved),
+1 (observed positive). The assume-negative target (Eq. 1) is 1 for +1 and 0 otherwise; only
unobserved entries are ever rejected or corrected.
"""
import math

import numpy as np
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


CSL_MODES = ("negative", "ignore", "ignore_normalize", "selective")


def partial_selective_loss(logits, label_vec_obs, mode="selective", gamma_pos=0.0, gamma_neg=1.0,
                           gamma_unann=4.0, clip=0.0, prior=None, prior_threshold=0.5, likelihood_topk=5):
    """Class-aware selective loss with partial asymmetric focusing (Ben-Baruch et al., CVPR 2022).

    Each entry's term is log(p) for observed positives and log(p_neg) for observed negatives and
    unannotated entries, with p = sigmoid(x) and p_neg = min(1 - p + clip, 1) (probability
    shifting), both clamped at 1e-8; it is focused by (1 - p_t)^gamma with gamma_pos, gamma_neg or
    gamma_unann (p_t = p for positives, p_neg otherwise; no gradient through the focusing weight).
    The mode decides what an unannotated entry is:
      - "negative": a negative (assume negative, with its own gamma);
      - "ignore": weight 0;
      - "ignore_normalize": weight 0, and each image's terms scaled by 1 + 1 / (1 + its number of
        annotated entries) (the class normalisation of Durand et al. 2019, as in the CSL code);
      - "selective": a negative, except (a) in classes whose estimated prior exceeds
        prior_threshold and (b) the likelihood_topk * B unannotated entries of the batch with the
        highest predicted probability, which are ignored.

    Args:
        logits: (B, K) classifier outputs before the sigmoid.
        label_vec_obs: (B, K) observed labels in {-1, 0, +1} (this codebase's convention; the
            CSL code writes unannotated as -1 and negatives as 0).
        prior: optional (K,) tensor of class priors, used by "selective".
    Returns:
        loss: scalar, the summed terms divided by B*K (the CSL code returns the plain sum; the mean
            keeps the scale of the other losses here and does not change Adam's updates).
        ignored: (B, K) bool, the unannotated entries that were given weight 0.
    """
    if mode not in CSL_MODES:
        raise ValueError(f"unknown CSL mode {mode!r}; expected one of {CSL_MODES}")
    logits = logits.float()
    positive, negative, unannotated = label_vec_obs == 1, label_vec_obs == -1, label_vec_obs == 0
    p = torch.sigmoid(logits)
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    log_p, log_p_neg = torch.log(p.clamp(min=1e-8)), torch.log(p_neg.clamp(min=1e-8))
    with torch.no_grad():
        gamma = gamma_pos * positive + gamma_neg * negative + gamma_unann * unannotated
        focus = torch.where(positive, 1 - p, 1 - p_neg).pow(gamma)
    terms = -torch.where(positive, log_p, log_p_neg) * focus                     # (B, K)

    ignored = torch.zeros_like(unannotated)
    weight = torch.ones_like(terms)
    if mode in ("ignore", "ignore_normalize"):
        ignored = unannotated
        if mode == "ignore_normalize":
            weight = weight * (1 + 1 / (1 + (~unannotated).sum(dim=1, keepdim=True)))
    elif mode == "selective":
        if prior is not None:
            ignored = unannotated & (prior > prior_threshold)[None, :]
        # Among all unannotated entries, the top likelihood_topk * B by predicted probability.
        ignored = ignored | large_loss_mask(p, unannotated, min(likelihood_topk * logits.shape[0], p.numel()))
    loss = (terms * weight).masked_fill(ignored, 0.0).sum() / terms.numel()
    return loss, ignored


def prior_from_annotations(labels_obs):
    """Class priors estimated from the observed labels alone.

    The share of positives among a class's annotated entries (+1 or -1); for a class without an
    observed negative (single-positive data) the share of images where it is observed positive,
    which underestimates the prior by the unobserved positives.

    Args:
        labels_obs: (N, K) array in {-1, 0, +1}.
    Returns:
        (K,) float64 array in [0, 1].
    """
    labels_obs = np.asarray(labels_obs)
    positives = (labels_obs == 1).sum(axis=0)
    negatives = (labels_obs == -1).sum(axis=0)
    return np.where(negatives > 0, positives / np.maximum(positives + negatives, 1), positives / len(labels_obs))
