"""Command-line arguments and the one frozen run configuration.

Flag names follow the official code (snucml/LargeLossMatters), so its command lines run unchanged.
The config is built once and never edited: whatever changes with the epoch is a pure function of
the epoch (see ``losses.growing_rate``).
"""
import argparse
import dataclasses
import os

import datasets
import methods
import models
from methods import boostlu
from errors import UserError

ARCHS = models.ARCHS

# The optimizer and lr the authors published for each dataset of Table 2 (upstream issue #4; SPEC
# section 6), the LL protocol's defaults; their best delta_rel per scheme is in methods/large_loss.py.
PAPER_SETTINGS = {
    "pascal": dict(optimizer="sgd", lr=5e-3),
    "coco": dict(optimizer="adam", lr=1e-5),
    "nuswide": dict(optimizer="adam", lr=1e-5),
    "cub": dict(optimizer="adam", lr=7.5e-5),
}
OTHER_DATASETS = dict(optimizer="adam", lr=1e-5)
# k_hat of the EPR and ROLE baselines: the expected number of positives per training image (Cole et
# al.; SPEC section 5). Elsewhere it is --expected_num_pos, or else the mean over the training
# split's full labels where the dataset has them (demo, custom).
EXPECTED_POSITIVES = {"pascal": 1.5, "coco": 2.9, "nuswide": 1.9, "cub": 31.4}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a row of the paper's tables was trained: which optimizer, whether the linear head learns
    10x faster, whether val mAP may stop the run early."""
    optimizer: str          # None: the dataset's PAPER_SETTINGS (or --optimizer)
    head_lr_mult: bool      # the head at lr * lr_mult (else at lr, like the backbone)
    early_stop: bool        # stop when val mAP falls --early_stop_drop below the best
    doc: str


# The training protocols (--protocol). Which row of Table 2 runs under which is decided in one place,
# the row's registry entry (methods.Row.protocol). In both, ROLE's label estimate learns at lr * lr_mult, in the
# classifier's optimizer (Adam under "cole").
PROTOCOLS = {
    "ll": Protocol(optimizer=None, head_lr_mult=True, early_stop=True,
                   doc="the LL paper's (SPEC 6): the dataset's optimizer and lr (PAPER_SETTINGS), the head at "
                       "lr * lr_mult, early stop"),
    "cole": Protocol(optimizer="adam", head_lr_mult=False, early_stop=False,
                     doc="Cole et al.'s train.py: Adam, the whole classifier at lr, every epoch run and the best "
                         "on val mAP kept; --lr from their search (COLE_SEARCH)"),
}
# Cole et al.'s search, per method and dataset (their train.py): every (bsize, lr) pair, 10 epochs,
# the run with the best val mAP reported. They publish no chosen pair for end-to-end training.
COLE_SEARCH = {"bsize": (8, 16), "lr": (1e-2, 1e-3, 1e-4, 1e-5)}
# LinearInit as Cole et al. run it (--linear_init_style cole): the linear phase's (lr, bsize), fixed,
# from their train.py lookup 'linear_init_params' (published for AN-LS and ROLE only; from a search
# of the linear phase they did not publish for the other losses). 25 epochs on fixed features.
COLE_LINEAR_INIT = {
    "LSAN": {"pascal": (1e-4, 8), "coco": (1e-4, 8), "nuswide": (1e-4, 16), "cub": (1e-4, 8)},
    "ROLE": {"pascal": (1e-3, 16), "coco": (1e-3, 16), "nuswide": (1e-3, 16), "cub": (1e-3, 8)},
}
COLE_LINEAR_EPOCHS = 25
LINEAR_INIT_STYLES = ("within", "cole")


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str
    data_dir: str
    mod_scheme: str
    delta_rel: float
    R0: float
    delta_abs: float
    expected_num_pos: float
    train_set_variant: str
    optimizer: str
    lr: float
    lr_mult: float
    bsize: int
    num_epochs: int
    arch: str
    weights: str
    image_size: int
    train_mode: str
    linear_init_style: str
    linear_init_epochs: int
    linear_init_lr: float
    linear_init_bsize: int
    val_frac: float
    split_seed: int
    ss_frac_train: float
    ss_seed: int
    early_stop_drop: float
    seed: int
    num_workers: int
    device: str
    amp: str
    protocol: str
    save_path: str
    exp_name: str
    overwrite: bool
    loss_scope: str
    sync_bn: bool
    compile: bool
    num_processes: int
    record_losses: bool = False
    record_labels_for: int = 0
    boostlu_alpha: float = None      # BoostLU's boost of positive CAM values; None: the plain model
    method_options: dict = dataclasses.field(default_factory=dict)   # the method's own flags (methods/)
    ap_without_positive: str = "zero"
    max_steps_per_epoch: int = None

    @property
    def run_dir(self):
        return os.path.join(self.save_path, self.exp_name)

    @property
    def head_lr(self):
        """The linear head's lr: lr * lr_mult under the LL protocol, lr under Cole et al.'s."""
        return self.lr * (self.lr_mult if PROTOCOLS[self.protocol].head_lr_mult else 1.0)

    @property
    def early_stop(self):
        return PROTOCOLS[self.protocol].early_stop

    @property
    def separate_linear_phase(self):
        """Cole et al.'s LinearInit: a linear phase of its own before --num_epochs of fine-tuning."""
        return self.train_mode == "linear_init" and self.linear_init_style == "cole"

    @property
    def total_epochs(self):
        """Epochs the run trains: the linear phase's too when it comes before --num_epochs."""
        return self.num_epochs + (self.linear_init_epochs if self.separate_linear_phase else 0)

    def frozen_backbone(self, epoch):
        """LinearInit trains only the head in its first ``linear_init_epochs`` (1-based, of the run) epochs."""
        return self.train_mode == "linear_init" and epoch <= self.linear_init_epochs

    def linear_phase(self, epoch):
        """Whether the run's (1-based) ``epoch`` is in Cole et al.'s separate linear phase."""
        return self.separate_linear_phase and epoch <= self.linear_init_epochs

    def phase_epoch(self, epoch):
        """The epoch counter of the losses (the LL warm-up is epoch 1): the fine-tuning after a separate
        linear phase counts again from 1, as a fresh run of Cole et al.'s would."""
        return epoch - self.linear_init_epochs if self.separate_linear_phase and epoch > self.linear_init_epochs else epoch


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default in --help; for a method's flag, whose parser default is None (so that another
    method's run can refuse it), the default its Flag says to show."""

    def _get_help_string(self, action):
        shown = getattr(action, "shown_default", None)
        return super()._get_help_string(action) if shown is None else f"{action.help} (default: {shown})"


def get_args_parser():
    p = argparse.ArgumentParser(
        "Large Loss Matters: multi-label learning from partial labels", formatter_class=HelpFormatter)
    _data_flags(p)
    _method_flags(p)
    add_method_flags(p)
    _boostlu_flags(p)
    _optimisation_flags(p)
    _model_flags(p)
    _run_flags(p)
    _several_gpus_flags(p)
    _analysis_flags(p)
    return p


def _data_flags(p):
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="coco", choices=tuple(datasets.DATASETS),
                   help="'demo' is generated on first use (no download); 'custom' reads --data_dir")
    g.add_argument("--data_dir", default=None,
                   help="folder in the formatted layout (data/README.md); default data/<dataset>")
    g.add_argument("--train_set_variant", default="observed", choices=("observed", "clean"),
                   help="'clean' trains on the full labels: the paper's 'Full label' upper bound")
    g.add_argument("--val_frac", type=float, default=0.2,
                   help="share of the official train set held out as val (Cole et al.'s split), where the dataset "
                        "does not ship a validation split of its own (OpenImages does: it is used as val)")
    g.add_argument("--split_seed", type=int, default=1200, help="seed of the train/val split")
    g.add_argument("--ss_frac_train", type=float, default=1.0,
                   help="fraction of the training images kept (paper Fig. 6)")
    g.add_argument("--ss_seed", type=int, default=999, help="seed of the training-image subsampling")
    g.add_argument("--image_size", type=int, default=448, help="images are resized to a square of this side, in pixels")
    g.add_argument("--num_workers", type=int, default=4, help="DataLoader worker processes")



def _method_flags(p):
    g = p.add_argument_group("method")
    g.add_argument("--mod_scheme", default="AN", choices=tuple(methods.REGISTRY),
                   help="; ".join(f"{m.name}: {m.summary}" for m in methods.REGISTRY.values())
                        + ". Full label: --train_set_variant clean --mod_scheme AN. Each method's own flags "
                          "are in its group below")
    g.add_argument("--delta_rel", type=float, default=None,
                   help="percent per epoch: LL-R/LL-Ct modify (t-1)*delta_rel %% of each batch's "
                        "label entries in epoch t, LL-Cp delta_rel %% per batch from epoch 2. "
                        "Default: the authors' best value for the dataset and scheme (0.1-0.4)")
    g.add_argument("--R0", type=float, default=None,
                   help="LL-R-abs/LL-Ct-abs: initial loss threshold R0 (BCE, nats); from epoch 2 the "
                        "unobserved entries with loss > R(t) = R0 - t * delta_abs are modified. No "
                        "published default: required for these schemes")
    g.add_argument("--delta_abs", type=float, default=None,
                   help="LL-R-abs/LL-Ct-abs: decrease of the threshold per epoch (BCE, nats); required")
    g.add_argument("--expected_num_pos", type=float, default=None,
                   help="k_hat of EPR and ROLE (expected positives per image). Default: Cole et al.'s value "
                        "(VOC 1.5, COCO 2.9, NUS-WIDE 1.9, CUB 31.4); elsewhere the mean number of "
                        "positives per image in the training split's full labels (demo, custom)")



def _boostlu_flags(p):
    g = p.add_argument_group(f"BoostLU (any --mod_scheme; {boostlu.CITATION})")
    g.add_argument("--boostlu", action="store_true",
                   help="the head as a 1x1 convolution giving class activation maps whose positive values are "
                        "multiplied by --boostlu_alpha before global average pooling, in training and at "
                        "inference. Defaults become the authors': Adam, lr 1e-5, delta_rel 0.5 / 0.2 / 0.1 for "
                        "LL-R / LL-Ct / LL-Cp. Needs a spatial map (not vit_b_16) and end-to-end training")
    g.add_argument("--boostlu_alpha", type=float, default=None,
                   help=f"the boost, > 0 (implies --boostlu; default {boostlu.DEFAULT_ALPHA:g}, the authors'; "
                        f"1 is the plain model)")



def _optimisation_flags(p):
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default=None, choices=("adam", "sgd"),
                   help="sgd uses momentum 0.9 and weight decay 1e-3 as upstream. Default: the authors' "
                        "choice for the dataset (sgd on VOC, adam elsewhere)")
    g.add_argument("--lr", type=float, default=None,
                   help="backbone learning rate. Default: the authors' value for the dataset (VOC 5e-3, "
                        "COCO and NUS-WIDE 1e-5, CUB 7.5e-5; 1e-5 for others)")
    g.add_argument("--protocol", default="ll",
                   help="ll: the LL paper's training (the dataset's optimizer and lr, the head at lr * lr_mult, "
                        "early stop); cole: Cole et al.'s, which produced the WAN, LSAN, EPR and ROLE rows (Adam, "
                        "the whole classifier at --lr, no early stop; --lr required, from their search over "
                        "bsize {8, 16} x lr {1e-2 .. 1e-5}, which scripts/table2_*.py run)")
    g.add_argument("--lr_mult", type=float, default=None,
                   help="the linear head's lr is lr * lr_mult (--protocol ll); ROLE's label estimate learns at "
                        "lr * lr_mult under both protocols. Default 10; 1 for the methods whose authors train "
                        "at one lr (EM, EM-APL, CSL)")
    g.add_argument("--bsize", type=int, default=None,
                   help="batch size: it sets the k of each batch. Default 16; the authors' for EM, EM-APL "
                        "(VOC and CUB 8, else 16) and GR-Loss (8)")
    g.add_argument("--num_epochs", type=int, default=None, help="Default 10 (GR-Loss: its authors' 8)")
    g.add_argument("--max_steps_per_epoch", type=int, default=None,
                   help="train at most this many batches an epoch (smoke runs and benchmarks on a large dataset; "
                        "the epoch's order is drawn as for a whole epoch); default: every batch")
    g.add_argument("--early_stop_drop", type=float, default=None,
                   help="stop when val mAP falls more than this many points below the best. Default 3; the "
                        "authors' rule for EM, EM-APL (0: the first fall) and GR-Loss (2); BoostLU runs every "
                        "epoch (inf), as its authors")
    g.add_argument("--seed", type=int, default=0,
                   help="training seed (init, shuffling, flips); the observed labels have their own seed "
                        "(1200, fixed when the dataset is prepared)")



def _model_flags(p):
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="resnet50", choices=ARCHS,
                   help="torchvision backbone. convnext_tiny: its pretrained LayerNorm applied at each position "
                        "before pooling; vit_b_16: the class token, no spatial map (no CAM, no BoostLU), "
                        "--image_size a multiple of 16 (224 with ImageNet weights)")
    g.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torchvision IMAGENET1K_V1, what the paper used), 'imagenet_v2' (IMAGENET1K_V2, "
                        "resnet50/101 only; users report about +1 mAP on VOC), 'none' (random init), 'demo' "
                        "(ResNet-18 pretrained on generated shapes, the demo's stand-in for ImageNet, built once on "
                        "first use: data/demo_backbone.py), or a path to a backbone state_dict")
    g.add_argument("--train_mode", default="end_to_end", choices=("end_to_end", "linear_init"),
                   help="linear_init: freeze the backbone for --linear_init_epochs epochs (the head trains on its "
                        "features, computed once per image and flip), then fine-tune all")
    g.add_argument("--linear_init_style", default="within",
                   help="within: the first --linear_init_epochs of the --num_epochs train the head only; cole: "
                        "Cole et al.'s, a linear phase of --linear_init_epochs (default 25) on fixed features at "
                        "--linear_init_lr / --linear_init_bsize, its best epoch on val kept, then --num_epochs of "
                        "fine-tuning with a fresh optimizer and its own epoch counter (the LL warm-up again)")
    g.add_argument("--linear_init_epochs", type=int, default=None,
                   help="frozen-backbone epochs: within --num_epochs (style within, default 1) or before them "
                        "(style cole, default 25)")
    g.add_argument("--linear_init_lr", type=float, default=None,
                   help="style cole: the head's lr in the linear phase. Default: Cole et al.'s (LSAN 1e-4, ROLE "
                        "1e-3); for the losses they publish none, the protocol's head lr")
    g.add_argument("--linear_init_bsize", type=int, default=None,
                   help="style cole: the linear phase's batch size. Default: Cole et al.'s (LSAN 8, on NUS-WIDE "
                        "16; ROLE 16, on CUB 8); else --bsize")



def _run_flags(p):
    g = p.add_argument_group("run")
    g.add_argument("--amp", default="auto", choices=("auto", "none", "bf16", "fp16"),
                   help="mixed precision of the model's forward and backward ('auto': bf16 on CUDA, none on "
                        "the CPU, where bf16 is slow without hardware support); fp16 uses loss scaling. "
                        "The large-loss selection, every loss and the val/test scores (the head on fp32 "
                        "features) always run in fp32. The paper trained in fp32; bf16 training is not measured "
                        "against it (README 'Speed')")
    g.add_argument("--ap_without_positive", default="zero", choices=("zero", "skip"),
                   help="partially labelled val/test sets (OpenImages): a class with annotated entries but no "
                        "annotated positive scores AP 0 and counts in the mAP (zero: upstream's "
                        "compute_metrics_openimages, which produced Table 3), or is left out (skip). A class "
                        "with no annotated entry is always left out")
    g.add_argument("--device", default=os.environ.get("LLM_DEVICE", "auto"),
                   help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'...; env LLM_DEVICE")
    g.add_argument("--save_path", default="runs", help="parent folder of run folders")
    g.add_argument("--exp_name", default=None,
                   help="run folder name; default <dataset>_<scheme>_d<delta_rel>_<arch>_s<seed>")
    g.add_argument("--overwrite", action="store_true", help="replace a run folder that holds a finished run")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward (compiles first: 13 s for ResNet-18 on a 2-core "
                        "CPU, where it then ran slower than without; not measured on a GPU, see README 'Speed')")



def _several_gpus_flags(p):
    g = p.add_argument_group("several GPUs (torchrun --nproc_per_node=N main.py ...; README 'Speed')")
    g.add_argument("--loss_scope", default="global", choices=("global", "per_process"),
                   help="global: the loss and its large-loss top-k over the whole --bsize batch, gathered from "
                        "all processes, as one GPU with the whole batch computes it (the paper's runs); "
                        "per_process: each process's share on its own, k = ceil(b*K*r) per share of b images, "
                        "as a loss computed per GPU would")
    g.add_argument("--sync_bn", action="store_true",
                   help="BatchNorm statistics over the whole batch (SyncBatchNorm, CUDA only), so N GPUs train as "
                        "one GPU with the whole batch; without it each GPU normalises its own share")



def _analysis_flags(p):
    g = p.add_argument_group("analysis (paper Section 3.2 and 4.3; analysis.py, scripts/analyze.py)")
    g.add_argument("--record_losses", action="store_true",
                   help="write every training label entry's loss of every epoch to loss_history.npy "
                        "(float16 memmap: epochs x N x K x 2 bytes, 105 MB for COCO), for Table 1 and Fig. 1")
    g.add_argument("--record_labels_for", type=int, default=0,
                   help="write the per-epoch label states of the first N training images to "
                        "label_trajectories.npy, for Fig. 3")


def add_method_flags(parser):
    """One argument group per registered method with flags (methods/); each flag's parser default
    is None, so a flag given to another method can be refused."""
    added, groups = set(), {}
    for method in methods.REGISTRY.values():
        flags = [flag for flag in method.flags if flag.name not in added]
        if not flags:
            continue
        group = groups.setdefault(method.advice, parser.add_argument_group(method.advice))
        for flag in flags:
            action = group.add_argument(f"--{flag.name}", type=flag.type, nargs=flag.nargs, default=None,
                                        metavar=flag.metavar, choices=flag.choices, help=flag.help)
            action.shown_default = flag.shown_default
            added.add(flag.name)


def method_options(args):
    """The chosen method's own flags, filled with its defaults and checked; a flag of another method
    is refused."""
    method = methods.get(args.mod_scheme)
    own = {flag.name for flag in method.flags}
    for flag, users in methods.all_flags():
        if getattr(args, flag.name) is not None and flag.name not in own:
            raise UserError(f"--{flag.name} is a flag of {' and '.join(users)}; --mod_scheme {args.mod_scheme} "
                            f"does not use it (remove it, or pass --mod_scheme {users[0]})")
    options = {}
    for flag in method.flags:
        value = getattr(args, flag.name)
        value = flag.default_for(args.dataset) if value is None else value
        value = list(value) if flag.nargs else value            # as config.json gives it back on --resume
        problem = flag.check(value) if flag.check else None
        if problem:
            raise UserError(f"--{flag.name} {' '.join(map(str, value)) if flag.nargs else value}: "
                            f"{'each value ' if flag.nargs else ''}must be {problem} ({flag.help})")
        options[flag.name] = value
    problem = method.validate(options, args) if method.validate else None
    if problem:
        raise UserError(problem)
    return options


def boostlu_alpha(args):
    """BoostLU's alpha (None: off): --boostlu_alpha, or the authors' 5 with --boostlu."""
    if args.boostlu_alpha is None:
        return boostlu.DEFAULT_ALPHA if args.boostlu else None
    if args.boostlu_alpha <= 0:
        raise UserError(f"--boostlu_alpha {args.boostlu_alpha}: must be > 0 (it multiplies the positive CAM "
                        f"values; 1 is the plain model, the authors use {boostlu.DEFAULT_ALPHA:g})")
    return args.boostlu_alpha


# What a run trains with where neither the user nor the method's authors (methods.method_defaults) say
# otherwise: the LL paper's (SPEC 6).
TRAINING_DEFAULTS = dict(bsize=16, lr_mult=10.0, num_epochs=10, early_stop_drop=3.0)


def paper_defaults(dataset, mod_scheme):
    """The LL paper's optimizer and lr for a dataset (adam, 1e-5 elsewhere); delta_rel 0 for the
    methods it does not apply to (the LL schemes' come with their settings, methods/large_loss.py)."""
    rate = {} if methods.get(mod_scheme).rate_scheme else {"delta_rel": 0.0}
    return {**PAPER_SETTINGS.get(dataset, OTHER_DATASETS), **rate}


def dataset_dir(dataset, data_dir=None):
    """The dataset's formatted folder: --data_dir, else data/<dataset> in the repository."""
    if dataset == "custom" and data_dir is None:
        raise UserError("--dataset custom needs --data_dir (a folder in the layout of data/README.md)")
    return data_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", dataset)


def build_config(args):
    """Validate the parsed arguments and derive what follows from them, once."""
    args = resolve_protocol(args)
    alpha = boostlu_alpha(args)
    defaults = {**TRAINING_DEFAULTS, **paper_defaults(args.dataset, args.mod_scheme),
                **methods.method_defaults(args.mod_scheme, args.dataset, alpha is not None)}
    args = argparse.Namespace(**{**vars(args), **{k: v for k, v in defaults.items() if getattr(args, k) is None}})
    options = method_options(args)          # after the defaults: its checks read --num_epochs
    if args.delta_rel is None:
        raise UserError(f"no published delta_rel for {args.mod_scheme} on {args.dataset}: pass --delta_rel "
                        f"(percent per epoch; the authors' values are 0.1-0.4)")
    if args.delta_rel < 0:
        raise UserError(f"--delta_rel must be >= 0 (percent per epoch), got {args.delta_rel}")
    method = methods.get(args.mod_scheme)
    if method.rate_scheme and args.delta_rel == 0:
        raise UserError(f"{args.mod_scheme} with --delta_rel 0 is Naive AN; pass a rate "
                        f"(percent per epoch, e.g. --delta_rel 0.2) or --mod_scheme AN")
    args = resolve_linear_init(args)
    last_rate = method.rate(max(args.num_epochs, args.linear_init_epochs or 0), args.delta_rel)
    if last_rate >= 1:
        raise UserError(f"--delta_rel {args.delta_rel} %/epoch would modify {100 * last_rate:.0f} % of "
                        f"all label entries by epoch {args.num_epochs}; it must stay below 100 %")
    if args.expected_num_pos is None:
        args.expected_num_pos = EXPECTED_POSITIVES.get(args.dataset)
    if args.expected_num_pos is not None and args.expected_num_pos <= 0:
        raise UserError(f"--expected_num_pos must be positive, got {args.expected_num_pos}")
    if args.max_steps_per_epoch is not None and args.max_steps_per_epoch < 1:
        raise UserError(f"--max_steps_per_epoch {args.max_steps_per_epoch}: must be at least 1 (leave it out to "
                        f"train every batch)")
    for name in ("bsize", "num_epochs", "image_size"):
        if getattr(args, name) <= 0 and not (name == "num_epochs" and linear_only(args)):
            raise UserError(f"--{name} must be positive"
                            + (" (0 only with --train_mode linear_init --linear_init_style cole: the linear phase "
                               "alone, as Cole et al.'s linear-only search)" if name == "num_epochs" else ""))
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))     # set by torchrun
    if args.bsize < num_processes:
        raise UserError(f"--bsize {args.bsize} is the whole batch, split over the {num_processes} processes: "
                        f"it must be at least {num_processes}")
    if not 0 < args.ss_frac_train <= 1 or not 0 <= args.val_frac < 1:
        raise UserError("--ss_frac_train must be in (0, 1] and --val_frac in [0, 1)")
    if (args.train_mode == "linear_init" and args.linear_init_style == "cole"
            and (args.record_losses or args.record_labels_for)):
        raise UserError("--record_losses and --record_labels_for record --num_epochs epochs of one phase; they do "
                        "not follow --linear_init_style cole's two phases (use style within or end_to_end)")
    if args.record_labels_for < 0:
        raise UserError("--record_labels_for must be >= 0 (a number of training images)")
    if args.weights == "demo" and args.arch != "resnet18":
        raise UserError(f"--weights demo is a ResNet-18 (data/demo_backbone.py); pass --arch resnet18, not {args.arch}")
    models.check_arch(args.arch, args.weights, args.image_size, boostlu=alpha is not None)
    if alpha is not None and args.train_mode == "linear_init":
        raise UserError("--boostlu with --train_mode linear_init: the frozen phase trains the head on cached pooled "
                        "features, where no CAM can be boosted; BoostLU's authors train end to end")
    data_dir = dataset_dir(args.dataset, args.data_dir)
    fields = {f.name for f in dataclasses.fields(Config)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    return Config(**{**values, "data_dir": data_dir, "num_processes": num_processes, "boostlu_alpha": alpha,
                     "method_options": options, "exp_name": args.exp_name or default_exp_name(args, options, alpha)})


def linear_only(args):
    """--num_epochs 0 after Cole et al.'s separate linear phase: that phase alone, the run of their
    linear-only search (scripts/table2_linear_init.py picks its (lr, bsize) on val mAP)."""
    return args.num_epochs == 0 and args.train_mode == "linear_init" and args.linear_init_style == "cole"


def resolve_protocol(args):
    """Check --protocol and fix what it decides: Cole et al.'s is Adam at a searched --lr."""
    if args.protocol not in PROTOCOLS:
        raise UserError(f"--protocol {args.protocol}: no such protocol; choose one of {', '.join(PROTOCOLS)} "
                        f"(ll: the LL paper's settings; cole: Cole et al.'s, for the WAN, LSAN, EPR and ROLE rows)")
    protocol = PROTOCOLS[args.protocol]
    if protocol.optimizer is None:
        return args
    if args.optimizer not in (None, protocol.optimizer):
        raise UserError(f"--protocol {args.protocol} trains with {protocol.optimizer}; drop --optimizer "
                        f"{args.optimizer} or use --protocol ll")
    if args.lr is None:
        raise UserError(f"--protocol {args.protocol} has no default --lr: Cole et al. search bsize "
                        f"{COLE_SEARCH['bsize']} x lr {COLE_SEARCH['lr']} per method and dataset and publish no "
                        f"choice; pass --lr (scripts/table2_end_to_end.py runs the whole search)")
    return argparse.Namespace(**{**vars(args), "optimizer": protocol.optimizer})


def resolve_linear_init(args):
    """Check the LinearInit flags and fill in their defaults (None where they do not apply)."""
    if args.linear_init_style not in LINEAR_INIT_STYLES:
        raise UserError(f"--linear_init_style {args.linear_init_style}: no such style; choose within (the first "
                        f"epochs of --num_epochs frozen) or cole (Cole et al.'s linear phase, then fine-tuning)")
    values = dict(linear_init_epochs=args.linear_init_epochs, linear_init_lr=args.linear_init_lr,
                  linear_init_bsize=args.linear_init_bsize)
    cole = args.train_mode == "linear_init" and args.linear_init_style == "cole"
    if not cole:
        if args.linear_init_lr is not None or args.linear_init_bsize is not None:
            raise UserError("--linear_init_lr and --linear_init_bsize set Cole et al.'s separate linear phase: "
                            "pass them with --train_mode linear_init --linear_init_style cole")
    if args.train_mode != "linear_init":
        # Unused end-to-end; 1 as before the styles existed, so older run folders still --resume.
        values["linear_init_epochs"] = 1 if args.linear_init_epochs is None else args.linear_init_epochs
        return argparse.Namespace(**{**vars(args), **values})
    if cole:
        published = COLE_LINEAR_INIT.get(args.mod_scheme, {}).get(args.dataset)
        head_lr = args.lr * (args.lr_mult if PROTOCOLS[args.protocol].head_lr_mult else 1.0)
        values["linear_init_epochs"] = COLE_LINEAR_EPOCHS if args.linear_init_epochs is None else args.linear_init_epochs
        values["linear_init_lr"] = args.linear_init_lr or (published[0] if published else head_lr)
        values["linear_init_bsize"] = args.linear_init_bsize or (published[1] if published else args.bsize)
        if values["linear_init_epochs"] < 1 or values["linear_init_bsize"] < 1 or values["linear_init_lr"] <= 0:
            raise UserError("--linear_init_epochs, --linear_init_bsize and --linear_init_lr must be positive")
    else:
        values["linear_init_epochs"] = 1 if args.linear_init_epochs is None else args.linear_init_epochs
        if not 0 < values["linear_init_epochs"] < args.num_epochs:
            raise UserError(f"--linear_init_epochs {values['linear_init_epochs']} with --num_epochs {args.num_epochs} "
                            f"leaves no fine-tuning epoch (style within counts the frozen epochs in --num_epochs): "
                            f"it must be in [1, --num_epochs), or use --linear_init_style cole")
    return argparse.Namespace(**{**vars(args), **values})


def default_exp_name(args, options, alpha=None):
    """<dataset>_<method and what sets it apart>[_boostlu<alpha>]_<arch>_s<seed>: the method's part is
    its entry's ``folder_name`` (the LL schemes' delta_rel, CSL's mode, ...), else its name."""
    method = methods.get(args.mod_scheme)
    if args.train_set_variant == "clean":
        name = "full"
    else:
        name = method.folder_name(args, options) if method.folder_name else args.mod_scheme
    boost = "" if alpha is None else f"_boostlu{alpha:g}"
    return f"{args.dataset}_{name}{boost}_{args.arch}_s{args.seed}"
