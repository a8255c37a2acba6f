"""Losses of single-positive methods published after Large Loss Matters, under the same protocol:
EM and EM+APL (Zhou et al., ECCV 2022), GR-Loss (Chen et al., IJCAI 2024), and the two that learn
from vision-language pseudo-labels, VLPL (Xing et al., CVPR 2024 workshops) and AEVLP's GPR loss
with DAMP pseudo-labels (ICCV 2025).

Label semantics as everywhere: -1 observed negative, 0 unobserved, +1 observed positive. Every loss
matrix is averaged over all B*K entries, as the authors' code does. Each formula was checked
against the authors' code (Correr-Zhou/SPML-AckTheUnknown, yan4xi1/GRLoss, mvrl/VLPL,
Fsoft-AIC/AEVLP); the equations are
numbered in each docstring (E1, G1, ...) and the paper's section is named beside them.
"""
import math

import numpy as np
import torch
import torch.nn as nn

EM_LOG_EPSILON = 1e-5        # the EM code's -log(x + 1e-5)
GR_LOG_EPSILON = 1e-7        # the GR-Loss code's -log(x + 1e-7), and AEVLP's


def _neg_log(x, eps):
    return -torch.log(x + eps)


def em_loss(logits, label_vec_obs, alpha, soft_labels=None, beta=0.0):
    """Entropy maximisation (EM), and with ``soft_labels`` EM + asymmetric pseudo-labelling (APL)
    (Zhou et al., "Acknowledging the Unknown for Multi-label Learning with Single Positive Labels",
    ECCV 2022, Sec. 3.2-3.3).

    With p = sigmoid(x) and l(q) = -log(q + 1e-5):
      (E1) observed positive:            l(p)
      (E2) unobserved, not pseudo-labelled: -alpha * H(p),  H(p) = p l(p) + (1 - p) l(1 - p)
           (minimising -H maximises the entropy of the unknown labels)
      (E3) pseudo-labelled negative with soft label s (the model's probability when selected):
           beta * (s l(p) + (1 - s) l(1 - p))
      (E4) observed negative: l(1 - p) (none in the single-positive setting).

    Args:
        logits: (B, K) classifier outputs.
        label_vec_obs: (B, K) in {-1, 0, +1}.
        alpha: weight of the entropy term (the authors: VOC 0.2, COCO 0.1, NUS-WIDE 0.1, CUB 0.01).
        soft_labels: (B, K) float, NaN where the entry has no pseudo-label (``PseudoLabels``); None for EM.
        beta: weight of the pseudo-label term (VOC 0.02, COCO 0.9, NUS-WIDE 0.2, CUB 0.4).
    Returns:
        loss: scalar, mean over B*K.
        pseudo: (B, K) bool, the entries that carried a pseudo-label (all False for EM).
    """
    p = torch.sigmoid(logits.float())
    pos_term = _neg_log(p, EM_LOG_EPSILON)
    neg_term = _neg_log(1 - p, EM_LOG_EPSILON)
    entropy = p * pos_term + (1 - p) * neg_term
    unobserved = label_vec_obs == 0
    pseudo = torch.zeros_like(unobserved)
    if soft_labels is not None:
        pseudo = unobserved & ~torch.isnan(soft_labels)
    loss = torch.where(label_vec_obs == 1, pos_term, torch.where(label_vec_obs == -1, neg_term, -alpha * entropy))
    if soft_labels is not None:
        s = torch.nan_to_num(soft_labels.float())
        loss = torch.where(pseudo, beta * (s * pos_term + (1 - s) * neg_term), loss)
    return loss.mean(), pseudo


def apl_count(num_unobserved, neg_proportion, num_epochs, warmup_epoch):
    """(E5) How many unobserved entries of a class APL pseudo-labels as negative after each epoch
    from ``warmup_epoch`` on: int(neg_proportion * U_k / (num_epochs - warmup_epoch)), with U_k the
    class's unobserved entries at the start of training (the authors' code; Sec. 3.3's self-paced
    procedure spreads neg_proportion of them over the remaining epochs).

    Args:
        num_unobserved: (K,) int array U_k.
        neg_proportion: share of each class's unobserved entries to pseudo-label in all (0.9).
        num_epochs, warmup_epoch: T and the first epoch after which pseudo-labelling runs.
    Returns:
        (K,) int array.
    """
    return (neg_proportion * np.asarray(num_unobserved) / (num_epochs - warmup_epoch)).astype(int)


def apl_select(probs, label_obs, soft_labels, counts):
    """(E6) APL's pseudo-labelling step (asymmetric: negatives only, as in the authors' code): in each
    class, the ``counts[k]`` unobserved entries without a pseudo-label that have the lowest predicted
    probability get that probability as their soft label.

    Args:
        probs: (N, K) float predicted probabilities of the training images.
        label_obs: (N, K) in {-1, 0, +1}, the run's observed labels.
        soft_labels: (N, K) float, NaN where no pseudo-label yet; not modified.
        counts: (K,) ints (``apl_count``).
    Returns:
        (N, K) float soft labels: ``soft_labels`` with the new ones written.
    """
    out = soft_labels.clone()
    candidates = (label_obs == 0) & torch.isnan(soft_labels)
    for k, count in enumerate(counts):
        rows = torch.nonzero(candidates[:, k]).flatten()
        if count <= 0 or len(rows) == 0:
            continue
        lowest = rows[torch.argsort(probs[rows, k], stable=True)[:count]]
        out[lowest, k] = probs[lowest, k]
    return out


class PseudoLabels(nn.Module):
    """APL's state: one soft negative pseudo-label per training entry (NaN: none yet). A buffer, not a
    parameter: it is written between epochs from the model's predictions, never trained, and saved
    with the run's checkpoint."""

    def __init__(self, label_matrix_obs):
        super().__init__()
        obs = torch.as_tensor(np.asarray(label_matrix_obs))
        self.register_buffer("soft", torch.full(obs.shape, math.nan))
        self.register_buffer("num_unobserved", (obs == 0).sum(dim=0))     # U_k, fixed at the start

    def forward(self, idx):
        """(B, K) soft labels of the images with training-set row indices ``idx``."""
        return self.soft[idx]


def linear_schedule(start, end, progress):
    """start + (end - start) * progress."""
    return start + (end - start) * progress


def gr_schedule(epoch, num_epochs, k_schedule, v_schedule, linear_init_epochs=0):
    """GR-Loss's per-epoch hyperparameters (Chen et al., IJCAI 2024, Sec. 3.3; the authors' train.py):
      (G1) w(t) = w0 + (wT - w0) * max(t - n - 1, 0) / (T - n),  b(t) likewise from (b0, bT);
      (G2) mu(t) = mu0 + (muT - mu0) * max(t - n, 0) / (T - n),  sigma(t) likewise from (sigma0, sigmaT);
    with t the 1-based epoch, T = num_epochs and n the linear-initialisation epochs. (The code lags
    w and b by one epoch behind mu and sigma; kept.)

    Args:
        k_schedule: (w0, wT, b0, bT) of the pseudo-label function k (the authors' default (0, 2, -2, -2)).
        v_schedule: (mu0, sigma0, muT, sigmaT) of the weight function v (default (0.5, 2, 0.8, 0.5)).
    Returns:
        dict w, b, mu, sigma.
    """
    w0, w_end, b0, b_end = k_schedule
    mu0, sigma0, mu_end, sigma_end = v_schedule
    span = num_epochs - linear_init_epochs
    # Clamped to [0, 1]: the epochs of Cole et al.'s 25-epoch linear phase past T keep the final values.
    lagged = min(max(epoch - linear_init_epochs - 1, 0) / span, 1.0)
    current = min(max(epoch - linear_init_epochs, 0) / span, 1.0)
    return dict(w=linear_schedule(w0, w_end, lagged), b=linear_schedule(b0, b_end, lagged),
                mu=linear_schedule(mu0, mu_end, current), sigma=linear_schedule(sigma0, sigma_end, current))


def gr_pseudo_label(p, w, b):
    """(G3) The soft pseudo-label k(p; w, b) = sigmoid(w p + b): the estimated chance that an unobserved
    label is positive, from the detached prediction p."""
    return torch.sigmoid(w * p + b)


def gr_weight(p, mu, sigma):
    """(G4) The Gaussian reweighting v(p; mu, sigma) = exp(-(p - mu)^2 / (2 sigma^2))."""
    return torch.exp(-0.5 * ((p - mu) / sigma) ** 2)


def gr_positive_part(p, q):
    """(G5) L2(p) = (1 - p^q) / q, the robust loss of an entry taken as positive (q -> 0: -log p)."""
    return (1 - p.pow(q)) / q


def gr_negative_part(p, q):
    """(G6) L3(p) = (1 - (1 - p)^q) / q, the robust loss of an entry taken as negative (q = 1: p)."""
    return (1 - (1 - p).pow(q)) / q


def gr_loss(logits, label_vec_obs, w, b, mu, sigma, q2=0.01, q3=1.0):
    """Generalized Robust Loss (Chen et al., "Boosting Single Positive Multi-label Classification with
    Generalized Robust Loss", IJCAI 2024, Sec. 3), as the authors' code computes it:
      (G7) observed positive: L1(p) = -log(p + 1e-7);
           unobserved: v(p) * [k(p) L2(p) + (1 - k(p)) L3(p)], k and v on the detached p (G3, G4);
           observed negative: L3(p) (k = 0, v = 1; the authors' code has none and gives them 0).

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}.
        w, b, mu, sigma: this epoch's values (``gr_schedule``).
        q2, q3: the exponents of L2 and L3 (the authors' default 0.01 and 1).
    Returns:
        loss: scalar, mean over B*K.
        modified: (B, K) bool, all False (GR-Loss reweights, it selects nothing).
    """
    p = torch.sigmoid(logits.float())
    _, _, unobserved_term = gr_unobserved(p, w, b, mu, sigma, q2, q3)
    loss = torch.where(label_vec_obs == 1, _neg_log(p, GR_LOG_EPSILON),
                       torch.where(label_vec_obs == -1, gr_negative_part(p, q3), unobserved_term))
    return loss.mean(), torch.zeros_like(label_vec_obs, dtype=torch.bool)


def gr_unobserved(p, w, b, mu, sigma, q2, q3):
    """GR-Loss's term of an unobserved label (G7), v(p) [k(p) L2(p) + (1 - k(p)) L3(p)], with k and v
    on the detached p; returns (k, v, term), (B, K) each."""
    p_fixed = p.detach()
    k, v = gr_pseudo_label(p_fixed, w, b), gr_weight(p_fixed, mu, sigma)
    return k, v, v * (k * gr_positive_part(p, q2) + (1 - k) * gr_negative_part(p, q3))


# ------------------------------------------------------------------ vision-language pseudo-labels

class FixedPseudoLabels(nn.Module):
    """VLPL's and AEVLP's state: the positive pseudo-labels of the training images, made once from
    the zero-shot scores (zero_shot.py) and never changed.

    Row-sparse: each image's pseudo-positive classes, padded with -1 to the most that any image has
    ((N, P) int32; P is at most 3 for VLPL's threshold 0.3 on a softmax and for DAMP's top 3), 4 P bytes
    an image rather than K. Nothing is saved with the checkpoint: a resumed run makes them again from
    the same score file.
    """

    def __init__(self, classes, num_classes):
        super().__init__()
        self.register_buffer("classes", torch.as_tensor(classes, dtype=torch.int32), persistent=False)
        self.num_classes = num_classes

    @classmethod
    def from_masks(cls, masks, num_classes):
        """From (n_i, K) bool chunks of the (N, K) pseudo-positive mask, in row order."""
        counts, cols = [], []
        for mask in masks:
            rows, c = np.nonzero(np.asarray(mask))
            counts.append(np.bincount(rows, minlength=len(mask)))
            cols.append(c)
        counts, cols = np.concatenate(counts), np.concatenate(cols)
        classes = np.full((len(counts), max(1, int(counts.max(initial=0)))), -1, dtype=np.int32)
        starts = np.cumsum(counts) - counts
        rows = np.repeat(np.arange(len(counts)), counts)
        classes[rows, np.arange(len(cols)) - starts[rows]] = cols
        return cls(classes, num_classes)

    def forward(self, idx):
        """(B, K) bool: the pseudo-positive entries of the images with training-set row indices ``idx``."""
        classes = self.classes[idx].long()                                         # (B, P), -1: none
        mask = torch.zeros(len(classes), self.num_classes + 1, dtype=torch.bool, device=classes.device)
        return mask.scatter_(1, torch.where(classes < 0, self.num_classes, classes), True)[:, :self.num_classes]

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Nothing to restore (see the class); checkpoints of older versions held the whole mask."""
        return nn.modules.module._IncompatibleKeys([], [])


def vlpl_pseudo_labels(global_scores, threshold):
    """(V1) VLPL's positive pseudo-labels: the classes whose zero-shot score of the whole image (a
    softmax over the classes of CLIP's image-text similarities at temperature 0.01) exceeds
    ``threshold`` (the authors: 0.3). Their code's negative pseudo-labels are commented out."""
    return torch.as_tensor(global_scores) > threshold


def vlpl_loss(logits, label_vec_obs, pseudo_positive, alpha, beta_pos, pseudo_target=0.9):
    """VLPL's loss (Xing et al., "VLPL: Vision Language Pseudo Labels for Multi-label Learning with
    Single Positive Labels", CVPR 2024 workshops, Sec. 3; the authors' losses.loss_EM_PL), with
    p = sigmoid(x) and l(q) = -log(q + 1e-5):
      (V2) observed positive: l(p)
      (V3) unobserved and pseudo-positive: beta_pos * (0.9 l(p) + 0.1 l(1 - p)), a label-smoothed BCE
      (V4) other unobserved: -alpha * H(p), EM's entropy maximisation (``em_loss``, E2)
      (V5) observed negative: l(1 - p) (none in the single-positive setting; the authors' code gives 0)

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}.
        pseudo_positive: (B, K) bool (``vlpl_pseudo_labels``).
        alpha: entropy weight (VOC 0.2, COCO and NUS-WIDE 0.1, CUB 0.01); beta_pos: 0.7.
    Returns:
        loss: scalar, mean over B*K.
        pseudo: (B, K) bool, the unobserved entries taken as positive.
    """
    # em_loss with soft label 0.9 on the pseudo-positives computes V3 too, but with the label as a float32
    # tensor, whose 1 - 0.9 differs in the last bit from this 0.1: the demo's VLPL runs moved by 0.1 mAP.
    p = torch.sigmoid(logits.float())
    pos_term, neg_term = _neg_log(p, EM_LOG_EPSILON), _neg_log(1 - p, EM_LOG_EPSILON)
    pseudo = (label_vec_obs == 0) & pseudo_positive
    unobserved = torch.where(pseudo, beta_pos * (pseudo_target * pos_term + (1 - pseudo_target) * neg_term),
                             -alpha * (p * pos_term + (1 - p) * neg_term))
    loss = torch.where(label_vec_obs == 1, pos_term, torch.where(label_vec_obs == -1, neg_term, unobserved))
    return loss.mean(), pseudo


def damp_pseudo_labels(global_scores, crop_max, crop_min, label_vec_obs, eta, threshold, top_k):
    """AEVLP's Dynamic Augmented Multi-focus Pseudo-labelling (DAMP; ICCV 2025, Sec. 3.3; the authors'
    utils.get_pseudo_labels), from zero-shot scores of the whole image and of its grid of crops
    (each a softmax over the classes):
      (A1) eta_i = min(max_k s_ik y_ik, eta): the whole image's score of its observed positive,
           capped at ``eta`` (y in {-1, 0, +1}, as their code multiplies it)
      (A2) s_agg = max over crops where that exceeds eta_i, else min over crops
      (A3) s = (s_global + s_agg) / 2
      (A4) positive pseudo-labels: the ``top_k`` classes of s with s >= ``threshold``.
    (Their negative pseudo-labels write zeros where zeros are, so none result; none here.)

    Args:
        global_scores, crop_max, crop_min: (N, K) float.
        label_vec_obs: (N, K) in {-1, 0, +1}.
        eta: cap of the dynamic threshold (VOC 0, COCO and NUS-WIDE 0.3, CUB 0.005).
        threshold: VOC and COCO 0.5, NUS-WIDE 0.6, CUB 0.005; top_k: 3, CUB 32.
    Returns:
        (N, K) bool.
    """
    s_global, s_max, s_min = (torch.as_tensor(a, dtype=torch.float32) for a in (global_scores, crop_max, crop_min))
    observed = torch.as_tensor(np.asarray(label_vec_obs), dtype=torch.float32)
    eta_i = torch.clamp((s_global * observed).max(dim=1, keepdim=True).values, max=eta)
    s = (s_global + torch.where(s_max > eta_i, s_max, s_min)) / 2
    values, indices = torch.topk(s, k=min(top_k, s.shape[1]), dim=1)
    return torch.zeros_like(s, dtype=torch.bool).scatter_(1, indices, values >= threshold)


def gpr_loss(logits, label_vec_obs, pseudo_positive, w, b, mu, sigma, q2, q3, lam, rho, reg, expected_num_pos):
    """AEVLP's Generalized Pseudo-label Robust loss (GPR; ICCV 2025, Sec. 3.2; the authors' losses.GPR_loss):
    GR-Loss (``gr_loss``, G7) where a positive pseudo-label is given, with k and v on the detached p:
      (P1) observed positive: l(p), l(q) = -log(q + 1e-7)
      (P2) unobserved and pseudo-positive: (1 - v') (rho l(p) + (1 - rho) l(1 - p)),
           v' = v(p) clamped to [1 - lam1, 1 - lam2]
      (P3) other unobserved: v(p) [k(p) L2(p) + (1 - k(p)) L3(p)], as GR-Loss
      (P4) observed negative: v(p) l(1 - p)
      (P5) plus reg * (sum_k p_k - k_hat)^2 / K^2, averaged over the batch before squaring (EPR's
           regulariser, scaled by 1/K^2 as their code).

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}; pseudo_positive: (B, K) bool.
        w, b, mu, sigma: this epoch's schedule (``gr_schedule``); q2, q3: as GR-Loss.
        lam: (lam1, lam2); rho: 0.9; reg: VOC 0.05, COCO and NUS-WIDE 0.001, CUB 0.01.
        expected_num_pos: k_hat (VOC 1.5, COCO 2.9, NUS-WIDE 1.9, CUB 31.4).
    Returns:
        loss: scalar; pseudo: (B, K) bool, the unobserved entries taken as positive.
    """
    p = torch.sigmoid(logits.float())
    _, v, gr_term = gr_unobserved(p, w, b, mu, sigma, q2, q3)
    pos_term, neg_term = _neg_log(p, GR_LOG_EPSILON), _neg_log(1 - p, GR_LOG_EPSILON)
    pseudo = (label_vec_obs == 0) & pseudo_positive
    v_pseudo = torch.clamp(v, min=1 - lam[0], max=1 - lam[1])
    unobserved = torch.where(pseudo, (1 - v_pseudo) * (rho * pos_term + (1 - rho) * neg_term), gr_term)
    loss = torch.where(label_vec_obs == 1, pos_term, torch.where(label_vec_obs == -1, v * neg_term, unobserved))
    regulariser = (p.sum(dim=1).mean() - expected_num_pos) ** 2 / p.shape[1] ** 2
    return loss.mean() + reg * regulariser, pseudo
