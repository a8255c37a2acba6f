"""The registry of training methods: each ``--mod_scheme`` is one ``Method`` entry, which the CLI
(choices, flags, help), the config checks, the training loop, the experiment scripts and the
collector read. The training loop has no per-method branch: it calls ``entry.loss``, keeps
``entry.make_state``'s state, writes the labels that ``entry.corrections`` returns, and calls
``entry.after_epoch``.

Adding a method: write its loss function (losses.py or losses_beyond.py), then one ``register(Method(...))``
below with its flags (``Flag``: default, valid range), its authors' defaults and, where it has one,
its state (an ``nn.Module`` mapping row indices to (B, K) tensors) and end-of-epoch step.
"""
import dataclasses
import math
import os
from typing import Callable, Optional

import numpy as np
import torch

import analysis
import losses
import losses_beyond


@dataclasses.dataclass(frozen=True)
class Flag:
    """A method's own command-line flag (``--<name>``). Its parser default is None, so that a flag
    given to a method that does not use it can be refused; ``default`` (a value, or a function of
    the dataset) fills it in for the method's runs."""
    name: str
    help: str
    type: type = float
    nargs: Optional[int] = None
    default: object = None
    check: Optional[Callable] = None      # value -> None, or what the valid range is
    metavar: Optional[tuple] = None       # the names of a list flag's values in --help
    choices: Optional[tuple] = None       # the values argparse accepts (a str flag's)
    legacy: object = None                 # what runs ran with before the flag existed (their config.json lacks it)

    def default_for(self, dataset):
        return self.default(dataset) if callable(self.default) else self.default


@dataclasses.dataclass(frozen=True)
class Batch:
    """What a method's loss sees besides the logits and labels."""
    cfg: object                 # config.Config
    epoch: int                  # 1-based
    state: Optional[torch.Tensor] = None    # (B, K) rows of the method's state (ROLE's estimate, APL's labels)
    prior: Optional[torch.Tensor] = None    # (K,) CSL's class prior


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    loss: Callable              # (logits (B, K) fp32, labels (B, K) in {-1, 0, +1}, Batch) -> (loss, modified (B, K) bool)
    summary: str                # one line of --help
    citation: str = ""
    flags: tuple = ()           # Flag entries, shown as one argument group of --help
    advice: str = ""            # the title line of that group
    settings: Callable = None   # dataset -> the authors' optimizer / lr / delta_rel for this method, or {}
    rate_scheme: bool = False   # the modified share grows with --delta_rel (LL-R, LL-Ct, LL-Cp)
    corrections: Callable = None  # (logits, labels, modified, Batch) -> (B, K) bool written as +1 into the run's labels (LL-Cp)
    needs_k_hat: bool = False   # uses the expected number of positives (EPR, ROLE)
    make_state: Callable = None  # (train split (datasets.Split), cfg) -> nn.Module: idx -> (B, K)
    state_bytes: Callable = None  # (images, classes) -> bytes its state takes on the device, checked before it is made
    state_trains: bool = False  # its parameters train with the classifier (ROLE's estimate)
    after_epoch: Callable = None  # (state, epoch, cfg, labels_obs (labels.Labels), predict_train: () -> (N, K) logits)
    schedule: Callable = None   # (epoch, cfg) -> dict of this epoch's hyperparameters, for the log
    validate: Callable = None   # (options, args) -> None, or the message of a combination that cannot work
    scores: str = None          # the zero-shot score file it reads (zero_shot.MODES), made by scripts/zero_shot_scores.py
    paper_row: bool = True      # a row of the LL paper's tables (else added to scripts by name)
    published: dict = dataclasses.field(default_factory=dict)   # dataset -> published test mAP

    @property
    def writes_labels(self):
        """Whether the run's training labels change (LL-Cp's permanent corrections)."""
        return self.corrections is not None

    def rate(self, epoch, delta_rel):
        """The share of label entries modified in ``epoch`` (0 for methods that select nothing)."""
        return losses.modification_rate(epoch, self.name, delta_rel) if self.rate_scheme else 0.0

    def epoch_stats(self, epoch, cfg):
        """What the epoch's log line records of the method's schedule."""
        return {"ll_rate": self.rate(epoch, cfg.delta_rel), **(self.schedule(epoch, cfg) if self.schedule else {})}


REGISTRY = {}


def register(method):
    REGISTRY[method.name] = method
    return method


def get(name):
    return REGISTRY[name]


def all_flags():
    """Every method's flags, each once: (flag, names of the methods that use it)."""
    users = {}
    for method in REGISTRY.values():
        for flag in method.flags:
            users.setdefault(flag.name, (flag, []))[1].append(method.name)
    return list(users.values())


# ------------------------------------------------------------------ the paper's methods and baselines

def _scheme_loss(name):
    def loss(logits, labels, batch):
        cfg = batch.cfg
        return losses.compute_batch_loss(logits, labels, name, cfg.delta_rel, batch.epoch, R0=cfg.R0,
                                         delta_abs=cfg.delta_abs, expected_num_pos=cfg.expected_num_pos,
                                         estimate_logits=batch.state)
    return loss


_LL = "Kim et al., Large Loss Matters, CVPR 2022"
_COLE = "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021"
register(Method("AN", _scheme_loss("AN"), "Naive assume-negative (Eq. 2)", _LL))
register(Method("LL-R", _scheme_loss("LL-R"), "reject large losses (Eq. 4)", _LL, rate_scheme=True))
register(Method("LL-Ct", _scheme_loss("LL-Ct"), "correct large losses temporarily (Eq. 5-6)", _LL, rate_scheme=True))
LLCP_WRITE = Flag("llcp_write", "which corrected entries LL-Cp writes permanently as positives: authors (as "
                  "the authors' code, which made the paper's numbers: those whose loss is strictly above the k-th "
                  "largest, k - 1 of the k per batch, so none where k = 1, as with their VOC setting) or all (the "
                  "paper's text read literally: all k). Default authors", type=str, default="authors",
                  choices=losses.LLCP_WRITE_RULES, legacy="all")


def _llcp_corrections(logits, labels, modified, batch):
    cfg = batch.cfg
    k = losses.num_to_modify(*logits.shape, losses.modification_rate(batch.epoch, "LL-Cp", cfg.delta_rel))
    return losses.permanent_corrections(logits, labels, modified, k, cfg.method_options["llcp_write"])


register(Method("LL-Cp", _scheme_loss("LL-Cp"), "correct large losses permanently (Eq. 7-9)", _LL,
                flags=(LLCP_WRITE,), advice=f"LL-Cp ({_LL}; the permanent write)", rate_scheme=True,
                corrections=_llcp_corrections))
def _threshold(epoch, cfg):
    return {"ll_threshold": losses.absolute_threshold(epoch, cfg.R0, cfg.delta_abs)} if epoch > 1 else {}


register(Method("LL-R-abs", _scheme_loss("LL-R-abs"), "LL-R above an absolute loss threshold (--R0, --delta_abs)",
                _LL, schedule=_threshold))
register(Method("LL-Ct-abs", _scheme_loss("LL-Ct-abs"), "LL-Ct above an absolute threshold", _LL, schedule=_threshold))
register(Method("WAN", _scheme_loss("WAN"), "weak assume-negative", _COLE))
register(Method("LSAN", _scheme_loss("LSAN"), "assume-negative with label smoothing", _COLE))
register(Method("EPR", _scheme_loss("EPR"), "expected positive regularisation", _COLE, needs_k_hat=True))
# ROLE's estimate: a float32 logit per training entry, its gradient and Adam's two buffers.
register(Method("ROLE", _scheme_loss("ROLE"), "regularised online label estimation", _COLE, needs_k_hat=True,
                make_state=lambda split, cfg: losses.LabelEstimate(split.labels_obs.dense()), state_trains=True,
                state_bytes=lambda images, classes: 16 * images * classes))
register(Method("IU", _scheme_loss("IU"), "ignore the unobserved labels (observed entries only)", _COLE))


def _csl_loss(logits, labels, batch):
    return losses.partial_selective_loss(logits, labels, prior=batch.prior, **batch.cfg.csl_options)


# The CSL code's train.py (Alibaba-MIIL/PartialLabelingCSL): Adam at 2e-4 for the whole model (its
# OneCycleLR schedule, EMA and weight decay are not reproduced; README "Differences").
register(Method("CSL", _csl_loss, "class-aware selective loss (flags below)",
                "Ben-Baruch et al., Multi-label Classification with Partial Annotations using Class-aware "
                "Selective Loss, CVPR 2022", paper_row=False,
                settings=lambda dataset: dict(optimizer="adam", lr=2e-4, lr_mult=1.0)))


# ------------------------------------------------------------------ beyond the paper

def _range(low, high, low_open=True, high_open=False):
    """A check that a number (or each of a list) lies in the interval."""
    def check(value):
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
                return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        return None
    return check


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
                default=_em_setting("alpha"), check=_range(0, float("inf"), high_open=True))
APL_BETA = Flag("apl_beta", "weight of the soft negative pseudo-labels. Default: VOC 0.02, COCO 0.9, NUS-WIDE 0.2, "
                "CUB 0.4 (0.9 elsewhere)", default=_em_setting("beta"), check=_range(0, float("inf"), high_open=True))
APL_WARMUP = Flag("apl_warmup_epoch", "first epoch after which pseudo-labels are assigned. Default: VOC and COCO 5, "
                  "NUS-WIDE 4, CUB 3 (5 elsewhere); must be below --num_epochs", type=int,
                  default=_em_setting("warmup"), check=_range(1, float("inf"), low_open=False, high_open=True))
APL_PROPORTION = Flag("apl_neg_proportion", "share of each class's unobserved labels pseudo-labelled negative "
                      "over the epochs from the warm-up on (the authors: 0.9)", default=0.9, check=_range(0, 1))


def _em_settings(dataset):
    """Zhou et al. train the whole classifier with Adam at one lr (no 10x head), with their batch size,
    and stop at the first epoch whose val mAP is below the best."""
    setting = EM_SETTINGS.get(dataset, EM_FALLBACK)
    return dict(optimizer="adam", lr=setting["lr"], bsize=setting["bsize"], lr_mult=1.0, early_stop_drop=0.0)


def _em(logits, labels, batch):
    return losses_beyond.em_loss(logits, labels, batch.cfg.method_options["em_alpha"])


def _em_apl(logits, labels, batch):
    options = batch.cfg.method_options
    return losses_beyond.em_loss(logits, labels, options["em_alpha"], batch.state, options["apl_beta"])


def _apl_after_epoch(state, epoch, cfg, labels_obs, predict_train):
    """APL after each epoch from the warm-up on (as the authors' loop: after training, before val)."""
    options = cfg.method_options
    if epoch < options["apl_warmup_epoch"]:
        return
    probs = torch.sigmoid(torch.as_tensor(predict_train(), dtype=torch.float32)).to(state.soft.device)
    counts = losses_beyond.apl_count(state.num_unobserved.cpu().numpy(), options["apl_neg_proportion"],
                                     cfg.num_epochs, options["apl_warmup_epoch"])
    observed = torch.as_tensor(labels_obs.dense(), device=state.soft.device)
    state.soft.copy_(losses_beyond.apl_select(probs, observed, state.soft, counts))


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
                make_state=lambda split, cfg: losses_beyond.PseudoLabels(split.labels_obs.dense()),
                # The soft labels, and at each epoch's end the run's labels and the training set's predictions.
                state_bytes=lambda images, classes: 13 * images * classes,
                published={"pascal": 89.19, "coco": 70.87}))

_GR = "Chen et al., Boosting Single Positive Multi-label Classification with Generalized Robust Loss, IJCAI 2024"
GR_K = Flag("gr_k_schedule", "w0 wT b0 bT: the soft pseudo-label k(p) = sigmoid(w p + b), w and b moving linearly "
            "from (w0, b0) to (wT, bT) over the epochs (the authors' default 0 2 -2 -2)", nargs=4,
            default=(0.0, 2.0, -2.0, -2.0), check=_range(-100, 100),
            metavar=("W0", "WT", "B0", "BT"))
GR_V = Flag("gr_v_schedule", "mu0 sigma0 muT sigmaT: the Gaussian weight v(p) = exp(-(p - mu)^2 / 2 sigma^2) of the "
            "unobserved labels, mu in [0, 1] and sigma > 0 moving linearly (default 0.5 2 0.8 0.5)", nargs=4,
            default=(0.5, 2.0, 0.8, 0.5), metavar=("MU0", "SIGMA0", "MUT", "SIGMAT"))
GR_Q = Flag("gr_q", "q2 q3: exponents of the robust losses of a label taken as positive, (1 - p^q2)/q2, and as "
            "negative, (1 - (1-p)^q3)/q3; each in (0, 1] (default 0.01 1)", nargs=2, default=(0.01, 1.0),
            check=_range(0, 1), metavar=("Q2", "Q3"))


def _check_gr_v(value):
    mu0, sigma0, mu_end, sigma_end = value
    if not (0 <= mu0 <= 1 and 0 <= mu_end <= 1 and sigma0 > 0 and sigma_end > 0):
        return "mu0 and muT in [0, 1], sigma0 and sigmaT > 0"
    return None


GR_V = dataclasses.replace(GR_V, check=_check_gr_v)


def gr_schedule(epoch, cfg):
    """This epoch's w, b, mu, sigma of GR-Loss (losses_beyond.gr_schedule)."""
    options = cfg.method_options
    # Style within counts the frozen epochs in --num_epochs; after Cole et al.'s separate linear phase the
    # fine-tuning epochs count from 1 (cfg.phase_epoch), so the schedule starts there.
    n = cfg.linear_init_epochs if cfg.train_mode == "linear_init" and not cfg.separate_linear_phase else 0
    return losses_beyond.gr_schedule(epoch, cfg.num_epochs, options["gr_k_schedule"], options["gr_v_schedule"], n)


def _gr(logits, labels, batch):
    q2, q3 = batch.cfg.method_options["gr_q"]
    return losses_beyond.gr_loss(logits, labels, **gr_schedule(batch.epoch, batch.cfg), q2=q2, q3=q3)


register(Method("GR-Loss", _gr, "generalized robust loss: soft pseudo-labels and Gaussian reweighting", _GR,
                flags=(GR_K, GR_V, GR_Q), advice=f"GR-Loss ({_GR}; defaults of the authors' config.py)",
                # The authors' config.py: Adam at 1e-5, batch 8, 8 epochs, early stop 2 points below the best.
                settings=lambda dataset: dict(optimizer="adam", lr=1e-5, bsize=8, num_epochs=8, early_stop_drop=2.0),
                schedule=gr_schedule,
                paper_row=False, published={"pascal": 89.8, "coco": 73.2, "nuswide": 49.1}))


# ------------------------------------------------------------------ vision-language pseudo-labels

SCORES = Flag("zero_shot_scores", "the zero-shot score file (.npz, its .json beside it) of scripts/zero_shot_scores.py. "
              "Default: <data_dir>/zero_shot_vlpl.npz for VLPL, zero_shot_damp.npz for AEVLP", type=str, metavar="FILE")


SCORE_CHUNK_ROWS = 4096


def _pseudo_labels(mode, split, cfg, rule):
    """``FixedPseudoLabels`` of the training split from the zero-shot scores of its images (the rows of
    formatted_train_images.npy it holds; the file checked against the run's dataset, class list and
    image count), made chunk by chunk from the memory-mapped file: ``rule(scores, positions)`` gives the
    (n, K) bool pseudo-positives of the images at ``positions`` from their dict of (n, K) scores."""
    import zero_shot      # open_clip stays unimported unless a method reads scores
    num_images = len(np.load(os.path.join(cfg.data_dir, "formatted_train_images.npy"), mmap_mode="r"))
    names = analysis.load_class_names(cfg.data_dir, split.labels_obs.num_classes)
    scores = zero_shot.load_scores(cfg.data_dir, mode, cfg.dataset, names, num_images,
                                   path=cfg.method_options["zero_shot_scores"])
    chunks = (np.arange(start, min(start + SCORE_CHUNK_ROWS, len(split)))
              for start in range(0, len(split), SCORE_CHUNK_ROWS))
    return losses_beyond.FixedPseudoLabels.from_masks(
        (rule({key: np.asarray(array[split.rows[positions]]) for key, array in scores.items()}, positions)
         for positions in chunks), split.labels_obs.num_classes)


_VLPL = ("Xing et al., VLPL: Vision Language Pseudo Labels for Multi-label Learning with Single Positive Labels, "
         "CVPR 2024 workshops")
VLPL_ALPHA = Flag("vlpl_alpha", "weight of the entropy of the unobserved labels without a pseudo-label. Default: the "
                  "authors' per dataset (VOC 0.2, COCO and NUS-WIDE 0.1, CUB 0.01; 0.1 elsewhere)",
                  default=lambda dataset: {"pascal": 0.2, "cub": 0.01}.get(dataset, 0.1),
                  check=_range(0, float("inf"), high_open=True))
VLPL_BETA = Flag("vlpl_beta_pos", "weight of the positive pseudo-labels (default 0.7)", default=0.7,
                 check=_range(0, float("inf"), high_open=True))
VLPL_THRESHOLD = Flag("vlpl_threshold", "a class whose zero-shot score of the whole image exceeds this is a positive "
                      "pseudo-label (default 0.3)", default=0.3, check=_range(0, 1, low_open=False, high_open=True))


def _vlpl_state(split, cfg):
    threshold = cfg.method_options["vlpl_threshold"]
    return _pseudo_labels("vlpl", split, cfg, lambda scores, _: losses_beyond.vlpl_pseudo_labels(scores["global"], threshold))


def _vlpl(logits, labels, batch):
    options = batch.cfg.method_options
    return losses_beyond.vlpl_loss(logits, labels, batch.state, options["vlpl_alpha"], options["vlpl_beta_pos"])


register(Method("VLPL", _vlpl, "CLIP's zero-shot positive pseudo-labels with EM on the other unobserved labels",
                _VLPL, flags=(SCORES, VLPL_ALPHA, VLPL_BETA, VLPL_THRESHOLD),
                advice=f"VLPL ({_VLPL}; defaults from the authors' main_clip.py). VLPL and AEVLP read zero-shot "
                       f"pseudo-label scores made by scripts/zero_shot_scores.py",
                # main_clip.py: Adam over the whole classifier at one lr (1e-4 on CUB), batch 8, 10 epochs,
                # every epoch run and the best on val kept.
                settings=lambda dataset: dict(optimizer="adam", lr=1e-4 if dataset == "cub" else 1e-5, bsize=8,
                                              lr_mult=1.0, num_epochs=10, early_stop_drop=math.inf),
                make_state=_vlpl_state, scores="vlpl", paper_row=False,
                published={"pascal": 89.10, "coco": 71.45, "nuswide": 49.55, "cub": 24.02}))

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


AEVLP_K = dataclasses.replace(GR_K, name="aevlp_k_schedule", default=_aevlp_setting("k"),
                              help="w0 wT b0 bT of GR-Loss's k(p) in AEVLP (--gr_k_schedule). Default: the authors' "
                                   "0 10 -2 -8 (VOC 0 2 -2 -2)")
AEVLP_V = dataclasses.replace(GR_V, name="aevlp_v_schedule", help="mu0 sigma0 muT sigmaT of GR-Loss's v(p) in AEVLP "
                              "(--gr_v_schedule; default 0.5 2 0.8 0.5)")
AEVLP_Q = dataclasses.replace(GR_Q, name="aevlp_q", default=_aevlp_setting("q"), check=_range(0, 2),
                              help="q2 q3 of GR-Loss's robust losses in AEVLP, each in (0, 2]. Default 0.01 1 "
                                   "(CUB 0.01 1.5)")
AEVLP_LAM = Flag("aevlp_lam", "lam1 lam2: a positive pseudo-label's weight 1 - v(p) is kept in [lam2, lam1]. "
                 "Default: COCO and NUS-WIDE 0.7 0.5, VOC 0.7 0.4, CUB 0.8 0.2", nargs=2,
                 default=_aevlp_setting("lam"), check=_range(0, 1, low_open=False), metavar=("LAM1", "LAM2"))
AEVLP_RHO = Flag("aevlp_rho", "a positive pseudo-label's target (default 0.9)", default=0.9, check=_range(0, 1))
AEVLP_REG = Flag("aevlp_reg", "weight of the expected-positives regulariser (uses --expected_num_pos). Default: "
                 "VOC 0.05, COCO and NUS-WIDE 0.001, CUB 0.01", default=_aevlp_setting("reg"),
                 check=_range(0, float("inf"), low_open=False, high_open=True))
DAMP_ETA = Flag("damp_eta", "cap of DAMP's per-image threshold between a class's largest and smallest crop score. "
                "Default: COCO and NUS-WIDE 0.3, VOC 0, CUB 0.005", default=_aevlp_setting("eta"), check=_range(0, 1, low_open=False))
DAMP_THRESHOLD = Flag("damp_threshold", "least DAMP score of a positive pseudo-label. Default: VOC and COCO 0.5, "
                      "NUS-WIDE 0.6, CUB 0.005", default=_aevlp_setting("threshold"), check=_range(0, 1, low_open=False))
DAMP_TOP_K = Flag("damp_top_k", "at most this many positive pseudo-labels per image. Default: 3, CUB 32", type=int,
                  default=_aevlp_setting("top_k"), check=_range(1, float("inf"), low_open=False, high_open=True))


def aevlp_schedule(epoch, cfg):
    """This epoch's w, b, mu, sigma of AEVLP's GPR loss: GR-Loss's schedule from AEVLP's flags."""
    options = cfg.method_options
    return losses_beyond.gr_schedule(epoch, cfg.num_epochs, options["aevlp_k_schedule"], options["aevlp_v_schedule"])


def _aevlp_state(split, cfg):
    options = cfg.method_options

    def rule(scores, positions):
        return losses_beyond.damp_pseudo_labels(
            scores["global"], scores["crop_max"], scores["crop_min"], split.labels_obs.batch(positions),
            options["damp_eta"], options["damp_threshold"], options["damp_top_k"])
    return _pseudo_labels("damp", split, cfg, rule)


def _aevlp(logits, labels, batch):
    cfg, options = batch.cfg, batch.cfg.method_options
    q2, q3 = options["aevlp_q"]
    return losses_beyond.gpr_loss(logits, labels, batch.state, **aevlp_schedule(batch.epoch, cfg), q2=q2, q3=q3,
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
                published={"pascal": 90.46, "coco": 73.54, "nuswide": 50.70, "cub": 24.89}))


# ------------------------------------------------------------------ BoostLU: a model option for any method

BOOSTLU_DEFAULT_ALPHA = 5.0
# BoostLU's README and config.py (youngwk/BridgeGapExplanationPAMC): Adam, lr 1e-5, and one
# delta_rel per LL scheme on every dataset.
BOOSTLU_SETTINGS = dict(optimizer="adam", lr=1e-5, delta_rel={"LL-R": 0.5, "LL-Ct": 0.2, "LL-Cp": 0.1})
BOOSTLU_CITATION = ("Kim et al., Bridging the Gap between Model Explanations in Partially Annotated Multi-label "
                    "Classification, CVPR 2023")
# Published test mAP of LL + BoostLU: not verified here (the paper's table could not be read from this
# machine); left empty rather than guessed.
BOOSTLU_PUBLISHED = {}


def method_defaults(name, dataset, boostlu):
    """The authors' defaults of a method (and of BoostLU runs) that override the LL paper's
    per-dataset settings where the user passed nothing."""
    defaults = dict(REGISTRY[name].settings(dataset)) if REGISTRY[name].settings else {}
    if boostlu:
        # Their train.py runs every epoch and keeps the best on val: no early stop.
        defaults.update(optimizer=BOOSTLU_SETTINGS["optimizer"], lr=BOOSTLU_SETTINGS["lr"], early_stop_drop=math.inf)
        if name in BOOSTLU_SETTINGS["delta_rel"]:
            defaults["delta_rel"] = BOOSTLU_SETTINGS["delta_rel"][name]
    return defaults
