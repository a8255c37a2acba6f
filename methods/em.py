"""EM and EM+APL (Zhou et al., "Acknowledging the Unknown for Multi-label Learning with Single Positive
Labels", ECCV 2022; Correr-Zhou/SPML-AckTheUnknown): entropy maximisation on the unobserved labels,
and asymmetric pseudo-labelling; their losses, APL's state, the authors' defaults per dataset, their
flags and registry entries. Label semantics: -1/0/+1; every loss matrix is averaged over all B*K
entries, as the authors' code does. Each formula was checked against their code; the equations are
numbered (E1, ...) in each docstring.
"""
import math

import numpy as np
import torch
import torch.nn as nn

import losses
from methods import Flag, Method, end_to_end, in_range, register

EM_LOG_EPSILON = 1e-5        # the EM code's -log(x + 1e-5)


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
    pos_term = losses.neg_log(p, EM_LOG_EPSILON)
    neg_term = losses.neg_log(1 - p, EM_LOG_EPSILON)
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


# Zhou et al.'s main.py, per dataset: bsize, lr, alpha, beta, warm-up epoch (neg_proportion 0.9 everywhere).
EM_SETTINGS = {"pascal": dict(bsize=8, lr=1e-5, alpha=0.2, beta=0.02, warmup=5),
               "coco": dict(bsize=16, lr=1e-5, alpha=0.1, beta=0.9, warmup=5),
               "nuswide": dict(bsize=16, lr=1e-5, alpha=0.1, beta=0.2, warmup=4),
               "cub": dict(bsize=8, lr=1e-4, alpha=0.01, beta=0.4, warmup=3)}
EM_FALLBACK = EM_SETTINGS["coco"]          # other datasets (demo, custom, openimages)
_EM = "Zhou et al., Acknowledging the Unknown for Multi-label Learning with Single Positive Labels, ECCV 2022"


def _em_setting(key):
    return lambda dataset: EM_SETTINGS.get(dataset, EM_FALLBACK)[key]


EM_ALPHA = Flag("em_alpha", "weight of the entropy of the unobserved labels. Default: the authors' per dataset "
                "(VOC 0.2, COCO and NUS-WIDE 0.1, CUB 0.01; 0.1 elsewhere); larger pushes unknown labels to 0.5",
                default=_em_setting("alpha"), check=in_range(0, float("inf"), high_open=True))
APL_BETA = Flag("apl_beta", "weight of the soft negative pseudo-labels. Default: VOC 0.02, COCO 0.9, NUS-WIDE 0.2, "
                "CUB 0.4 (0.9 elsewhere)", default=_em_setting("beta"), check=in_range(0, float("inf"), high_open=True))
APL_WARMUP = Flag("apl_warmup_epoch", "first epoch after which pseudo-labels are assigned. Default: VOC and COCO 5, "
                  "NUS-WIDE 4, CUB 3 (5 elsewhere); must be below --num_epochs", type=int,
                  default=_em_setting("warmup"), check=in_range(1, float("inf"), low_open=False, high_open=True))
APL_PROPORTION = Flag("apl_neg_proportion", "share of each class's unobserved labels pseudo-labelled negative "
                      "over the epochs from the warm-up on (the authors: 0.9)", default=0.9, check=in_range(0, 1))


def _em_settings(dataset):
    """Zhou et al. train the whole classifier with Adam at one lr (no 10x head), with their batch size,
    and stop at the first epoch whose val mAP is below the best."""
    setting = EM_SETTINGS.get(dataset, EM_FALLBACK)
    return dict(optimizer="adam", lr=setting["lr"], bsize=setting["bsize"], lr_mult=1.0, early_stop_drop=0.0)


def _em(logits, labels, batch):
    return em_loss(logits, labels, batch.cfg.method_options["em_alpha"])


def _em_apl(logits, labels, batch):
    options = batch.cfg.method_options
    return em_loss(logits, labels, options["em_alpha"], batch.state, options["apl_beta"])


def _apl_after_epoch(state, epoch, cfg, labels_obs, predict_train):
    """APL after each epoch from the warm-up on (as the authors' loop: after training, before val)."""
    options = cfg.method_options
    if epoch < options["apl_warmup_epoch"]:
        return
    probs = torch.sigmoid(torch.as_tensor(predict_train(), dtype=torch.float32)).to(state.soft.device)
    counts = apl_count(state.num_unobserved.cpu().numpy(), options["apl_neg_proportion"],
                                     cfg.num_epochs, options["apl_warmup_epoch"])
    observed = torch.as_tensor(labels_obs.dense(), device=state.soft.device)
    state.soft.copy_(apl_select(probs, observed, state.soft, counts))


register(Method("EM", _em, "entropy maximisation on the unobserved labels", _EM, flags=(EM_ALPHA,),
                advice=f"EM and EM-APL ({_EM}; defaults from the authors' code)", settings=_em_settings,
                paper_row=False))


def _check_apl(options, args):
    if options["apl_warmup_epoch"] >= args.num_epochs:
        return (f"--apl_warmup_epoch {options['apl_warmup_epoch']}: must be in [1, --num_epochs) = [1, "
                f"{args.num_epochs}), so that pseudo-labels are assigned before the last epoch")
    return None


register(Method("EM-APL", _em_apl, "EM with asymmetric (negative) soft pseudo-labelling", _EM,
                flags=(EM_ALPHA, APL_BETA, APL_WARMUP, APL_PROPORTION),
                advice=f"EM and EM-APL ({_EM}; defaults from the authors' code)", settings=_em_settings,
                after_epoch=_apl_after_epoch, validate=_check_apl, paper_row=False,
                make_state=lambda split, cfg: PseudoLabels(split.labels_obs.dense()),
                # The soft labels, and at each epoch's end the run's labels and the training set's predictions.
                state_bytes=lambda images, classes: 13 * images * classes,
                published=end_to_end({"pascal": 89.19, "coco": 70.87})))
