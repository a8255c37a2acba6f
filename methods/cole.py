"""The baselines of the paper's Tables 2 and 3, from Cole et al., "Multi-Label Learning from Single
Positive Labels" (CVPR 2021): WAN, LSAN (AN-LS), EPR, ROLE and Naive IU, with ROLE's label estimate,
their registry entries and the numbers the LL paper's tables give for them. Their rows run under
Cole et al.'s protocol (--protocol cole: Adam, their bsize x lr search), which made those numbers,
except Naive IU, a row of Table 3 only, which the LL authors ran under theirs.

As upstream they work on probabilities p = sigmoid(x) with -log(p + 1e-5), and every loss matrix is
averaged over all B*K entries. Observed negatives (-1) are negatives with full weight wherever a
baseline uses negatives; in the single-positive setting there are none. Labels: -1/0/+1.
"""
import math

import numpy as np
import torch
import torch.nn as nn

import losses
from methods import Method, register
from methods.large_loss import table2, table3

CITATION = "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021"
LOG_EPSILON = 1e-5           # Cole et al.'s -log(p + 1e-5), used by the baselines as upstream
LABEL_SMOOTHING = 0.1        # LSAN's smoothing coefficient (Cole et al.)


def neg_log(p):
    """Cole et al.'s -log(p + 1e-5): bounded at log(1e5) = 11.5 where p reaches 0."""
    return losses.neg_log(p, LOG_EPSILON)


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


def _no_modification(loss_fn):
    """A registry loss from a baseline's loss function: the baselines select nothing."""
    def loss(logits, labels, batch):
        return loss_fn(logits, labels, batch), torch.zeros_like(labels, dtype=torch.bool)
    return loss


def _k_hat(batch, name):
    if batch.cfg.expected_num_pos is None:
        raise ValueError(f"{name} needs expected_num_pos (k_hat)")
    return batch.cfg.expected_num_pos


def _epr(logits, labels, batch):
    return epr_loss(logits, labels, _k_hat(batch, "EPR"))


def _role(logits, labels, batch):
    if batch.state is None:
        raise ValueError("ROLE needs estimate_logits, the label estimate of the batch's images (its state)")
    return role_loss(logits, batch.state, labels, _k_hat(batch, "ROLE"))


register(Method("WAN", _no_modification(lambda x, y, batch: wan_loss(x, y)), "weak assume-negative", CITATION,
                protocol="cole", published={**table2((86.5, 64.8, 46.3, 20.3), (87.1, 68.0, 47.5, 21.1)),
                                            **table3(71.8, 72.8, 76.3, 79.7, 84.7, 77.0)}), order=2)
register(Method("LSAN", _no_modification(lambda x, y, batch: lsan_loss(x, y)), "assume-negative with label smoothing",
                CITATION, protocol="cole", display="LSAN (AN-LS)",
                published={**table2((86.7, 66.9, 44.9, 17.9), (86.5, 69.2, 50.5, 16.6)),
                           **table3(68.4, 69.3, 73.7, 77.9, 85.6, 75.0)}), order=3)
register(Method("EPR", _no_modification(_epr),
                "expected positive regularisation", CITATION, needs_k_hat=True, protocol="cole",
                published=table2((85.5, 63.3, 46.0, 20.0), (84.9, 66.8, 48.1, 21.2))), order=4)
# ROLE's estimate: a float32 logit per training entry, its gradient and Adam's two buffers.
register(Method("ROLE", _no_modification(_role), "regularised online label estimation", CITATION, needs_k_hat=True,
                make_state=lambda split, cfg: LabelEstimate(split.labels_obs.dense()), state_trains=True,
                state_bytes=lambda images, classes: 16 * images * classes, protocol="cole",
                published=table2((87.9, 66.3, 43.1, 15.0), (88.2, 69.0, 51.0, 16.8))), order=5)
register(Method("IU", _no_modification(lambda x, y, batch: iu_loss(x, y)),
                "ignore the unobserved labels (observed entries only)", CITATION, display="Naive IU",
                published=table3(69.5, 70.3, 74.8, 79.2, 85.5, 75.9)), order=6)
