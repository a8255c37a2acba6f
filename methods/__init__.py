"""The registry of training methods: each ``--mod_scheme`` is one ``Method``, each row of a table one
``Row``, registered by the file of its family:

| file | family |
|---|---|
| `large_loss.py` | the paper's: Naive AN, LL-R / LL-Ct / LL-Cp (losses.py), their absolute variants, Full label |
| `cole.py` | Cole et al.'s baselines: WAN, LSAN, EPR, ROLE, Naive IU |
| `csl.py` | the class-aware selective loss, its prior and its two-stage mode |
| `boostlu.py` | BoostLU, a model option of the LL schemes, and its rows |
| `em.py` | EM and EM+APL |
| `gr_loss.py` | GR-Loss |
| `vision_language.py` | VLPL and AEVLP, from zero-shot pseudo-labels (zero_shot.py) |

The CLI (choices, flags, help), the config checks, the training loop, the experiment scripts and
the collector read the entries; none of them compares a method's name. Adding a method is adding a
file here (docs/methods.md): every module of the package is imported, the families above first.
"""
import dataclasses
import importlib
import math
import pkgutil
from typing import Callable, Optional

import torch


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
    shown_default: object = None          # what --help gives as the default (else its parser default, None)

    def default_for(self, dataset):
        return self.default(dataset) if callable(self.default) else self.default


@dataclasses.dataclass(frozen=True)
class Batch:
    """What a method's loss sees besides the logits and labels."""
    cfg: object                 # config.Config
    epoch: int                  # 1-based
    state: Optional[torch.Tensor] = None    # the method's state for the batch (``Method.make_state``)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    loss: Callable              # (logits (B, K) fp32, labels (B, K) in {-1, 0, +1}, Batch) -> (loss, modified (B, K) bool)
    summary: str                # one line of --help
    citation: str = ""
    flags: tuple = ()           # Flag entries, shown as one argument group of --help
    advice: str = ""            # the title line of that group
    settings: Callable = None   # dataset -> the authors' optimizer / lr / delta_rel / ... for this method, or {}
    modification_rate: Callable = None  # (epoch, delta_rel) -> the share of entries modified (LL-R, LL-Ct, LL-Cp)
    rejects: bool = False       # its modified entries get weight 0 (the label trajectories' "rejected"), else a new target
    corrections: Callable = None  # (logits, labels, modified, Batch) -> (B, K) bool written as +1 into the run's labels (LL-Cp)
    needs_k_hat: bool = False   # uses the expected number of positives (EPR, ROLE, AEVLP)
    make_state: Callable = None  # (train split (datasets.Split), cfg) -> nn.Module: idx -> what its loss reads as Batch.state
    state_bytes: Callable = None  # (images, classes) -> bytes its state takes on the device, checked before it is made
    state_trains: bool = False  # its parameters train with the classifier (ROLE's estimate)
    observe: Callable = None    # (state, logits (B, K)) -> None: sees every training batch (CSL's prior model)
    after_epoch: Callable = None  # (state, epoch, cfg, labels_obs (labels.Labels), predict_train: () -> (N, K) logits)
    prepare: Callable = None    # (cfg, resume, run) -> None: a stage that runs before the training (CSL's prior model)
    finish: Callable = None     # (state, cfg) -> dict added to results.json, after the test (CSL's prior model file)
    schedule: Callable = None   # (epoch, cfg) -> dict of this epoch's hyperparameters, for the log
    validate: Callable = None   # (options, args) -> None, or the message of a combination that cannot work
    folder_name: Callable = None  # args -> the method's part of the default run folder name (else the name)
    scores: str = None          # the zero-shot score file it reads (zero_shot.MODES), made by scripts/zero_shot_scores.py
    paper_row: bool = True      # a row of the LL paper's tables (else added to scripts by name)
    display: str = None         # its name in tables (else ``name``)
    protocol: str = "ll"        # the training protocol its published numbers were made under (config.PROTOCOLS)
    published: dict = dataclasses.field(default_factory=dict)   # {table: {dataset: {metric: test mAP}}}

    @property
    def rate_scheme(self):
        """Whether the modified share grows with --delta_rel (the LL schemes)."""
        return self.modification_rate is not None

    @property
    def writes_labels(self):
        """Whether the run's training labels change (LL-Cp's permanent corrections)."""
        return self.corrections is not None

    def rate(self, epoch, delta_rel):
        """The share of label entries modified in ``epoch`` (0 for methods that select nothing)."""
        return self.modification_rate(epoch, delta_rel) if self.rate_scheme else 0.0

    def epoch_stats(self, epoch, cfg):
        """What the epoch's log line records of the method's schedule."""
        return {"ll_rate": self.rate(epoch, cfg.delta_rel), **(self.schedule(epoch, cfg) if self.schedule else {})}


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of the tables: the main.py flags that make its runs (none for a row the paper only quotes)
    and the numbers published for it, as {table: {dataset: {metric: value}}}. ``key`` is its name
    in the scripts' --methods and its run folders; ``display`` in the collector's tables."""
    key: str
    display: str
    flags: tuple = ()
    method: str = None          # the registered method it runs
    protocol: str = "ll"        # under which --protocol its published numbers were made
    paper_row: bool = True      # a row of the LL paper's tables, run by default
    published: dict = dataclasses.field(default_factory=dict)
    clean: bool = False         # trained on the full labels (--train_set_variant clean)
    boostlu: bool = False       # with BoostLU's boosted CAM (--boostlu)
    order: float = math.inf     # where the paper's tables list it (others after them, in registration order)

    def matches(self, record):
        """Whether a run's config.json + results.json record is a run of this row."""
        return (self.method == record["mod_scheme"] and self.clean == (record["train_set_variant"] == "clean")
                and self.boostlu == (record.get("boostlu_alpha") is not None))


REGISTRY = {}
ROWS = {}


def register(method, rows=None, order=math.inf):
    """Register a method and its rows: by default one, of its own name, display name, protocol and
    published numbers, at ``order`` in the tables (``Row.order``)."""
    REGISTRY[method.name] = method
    if rows is None:
        rows = [Row(method.name, method.display or method.name, ("--mod_scheme", method.name), method.name,
                    method.protocol, method.paper_row, method.published, order=order)]
    for row in rows:
        register_row(row)
    return method


def register_row(row):
    ROWS[row.key] = row
    return row


def get(name):
    return REGISTRY[name]


def display_name(name):
    return REGISTRY[name].display or name


def rows_in_order():
    """The rows in the paper's order, then the others in the order they were registered."""
    return sorted(ROWS.values(), key=lambda row: row.order)


def row_of(record):
    """The row a finished run belongs to (its config.json + results.json record), or None."""
    return next((row for row in ROWS.values() if row.method is not None and row.matches(record)), None)


def method_defaults(name, dataset, boostlu):
    """The authors' defaults of a method (its ``settings``), and of BoostLU's authors with --boostlu,
    that override the LL paper's per-dataset settings where the user passed nothing."""
    from methods import boostlu as boostlu_family      # a family of the package, imported below
    method = REGISTRY[name]
    defaults = dict(method.settings(dataset)) if method.settings else {}
    return {**defaults, **(boostlu_family.settings(name) if boostlu else {})}


def end_to_end(numbers):
    """A method's published end-to-end test mAP, {dataset: value}, as ``Method.published`` holds it."""
    return {"table2_end_to_end": {dataset: {"test_map": value} for dataset, value in numbers.items()}}


def all_flags():
    """Every method's flags, each once: (flag, names of the methods that use it)."""
    users = {}
    for method in REGISTRY.values():
        for flag in method.flags:
            users.setdefault(flag.name, (flag, []))[1].append(method.name)
    return list(users.values())


def in_range(low, high, low_open=True, high_open=False):
    """A Flag check that a number (or each of a list) lies in the interval."""
    def check(value):
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
                return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        return None
    return check


# The families, in the order of --mod_scheme's choices; then any other module of the package.
FAMILIES = ("large_loss", "cole", "csl", "em", "gr_loss", "vision_language", "boostlu")
for _module in (*FAMILIES, *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in FAMILIES)):
    importlib.import_module(f"{__name__}.{_module}")
