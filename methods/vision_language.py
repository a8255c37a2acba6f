"""The methods that learn from vision-language pseudo-labels (the current best on this protocol): VLPL
(Xing et al., CVPR 2024 workshops; mvrl/VLPL) and AEVLP (Tran et al., ICCV 2025; Fsoft-AIC/AEVLP), a
ResNet classifier trained on positive pseudo-labels of a zero-shot CLIP scorer (zero_shot.py, whose
score file scripts/zero_shot_scores.py makes first). Their pseudo-labels (kept row-sparse), losses
(AEVLP's GPR extends GR-Loss, gr_loss.py), the authors' defaults per dataset, flags and registry
entries. Label semantics: -1/0/+1; every loss matrix is averaged over all B*K entries. Equations are
numbered (V1, A1, P1, ...) in each docstring.
"""
import dataclasses
import math

import numpy as np
import torch
import torch.nn as nn

import datasets
import losses
from methods import Flag, Method, end_to_end, gr_loss, in_range, register
from methods.em import EM_LOG_EPSILON
from methods.gr_loss import GR_LOG_EPSILON, gr_unobserved


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
    pos_term, neg_term = losses.neg_log(p, EM_LOG_EPSILON), losses.neg_log(1 - p, EM_LOG_EPSILON)
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
    pos_term, neg_term = losses.neg_log(p, GR_LOG_EPSILON), losses.neg_log(1 - p, GR_LOG_EPSILON)
    pseudo = (label_vec_obs == 0) & pseudo_positive
    v_pseudo = torch.clamp(v, min=1 - lam[0], max=1 - lam[1])
    unobserved = torch.where(pseudo, (1 - v_pseudo) * (rho * pos_term + (1 - rho) * neg_term), gr_term)
    loss = torch.where(label_vec_obs == 1, pos_term, torch.where(label_vec_obs == -1, v * neg_term, unobserved))
    regulariser = (p.sum(dim=1).mean() - expected_num_pos) ** 2 / p.shape[1] ** 2
    return loss.mean() + reg * regulariser, pseudo


SCORES = Flag("zero_shot_scores", "the zero-shot score file (.npz, its .json beside it) of scripts/zero_shot_scores.py. "
              "Default: <data_dir>/zero_shot_vlpl.npz for VLPL, zero_shot_damp.npz for AEVLP", type=str, metavar="FILE")


SCORE_CHUNK_ROWS = 4096


def _pseudo_labels(mode, split, cfg, rule):
    """``FixedPseudoLabels`` of the training split from the zero-shot scores of its images (the rows of
    formatted_train_images.npy it holds; the file checked against the run's dataset, class list and
    image count), made chunk by chunk from the memory-mapped file: ``rule(scores, positions)`` gives the
    (n, K) bool pseudo-positives of the images at ``positions`` from their dict of (n, K) scores."""
    import zero_shot      # open_clip stays unimported unless a method reads scores
    num_images = len(np.load(datasets.images_path(cfg.data_dir, "train"), mmap_mode="r"))
    names = datasets.load_class_names(cfg.data_dir, split.labels_obs.num_classes)
    scores = zero_shot.load_scores(cfg.data_dir, mode, cfg.dataset, names, num_images,
                                   path=cfg.method_options["zero_shot_scores"])
    chunks = (np.arange(start, min(start + SCORE_CHUNK_ROWS, len(split)))
              for start in range(0, len(split), SCORE_CHUNK_ROWS))
    return FixedPseudoLabels.from_masks(
        (rule({key: np.asarray(array[split.rows[positions]]) for key, array in scores.items()}, positions)
         for positions in chunks), split.labels_obs.num_classes)


_VLPL = ("Xing et al., VLPL: Vision Language Pseudo Labels for Multi-label Learning with Single Positive Labels, "
         "CVPR 2024 workshops")
VLPL_ALPHA = Flag("vlpl_alpha", "weight of the entropy of the unobserved labels without a pseudo-label. Default: the "
                  "authors' per dataset (VOC 0.2, COCO and NUS-WIDE 0.1, CUB 0.01; 0.1 elsewhere)",
                  default=lambda dataset: {"pascal": 0.2, "cub": 0.01}.get(dataset, 0.1),
                  check=in_range(0, float("inf"), high_open=True))
VLPL_BETA = Flag("vlpl_beta_pos", "weight of the positive pseudo-labels (default 0.7)", default=0.7,
                 check=in_range(0, float("inf"), high_open=True))
VLPL_THRESHOLD = Flag("vlpl_threshold", "a class whose zero-shot score of the whole image exceeds this is a positive "
                      "pseudo-label (default 0.3)", default=0.3, check=in_range(0, 1, low_open=False, high_open=True))


def _vlpl_state(split, cfg):
    threshold = cfg.method_options["vlpl_threshold"]
    return _pseudo_labels("vlpl", split, cfg, lambda scores, _: vlpl_pseudo_labels(scores["global"], threshold))


def _vlpl(logits, labels, batch):
    options = batch.cfg.method_options
    return vlpl_loss(logits, labels, batch.state, options["vlpl_alpha"], options["vlpl_beta_pos"])


register(Method("VLPL", _vlpl, "CLIP's zero-shot positive pseudo-labels with EM on the other unobserved labels",
                _VLPL, flags=(SCORES, VLPL_ALPHA, VLPL_BETA, VLPL_THRESHOLD),
                advice=f"VLPL ({_VLPL}; defaults from the authors' main_clip.py). VLPL and AEVLP read zero-shot "
                       f"pseudo-label scores made by scripts/zero_shot_scores.py",
                # main_clip.py: Adam over the whole classifier at one lr (1e-4 on CUB), batch 8, 10 epochs,
                # every epoch run and the best on val kept.
                settings=lambda dataset: dict(optimizer="adam", lr=1e-4 if dataset == "cub" else 1e-5, bsize=8,
                                              lr_mult=1.0, num_epochs=10, early_stop_drop=math.inf),
                make_state=_vlpl_state, scores="vlpl", paper_row=False,
                published=end_to_end({"pascal": 89.10, "coco": 71.45, "nuswide": 49.55, "cub": 24.02})))

_AEVLP = ("Tran et al., More Reliable Pseudo-labels, Better Performance: A Generalized Approach to Single Positive "
          "Multi-label Learning (AEVLP), ICCV 2025")
# The authors' configs/<dataset>.json and config.py's lookup; elsewhere (demo, custom) COCO's.
AEVLP_SETTINGS = {
    "pascal": dict(bsize=8, num_epochs=8, k=(0.0, 2.0, -2.0, -2.0), q=(0.01, 1.0), lam=(0.7, 0.4), reg=0.05,
                   eta=0.0, threshold=0.5, top_k=3),
    "coco": dict(bsize=16, num_epochs=8, k=(0.0, 10.0, -2.0, -8.0), q=(0.01, 1.0), lam=(0.7, 0.5), reg=0.001,
                 eta=0.3, threshold=0.5, top_k=3),
    "nuswide": dict(bsize=16, num_epochs=10, k=(0.0, 10.0, -2.0, -8.0), q=(0.01, 1.0), lam=(0.7, 0.5), reg=0.001,
                    eta=0.3, threshold=0.6, top_k=3),
    "cub": dict(bsize=8, num_epochs=10, k=(0.0, 10.0, -2.0, -8.0), q=(0.01, 1.5), lam=(0.8, 0.2), reg=0.01,
                eta=0.005, threshold=0.005, top_k=32)}


def _aevlp_setting(key):
    return lambda dataset: AEVLP_SETTINGS.get(dataset, AEVLP_SETTINGS["coco"])[key]


AEVLP_K = dataclasses.replace(gr_loss.GR_K, name="aevlp_k_schedule", default=_aevlp_setting("k"),
                              help="w0 wT b0 bT of GR-Loss's k(p) in AEVLP (--gr_k_schedule). Default: the authors' "
                                   "0 10 -2 -8 (VOC 0 2 -2 -2)")
AEVLP_V = dataclasses.replace(gr_loss.GR_V, name="aevlp_v_schedule", help="mu0 sigma0 muT sigmaT of GR-Loss's v(p) in AEVLP "
                              "(--gr_v_schedule; default 0.5 2 0.8 0.5)")
AEVLP_Q = dataclasses.replace(gr_loss.GR_Q, name="aevlp_q", default=_aevlp_setting("q"), check=in_range(0, 2),
                              help="q2 q3 of GR-Loss's robust losses in AEVLP, each in (0, 2]. Default 0.01 1 "
                                   "(CUB 0.01 1.5)")
AEVLP_LAM = Flag("aevlp_lam", "lam1 lam2: a positive pseudo-label's weight 1 - v(p) is kept in [lam2, lam1]. "
                 "Default: COCO and NUS-WIDE 0.7 0.5, VOC 0.7 0.4, CUB 0.8 0.2", nargs=2,
                 default=_aevlp_setting("lam"), check=in_range(0, 1, low_open=False), metavar=("LAM1", "LAM2"))
AEVLP_RHO = Flag("aevlp_rho", "a positive pseudo-label's target (default 0.9)", default=0.9, check=in_range(0, 1))
AEVLP_REG = Flag("aevlp_reg", "weight of the expected-positives regulariser (uses --expected_num_pos). Default: "
                 "VOC 0.05, COCO and NUS-WIDE 0.001, CUB 0.01", default=_aevlp_setting("reg"),
                 check=in_range(0, float("inf"), low_open=False, high_open=True))
DAMP_ETA = Flag("damp_eta", "cap of DAMP's per-image threshold between a class's largest and smallest crop score. "
                "Default: COCO and NUS-WIDE 0.3, VOC 0, CUB 0.005", default=_aevlp_setting("eta"), check=in_range(0, 1, low_open=False))
DAMP_THRESHOLD = Flag("damp_threshold", "least DAMP score of a positive pseudo-label. Default: VOC and COCO 0.5, "
                      "NUS-WIDE 0.6, CUB 0.005", default=_aevlp_setting("threshold"), check=in_range(0, 1, low_open=False))
DAMP_TOP_K = Flag("damp_top_k", "at most this many positive pseudo-labels per image. Default: 3, CUB 32", type=int,
                  default=_aevlp_setting("top_k"), check=in_range(1, float("inf"), low_open=False, high_open=True))


def aevlp_schedule(epoch, cfg):
    """This epoch's w, b, mu, sigma of AEVLP's GPR loss: GR-Loss's schedule from AEVLP's flags."""
    options = cfg.method_options
    return gr_loss.gr_schedule(epoch, cfg.num_epochs, options["aevlp_k_schedule"], options["aevlp_v_schedule"])


def _aevlp_state(split, cfg):
    options = cfg.method_options

    def rule(scores, positions):
        return damp_pseudo_labels(
            scores["global"], scores["crop_max"], scores["crop_min"], split.labels_obs.batch(positions),
            options["damp_eta"], options["damp_threshold"], options["damp_top_k"])
    return _pseudo_labels("damp", split, cfg, rule)


def _aevlp(logits, labels, batch):
    cfg, options = batch.cfg, batch.cfg.method_options
    q2, q3 = options["aevlp_q"]
    return gpr_loss(logits, labels, batch.state, **aevlp_schedule(batch.epoch, cfg), q2=q2, q3=q3,
                                  lam=options["aevlp_lam"], rho=options["aevlp_rho"], reg=options["aevlp_reg"],
                                  expected_num_pos=cfg.expected_num_pos)


register(Method("AEVLP", _aevlp, "GPR loss on DAMP's zero-shot pseudo-labels of the image and its crops", _AEVLP,
                flags=(SCORES, AEVLP_K, AEVLP_V, AEVLP_Q, AEVLP_LAM, AEVLP_RHO, AEVLP_REG, DAMP_ETA, DAMP_THRESHOLD,
                       DAMP_TOP_K),
                advice=f"AEVLP ({_AEVLP}; defaults of the authors' configs/<dataset>.json)",
                # Adam at 1e-5 with the head at 10x, their batch size and epochs, early stop 2 points below the best.
                settings=lambda dataset: dict(optimizer="adam", lr=1e-5, lr_mult=10.0,
                                              bsize=_aevlp_setting("bsize")(dataset),
                                              num_epochs=_aevlp_setting("num_epochs")(dataset), early_stop_drop=2.0),
                make_state=_aevlp_state, scores="damp", schedule=aevlp_schedule, needs_k_hat=True, paper_row=False,
                published=end_to_end({"pascal": 90.46, "coco": 73.54, "nuswide": 50.70, "cub": 24.89})))
