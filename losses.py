"""Assume-negative loss, the large-loss modification of Kim et al. (CVPR 2022), Section 3.3, and
the baselines of their Tables 2 and 3 (from Cole et al., "Multi-Label Learning from Single
Positive Labels", CVPR 2021).

Label semantics everywhere: observed labels are -1 (observed negative), 0 (unobserved),
+1 (observed positive). The assume-negative target (Eq. 1) is 1 for +1 and 0 otherwise; only
unobserved entries are ever rejected or corrected.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# LL schemes whose number of modified entries grows with a rate (delta_rel), the absolute-threshold
# variants of the paper's appendix (R0, delta_abs), and the baselines, which modify nothing.
RATE_SCHEMES = ("LL-R", "LL-Ct", "LL-Cp")
ABS_SCHEMES = ("LL-R-abs", "LL-Ct-abs")
BASELINES = ("WAN", "LSAN", "EPR", "ROLE", "IU")
SCHEMES = ("AN", *RATE_SCHEMES, *ABS_SCHEMES, *BASELINES)
# Every --mod_scheme: the schemes of compute_batch_loss and the class-aware selective loss.
METHODS = (*SCHEMES, "CSL")
# Baselines with the expected-positive regulariser, which need k_hat (config.EXPECTED_POSITIVES).
NEEDS_EXPECTED_POSITIVES = ("EPR", "ROLE")
LOG_EPSILON = 1e-5           # Cole et al.'s -log(p + 1e-5), used by the baselines as upstream
LABEL_SMOOTHING = 0.1        # LSAN's smoothing coefficient (Cole et al.)


def modification_rate(epoch, scheme, delta_rel):
    """Fraction of the batch's B*K label entries to modify in a (1-based) epoch.

    Epoch 1 is the warm-up and is never modified. LL-R and LL-Ct grow the rate linearly,
    r(t) = (t - 1) * delta_rel / 100 (Eq. 4-6); LL-Cp uses the constant delta_rel / 100 (Eq. 7-9),
    since what it corrects stays corrected.

    Args:
        epoch: 1-based epoch index t.
        scheme: one of METHODS; 0 for all but RATE_SCHEMES.
        delta_rel: growth of the rate in percent per epoch (the paper's and upstream's unit).
    Returns:
        The rate r(t) as a fraction in [0, 1] (not percent).
    """
    if scheme not in METHODS:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {METHODS}")
    if scheme not in RATE_SCHEMES or epoch <= 1:
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


def compute_batch_loss(logits, label_vec_obs, scheme, delta_rel, epoch, *, R0=None, delta_abs=None,
                       expected_num_pos=None, estimate_logits=None):
    """Assume-negative BCE with the large-loss rejection (LL-R) or correction (LL-Ct, LL-Cp), or a
    baseline of Cole et al. (see ``baseline_loss``).

    Args:
        logits: (B, K) classifier outputs before the sigmoid.
        label_vec_obs: (B, K) observed labels in {-1, 0, +1}.
        scheme: one of SCHEMES: "AN" (Naive AN, Eq. 2), "LL-R" (Eq. 4), "LL-Ct" (Eq. 5-6),
            "LL-Cp" (Eq. 7-9), "LL-R-abs" / "LL-Ct-abs" (the appendix's absolute threshold), or a
            baseline in BASELINES.
        delta_rel: percent per epoch (see ``modification_rate``); used by RATE_SCHEMES only.
        epoch: 1-based epoch index.
        R0, delta_abs: the threshold schedule of ABS_SCHEMES (see ``absolute_threshold``).
        expected_num_pos: k_hat of EPR and ROLE.
        estimate_logits: (B, K) ROLE's label estimate for the batch's images (``LabelEstimate``).
    Returns:
        loss: scalar, mean over all B*K entries (rejected entries count as 0 in the mean).
        modified: (B, K) bool, the entries rejected (LL-R) or corrected (LL-Ct, LL-Cp). For LL-Cp
            the caller writes those of ``permanent_corrections`` as +1 into its training label
            matrix. All False for AN and the baselines.
    """
    # Selection and loss in fp32 whatever the autocast dtype, so the same entries are picked.
    logits = logits.float()
    if scheme in BASELINES:
        loss = baseline_loss(scheme, logits, label_vec_obs, expected_num_pos=expected_num_pos,
                             estimate_logits=estimate_logits)
        return loss, torch.zeros_like(label_vec_obs, dtype=torch.bool)
    unobserved = label_vec_obs == 0
    target = (label_vec_obs == 1).float()
    loss_matrix = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, K)

    if scheme in ABS_SCHEMES:
        modified = unobserved & (loss_matrix.detach() > absolute_threshold(epoch, R0, delta_abs))
    else:
        k = num_to_modify(*logits.shape, modification_rate(epoch, scheme, delta_rel))
        modified = large_loss_mask(loss_matrix, unobserved, k)
    if scheme in ("LL-R", "LL-R-abs"):
        loss_matrix = loss_matrix.masked_fill(modified, 0.0)
    elif scheme in ("LL-Ct", "LL-Cp", "LL-Ct-abs"):
        corrected = F.binary_cross_entropy_with_logits(logits, torch.ones_like(target), reduction="none")
        loss_matrix = torch.where(modified, corrected, loss_matrix)
    return loss_matrix.mean(), modified


# LL-Cp's permanent write: "authors" as the code that made the paper's numbers, "all" as its text.
LLCP_WRITE_RULES = ("authors", "all")


def permanent_corrections(logits, label_vec_obs, modified, k, rule="authors"):
    """The entries LL-Cp writes as observed positives (+1) into the run's training labels (Eq. 7-9).

    The loss corrects the k largest unobserved losses (``compute_batch_loss``); which of them stay
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


# Baselines (Cole et al., CVPR 2021). As upstream they work on probabilities p = sigmoid(x) with
# -log(p + 1e-5), and every loss matrix is averaged over all B*K entries. Observed negatives (-1)
# are negatives with full weight wherever a baseline uses negatives; in the single-positive setting
# there are none.

def neg_log(p):
    """Cole et al.'s -log(p + 1e-5): bounded at log(1e5) = 11.5 where p reaches 0."""
    return -torch.log(p + LOG_EPSILON)


def expected_positive_regularizer(probs, expected_num_pos):
    """EPR's regulariser (Cole et al., Eq. 6): (mean over the batch of sum_k p - k_hat)^2 / K^2.

    Args:
        probs: (B, K) probabilities.
        expected_num_pos: k_hat, the expected number of positives per image.
    Returns:
        scalar.
    """
    return (probs.sum(dim=1).mean() - expected_num_pos) ** 2 / probs.shape[1] ** 2


def wan_loss(logits, label_vec_obs):
    """Weak assume negative (Cole et al.): AN with each assumed-negative term divided by K - 1.

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}.
    Returns:
        scalar: sum of -log p over +1, -log(1-p) over -1 and -log(1-p) / (K-1) over 0, over B*K.
    """
    probs = torch.sigmoid(logits)
    negative_weight = torch.where(label_vec_obs == 0, 1.0 / (logits.shape[1] - 1), 1.0)
    loss_matrix = torch.where(label_vec_obs == 1, neg_log(probs), negative_weight * neg_log(1 - probs))
    return loss_matrix.mean()


def lsan_loss(logits, label_vec_obs, smoothing=LABEL_SMOOTHING):
    """AN with label smoothing (AN-LS, Cole et al.): targets 1 - s for +1 and s for 0 and -1.

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}; smoothing: s (0.1 in the paper).
    Returns:
        scalar: mean over B*K of -(t log p + (1-t) log(1-p)) with the smoothed target t.
    """
    probs = torch.sigmoid(logits)
    target = torch.where(label_vec_obs == 1, 1.0 - smoothing, smoothing)
    loss_matrix = target * neg_log(probs) + (1 - target) * neg_log(1 - probs)
    return loss_matrix.mean()


def observed_only_loss_matrix(probs, label_vec_obs):
    """-log p on observed positives, -log(1-p) on observed negatives, 0 on unobserved entries."""
    zero = torch.zeros_like(probs)
    return (torch.where(label_vec_obs == 1, neg_log(probs), zero)
            + torch.where(label_vec_obs == -1, neg_log(1 - probs), zero))


def iu_loss(logits, label_vec_obs):
    """Naive IU, "ignore unobserved" (Cole et al.; the paper's Table 3): BCE on the observed entries only.

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}.
    Returns:
        scalar: the observed entries' -log terms summed, divided by B*K.
    """
    return observed_only_loss_matrix(torch.sigmoid(logits), label_vec_obs).mean()


def epr_loss(logits, label_vec_obs, expected_num_pos):
    """Expected positive regularisation (EPR, Cole et al.): observed labels plus the regulariser.

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}; expected_num_pos: k_hat.
    Returns:
        scalar: ``iu_loss`` + ``expected_positive_regularizer``.
    """
    probs = torch.sigmoid(logits)
    return observed_only_loss_matrix(probs, label_vec_obs).mean() + expected_positive_regularizer(
        probs, expected_num_pos)


def role_loss(logits, estimate_logits, label_vec_obs, expected_num_pos):
    """Regularised online label estimation (ROLE, Cole et al.): the classifier f and the label
    estimate g teach each other.

    loss = mean over B*K of [0.5 * (pos(f) + pos(g)) + 0.5 * (BCE(f, g.detach()) + BCE(g, f.detach()))]
           + 0.5 * (EPR(f) + EPR(g)),
    with pos(.) = -log(.) on observed positives. Observed negatives enter only through g's
    initialisation (``LabelEstimate``), as upstream.

    Args:
        logits: (B, K) classifier logits (f).
        estimate_logits: (B, K) the label estimate's logits for the same images (g).
        label_vec_obs: (B, K) in {-1, 0, +1}.
        expected_num_pos: k_hat.
    Returns:
        scalar.
    """
    f, g = torch.sigmoid(logits), torch.sigmoid(estimate_logits.float())
    positive = label_vec_obs == 1
    zero = torch.zeros_like(f)
    positive_terms = torch.where(positive, neg_log(f), zero) + torch.where(positive, neg_log(g), zero)
    f_target, g_target = g.detach(), f.detach()   # each learns from the other, not the reverse
    cross_terms = (f_target * neg_log(f) + (1 - f_target) * neg_log(1 - f)
                   + g_target * neg_log(g) + (1 - g_target) * neg_log(1 - g))
    regularizer = 0.5 * (expected_positive_regularizer(f, expected_num_pos)
                         + expected_positive_regularizer(g, expected_num_pos))
    return (0.5 * positive_terms + 0.5 * cross_terms).mean() + regularizer


def baseline_loss(scheme, logits, label_vec_obs, *, expected_num_pos=None, estimate_logits=None):
    """The loss of a baseline in BASELINES (dispatch; see each function's docstring)."""
    if scheme in NEEDS_EXPECTED_POSITIVES and expected_num_pos is None:
        raise ValueError(f"{scheme} needs expected_num_pos (k_hat)")
    if scheme == "WAN":
        return wan_loss(logits, label_vec_obs)
    if scheme == "LSAN":
        return lsan_loss(logits, label_vec_obs)
    if scheme == "IU":
        return iu_loss(logits, label_vec_obs)
    if scheme == "EPR":
        return epr_loss(logits, label_vec_obs, expected_num_pos)
    if scheme == "ROLE":
        if estimate_logits is None:
            raise ValueError("ROLE needs estimate_logits, the label estimate of the batch's images")
        return role_loss(logits, estimate_logits, label_vec_obs, expected_num_pos)
    raise ValueError(f"unknown baseline {scheme!r}; expected one of {BASELINES}")


def _logit(p):
    return math.log(p / (1 - p))


class LabelEstimate(nn.Module):
    """ROLE's label estimate g: one learnable logit per training image and class (Cole et al.).

    Unobserved entries start uniformly in [logit(0.4), logit(0.6)], observed positives at
    logit(0.995) and observed negatives at logit(0.005), as upstream. The estimate trains with the
    classifier (at 10x the backbone lr, see train.build_optimizer) and is saved in last.pt.
    """

    def __init__(self, label_matrix_obs, generator=None):
        super().__init__()
        obs = torch.as_tensor(np.asarray(label_matrix_obs))
        init = _logit(0.6) * (2 * torch.rand(obs.shape, generator=generator) - 1)      # (N, K)
        init[obs == 1] = _logit(0.995)
        init[obs == -1] = _logit(0.005)
        self.logits = nn.Parameter(init)

    def forward(self, idx):
        """(B, K) estimate logits of the images with training-set row indices ``idx``."""
        return self.logits[idx]


CSL_MODES = ("negative", "ignore", "ignore_normalize", "selective")
CSL_REDUCTIONS = ("sum", "mean")


def partial_selective_loss(logits, label_vec_obs, mode="selective", gamma_pos=0.0, gamma_neg=1.0,
                           gamma_unann=4.0, clip=0.0, prior=None, prior_threshold=0.5, likelihood_topk=5,
                           reduction="sum"):
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
        reduction: "sum" of the terms, as the CSL code returns, or their "mean" over all B*K
            entries (ignored ones count as 0), the scale of the other losses here. Adam's updates
            barely depend on the scale; SGD's steps are B*K times larger with "sum".
    Returns:
        loss: scalar, the weighted terms reduced by ``reduction``.
        ignored: (B, K) bool, the unannotated entries that were given weight 0.
    """
    if mode not in CSL_MODES:
        raise ValueError(f"unknown CSL mode {mode!r}; expected one of {CSL_MODES}")
    if reduction not in CSL_REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {CSL_REDUCTIONS}")
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
    loss = (terms * weight).masked_fill(ignored, 0.0).sum()
    return (loss if reduction == "sum" else loss / terms.numel()), ignored


def prior_from_annotations(positives, negatives, num_images):
    """Class priors estimated from the observed labels alone.

    The share of positives among a class's annotated entries (+1 or -1); for a class without an
    observed negative (single-positive data) the share of images where it is observed positive,
    which underestimates the prior by the unobserved positives.

    Args:
        positives, negatives: (K,) how many images have the class observed positive (+1), negative (-1).
        num_images: N.
    Returns:
        (K,) float64 array in [0, 1].
    """
    positives, negatives = np.asarray(positives), np.asarray(negatives)
    return np.where(negatives > 0, positives / np.maximum(positives + negatives, 1), positives / num_images)
