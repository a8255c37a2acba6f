"""The class-aware selective loss (CSL) with partial asymmetric focusing (Ben-Baruch et al.,
"Multi-label Classification with Partial Annotations using Class-aware Selective Loss", CVPR 2022;
Alibaba-MIIL/PartialLabelingCSL): the loss, its class priors (from annotations, a file, or the CSL
paper's two-stage procedure, whose first stage trains here first), its flags (defaults of the CSL
code's README) and its registry entry. Not a row of the LL paper; added to a table by name.
"""
import dataclasses
import os
import sys

import numpy as np
import torch
import torch.nn as nn

import distributed
import losses
import run_files
from errors import UserError
from methods import Flag, Method, register

CITATION = ("Ben-Baruch et al., Multi-label Classification with Partial Annotations using Class-aware "
            "Selective Loss, CVPR 2022")


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
        ignored = ignored | losses.large_loss_mask(p, unannotated, min(likelihood_topk * logits.shape[0], p.numel()))
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


class ClassPrior(nn.Module):
    """The selective mode's state: the (K,) class priors its loss reads (``csl_prior``), the same for
    every image; given as a (B, K) row per image, as every state is, so that a batch split into parts
    (--loss_scope per_process) splits it too. Not saved with the checkpoint: a resumed run reads them
    again from their source."""

    def __init__(self, prior):
        super().__init__()
        self.register_buffer("prior", torch.as_tensor(prior, dtype=torch.float32), persistent=False)

    def forward(self, idx):
        return self.prior.expand(len(idx), -1)


class TrainingPrior(nn.Module):
    """The state of CSL's other modes, the prior model (Ben-Baruch et al. 2022; their code's
    ComputePrior): the running mean of sigmoid(logits) of every training batch, in training mode,
    over all the epochs run (``observe``). Saved in last.pt, so a resumed run averages the same
    batches; a --csl_mode selective run reads its ``mean`` as class_prior_model.npy."""

    def __init__(self, num_classes):
        super().__init__()
        self.register_buffer("sum", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, idx):
        return None                     # the loss reads no prior in these modes

    def update(self, logits):
        """Add a batch's (B, K) fp32 training logits."""
        self.sum += torch.sigmoid(logits.detach()).sum(dim=0, dtype=torch.float64)
        self.count += len(logits)

    def mean(self):
        """(K,) float64 numpy priors in [0, 1]."""
        return (self.sum / self.count).cpu().numpy()

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Also a checkpoint of 0976ac2 or before, whose count was a Python int."""
        return super().load_state_dict({**state_dict, "count": torch.as_tensor(state_dict["count"])}, strict, assign)


# CSL's files in its run folder (docs/run_folder.md).
PRIOR_RUN = "csl_prior_ignore"              # stage 1 of --csl_prior two_stage, inside the selective run's folder
PRIOR_MODEL_FILE = "class_prior_model.npy"  # the prior model's mean, written by a run in another mode
PRIOR_FILE = "class_prior.npy"              # the prior a selective run used, whatever its source


def two_stage_prior(cfg, resume, run):
    """The CSL paper's procedure for the selective mode's priors (--csl_prior two_stage): a temporary
    model trained in ignore mode, whose running mean of training predictions (``TrainingPrior``) it
    saves. That model is trained here first, in <run_dir>/csl_prior_ignore with the same settings,
    unless it finished (--resume continues it, --overwrite retrains it)."""
    options = cfg.method_options
    if options["csl_mode"] != "selective" or options["csl_prior"] != "two_stage":
        return
    stage1 = dataclasses.replace(cfg, method_options={**options, "csl_mode": "ignore"}, save_path=cfg.run_dir,
                                 exp_name=PRIOR_RUN, record_losses=False, record_labels_for=0)
    finished = run_files.finished(stage1.run_dir)
    if not finished or (cfg.overwrite and not resume):
        print(f"CSL two-stage prior: training the ignore-mode prior model in {stage1.run_dir} first")
        run(stage1, resume)
    distributed.barrier()          # the main process has written the prior file that every process reads


def prior_source(cfg):
    """Where the selective mode reads its class priors: 'annotations', a .npy path, or for two_stage
    the prior model's file in the run folder."""
    source = cfg.method_options["csl_prior"]
    return os.path.join(cfg.run_dir, PRIOR_RUN, PRIOR_MODEL_FILE) if source == "two_stage" else source


def load_prior_file(path, num_classes):
    """(K,) class priors from a .npy file, checked: K finite values in [0, 1]."""
    try:
        prior = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"--csl_prior {path} is not a readable .npy file ({err}); pass a .npy of "
                        f"{num_classes} class priors, e.g. the class_prior_model.npy of a --csl_mode ignore run, "
                        f"or leave --csl_prior at two_stage") from err
    if prior.shape != (num_classes,) or prior.dtype.kind not in "fiu":
        raise UserError(f"--csl_prior {path} holds a {prior.dtype} array of shape {prior.shape}; expected "
                        f"({num_classes},), one prior per class of this dataset in its class order (a "
                        f"class_prior_model.npy from a run on another dataset does not fit)")
    if not (np.isfinite(prior) & (prior >= 0) & (prior <= 1)).all():
        raise UserError(f"--csl_prior {path}: its values range from {np.nanmin(prior)} to {np.nanmax(prior)} "
                        f"(or are not finite); a class prior is a probability in [0, 1] (mean predicted "
                        f"probabilities, not logits)")
    return prior.astype(np.float64)


def csl_prior(cfg, labels_obs, source, run_dir):
    """The (K,) class priors of CSL's selective mode from ``source`` (``prior_source``); saved in
    the run folder as class_prior.npy.

    Args:
        labels_obs: the training split's observed labels (``labels.Labels``).
        source: 'annotations' or a .npy path.
    """
    if source == "annotations":
        negatives = labels_obs.column_counts(-1)
        if not negatives.any():
            raise UserError(
                f"--csl_prior annotations: the training labels have no observed negative (single-positive "
                f"labels), so a class's prior from them is only the share of images where it is observed "
                f"positive; these shares sum to at most 1 over the {labels_obs.shape[1]} classes, far below "
                f"the true priors, and --prior_threshold {cfg.method_options['prior_threshold']} is out of "
                f"reach, so the selective mode's prior rule would do nothing. Use the CSL paper's prior instead: "
                f"--csl_prior two_stage (the default; it trains an ignore-mode model first) or a .npy of "
                f"class priors (--csl_prior FILE)")
        prior = prior_from_annotations(labels_obs.column_counts(1), negatives, len(labels_obs))
    else:
        prior = load_prior_file(source, labels_obs.num_classes)
    if distributed.is_main():
        np.save(os.path.join(run_dir, PRIOR_FILE), prior)
    return prior


def _state(split, cfg):
    if cfg.method_options["csl_mode"] == "selective":
        return ClassPrior(csl_prior(cfg, split.labels_obs, prior_source(cfg), cfg.run_dir))
    return TrainingPrior(split.labels_obs.num_classes)


def _observe(state, logits):
    if isinstance(state, TrainingPrior):
        state.update(logits)


def _finish(state, cfg):
    """The prior model's file, for a --csl_mode selective run (stage 1 of two_stage, in ignore mode)."""
    if not isinstance(state, TrainingPrior):
        return {}
    path = os.path.join(cfg.run_dir, PRIOR_MODEL_FILE)
    np.save(path, state.mean())
    return {"class_prior_model": path}


def _loss(logits, labels, batch):
    options = batch.cfg.method_options
    prior = None if batch.state is None else batch.state[0]            # (K,): every row holds it
    return partial_selective_loss(logits, labels, prior=prior, mode=options["csl_mode"],
                                  gamma_pos=options["gamma_pos"], gamma_neg=options["gamma_neg"],
                                  gamma_unann=options["gamma_unann"], clip=options["clip"],
                                  prior_threshold=options["prior_threshold"],
                                  likelihood_topk=options["likelihood_topk"], reduction=options["csl_reduction"])


def _validate(options, args):
    """A --csl_prior file must exist; the summed loss with SGD is warned about (its steps are B*K
    times those of the mean at the same --lr; the authors train with Adam)."""
    if options["csl_prior"] not in ("two_stage", "annotations") and not os.path.isfile(options["csl_prior"]):
        return (f"--csl_prior {options['csl_prior']}: no such file ('two_stage', 'annotations' or a .npy of "
                f"class priors)")
    if options["csl_reduction"] == "sum" and args.optimizer == "sgd":
        print(f"warning: CSL's summed loss (--csl_reduction sum) with SGD takes steps B*K = "
              f"{args.bsize} x K times those of the mean loss at --lr {args.lr:g}; the CSL authors train "
              f"with Adam (scale invariant). Pass --optimizer adam or --csl_reduction mean", file=sys.stderr)
    return None


def _flag(name, help, default, **kwargs):
    return Flag(name, help, default=default, shown_default=default, **kwargs)


FLAGS = (
    _flag("csl_mode", "what an unannotated label is: negative, ignored, ignored with per-image normalisation, or "
          "selective (ignored in high-prior classes and when likely positive)", "selective", type=str,
          choices=CSL_MODES),
    _flag("gamma_pos", "focusing exponent of positives", 0.0),
    _flag("gamma_neg", "focusing exponent of observed negatives", 1.0),
    _flag("gamma_unann", "focusing exponent of unannotated labels", 4.0),
    _flag("clip", "probability shifting of negatives (0 = off)", 0.0),
    _flag("likelihood_topk", "selective: ignore the likelihood_topk * B most probable unannotated labels of a batch",
          5, type=int),
    _flag("prior_threshold", "selective: ignore unannotated labels of classes whose prior exceeds this", 0.5),
    _flag("csl_prior", "selective: 'two_stage' (the CSL paper's: an ignore-mode model is trained first in "
          "<run folder>/csl_prior_ignore, twice the training time, and the running mean of its training "
          "predictions is the prior), 'annotations' (from the observed labels; refused without observed "
          "negatives) or a .npy of K priors in [0, 1], e.g. the class_prior_model.npy that a --csl_mode ignore "
          "run saves", "two_stage", type=str),
    _flag("csl_reduction", "the loss as the CSL code returns it (sum over the batch's entries) or divided by B*K "
          "(mean, the scale of the other losses); Adam barely notices, SGD's steps are B*K times larger with sum",
          "sum", type=str, choices=CSL_REDUCTIONS),
)

# The CSL code's train.py (Alibaba-MIIL/PartialLabelingCSL): Adam at 2e-4 for the whole model (its
# OneCycleLR schedule, EMA and weight decay are not reproduced; docs/differences.md).
register(Method("CSL", _loss, "class-aware selective loss (flags below)", CITATION, flags=FLAGS,
                advice="class-aware selective loss (--mod_scheme CSL; defaults of the CSL code's README)",
                settings=lambda dataset: dict(optimizer="adam", lr=2e-4, lr_mult=1.0), paper_row=False,
                make_state=_state, observe=_observe, prepare=two_stage_prior, finish=_finish, validate=_validate,
                rejects=True, folder_name=lambda args, options: f"CSL-{options['csl_mode']}"),
         order=14)
