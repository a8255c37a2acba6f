"""Training and evaluation: ``train_one_epoch``, ``evaluate`` and ``run(cfg)``."""
import dataclasses
import json
import math
import os
import random
import subprocess
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import analysis
import curves
import datasets
import distributed
import labels
import methods
import metrics
import run_files
import tensorboard_log
from errors import UserError
from data.demo import ensure_demo_dataset
from data.demo_backbone import ensure_demo_backbone
from metrics import average_precision_entries, average_precision_per_class, mean_ap
from models import build_from_config

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed, epoch):
    """Each epoch's shuffling and flips depend only on (seed, epoch), so a resumed run matches."""
    return seed * 1_000_003 + epoch


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(amp, device):
    """The autocast dtype that --amp gives on ``device``; None runs the model in fp32."""
    if amp == "auto":
        amp = "bf16" if torch.device(device).type == "cuda" else "none"
    return AMP_DTYPES[amp]


def autocast(amp, device):
    """The autocast context of --amp on ``device`` (a no-op where it gives fp32)."""
    dtype = autocast_dtype(amp, device)
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def to_device(inputs, device):
    """A batch on the device; uint8 image batches normalised there (``datasets.normalize``), channels-last
    on CUDA, where convolutions run faster so."""
    inputs = inputs.to(device, non_blocking=True)
    if inputs.dtype == torch.uint8:
        inputs = datasets.normalize(inputs, torch.channels_last if inputs.is_cuda else torch.contiguous_format)
    return inputs


def progress(iterable, desc):
    """A progress bar on the main process's terminal (none in logs, none from the other processes)."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None if distributed.is_main() else True)


def save_atomic(obj, path):
    """``run_files.save``: a kill at any moment leaves the previous good copy. Only the main process
    writes: the others hold the same state."""
    if distributed.is_main():
        run_files.save(obj, path)


def git_state():
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def optimizer_groups(model, cfg, label_estimate=None, linear_phase=False):
    """The parameter groups and their lrs. The backbone at lr, the linear head at ``cfg.head_lr``
    (lr * lr_mult under the LL protocol, as upstream; lr under Cole et al.'s). ROLE's label estimate
    at lr * lr_mult under both (Cole et al.: 10x), without weight decay, since it holds labels.
    In Cole et al.'s separate linear phase (``linear_phase``) only the head trains, at
    --linear_init_lr, and the estimate at lr_mult times that, as their linear run's lr."""
    if linear_phase:
        groups = [{"params": model.head.parameters(), "lr": cfg.linear_init_lr}]
        estimate_lr = cfg.linear_init_lr * cfg.lr_mult
    else:
        groups = [{"params": model.backbone.parameters(), "lr": cfg.lr},
                  {"params": model.head.parameters(), "lr": cfg.head_lr}]
        estimate_lr = cfg.lr * cfg.lr_mult
    if label_estimate is not None:
        groups.append({"params": label_estimate.parameters(), "lr": estimate_lr, "weight_decay": 0.0})
    return groups


def build_optimizer(model, cfg, label_estimate=None, linear_phase=False):
    """The run's optimizer over ``optimizer_groups``: SGD with upstream's momentum 0.9 and weight
    decay 1e-3, or Adam without weight decay (the only optimizer of Cole et al.'s protocol)."""
    groups = optimizer_groups(model, cfg, label_estimate, linear_phase)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=0.9, weight_decay=1e-3)
    return torch.optim.Adam(groups, lr=groups[0]["lr"])


def training_net(module, cfg, device):
    """What the training loop runs: ``module`` (the model, or the head on cached features), kept in
    step across processes by DistributedDataParallel when torchrun started several, and compiled
    with --compile."""
    if distributed.world_size() > 1:
        module = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)
    return torch.compile(module) if cfg.compile else module


def train_one_epoch(net, loader, optimizer, train_labels, cfg, epoch, device, label_estimate=None,
                    recorder=None, scaler=None):
    """One pass over the training set with the large-loss modification of ``cfg.mod_scheme``
    (or a baseline, or the class-aware selective loss, whose ignored labels count as modified).

    Args:
        net: maps the loader's inputs to logits: the model, or in LinearInit's frozen phase its
            head; wrapped in DistributedDataParallel when several processes train.
        loader: yields (inputs, idx) for this process's share of each batch: images (b, 3, H, W), or
            in LinearInit's frozen phase the backbone's cached pooled features (b, C)
            (``CachedFeatureBatches``). With several processes its ``batch_sampler`` is a
            ``datasets.ShardedBatches``, which tells the shares apart and every process the batch's rows.
        train_labels: the training split's ``labels.TrainingLabels``, owned by the run: each batch's
            observed (and true) rows come from it, and LL-Cp writes its permanent corrections into it
            (``methods.Method.corrections``), so they persist across epochs.
        label_estimate: the method's state (``methods.Method.make_state``): ROLE's label estimate
            (trained by ``optimizer``), APL's pseudo-labels, CSL's prior; else None. What it gives for
            the batch's rows reaches the loss, and the method's ``observe`` sees each batch's logits.
        recorder: an ``analysis.TrainingRecorder`` or None; sees each batch's logits and labels.
        scaler: the run's ``torch.amp.GradScaler`` for --amp fp16 (its scale carries over epochs).
    Returns:
        dict of epoch statistics (over the whole batches, the same in every process).
    """
    net.train()
    method = methods.get(cfg.mod_scheme)
    total_loss = torch.zeros((), device=device)
    counts = {name: torch.zeros((), dtype=torch.long, device=device) for name in ENTRY_COUNTS}
    first_bad_step = torch.zeros((), dtype=torch.long, device=device)     # 0: every loss finite so far
    num_seen = 0
    scaler = scaler or torch.amp.GradScaler(torch.device(device).type, enabled=False)
    bar = progress(loader, f"epoch {epoch} train")
    for step, (inputs, idx) in enumerate(bar, start=1):
        # Each process's share of the batch and the whole batch's rows (datasets.ShardedBatches, the
        # same in every process); any (inputs, idx) iterable will do for one.
        several = distributed.world_size() > 1
        shares = loader.batch_sampler.shares[step - 1] if several else [len(idx)]
        positions = loader.batch_sampler.positions(step - 1) if several else idx               # (B,), CPU
        batch_obs, batch_true = train_labels.batch(positions, device)                         # (B, K)
        with autocast(cfg.amp, device):
            logits = net(to_device(inputs, device))
        # The whole batch in every process (distributed.py), so the loss is that of one process.
        logits = distributed.gather_rows(logits.float(), shares)                 # (B, K)
        idx = positions.to(device, non_blocking=True)
        estimate = None if label_estimate is None else label_estimate(idx)
        parts = shares if cfg.loss_scope == "per_process" else [sum(shares)]
        loss, modified, written = batch_loss(logits, batch_obs, cfg, epoch, parts, estimate)
        # Noted on the device and checked with the progress bar: testing every batch would make the
        # CPU wait for the GPU at each step.
        first_bad_step = torch.where((first_bad_step == 0) & ~torch.isfinite(loss.detach()), step, first_bad_step)
        if recorder is not None:
            recorder.record_batch(epoch, idx, logits.detach(), batch_obs, modified)
        if method.observe is not None:
            method.observe(label_estimate, logits)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        if written is not None:            # LL-Cp: its permanent corrections persist in the run's labels
            train_labels.write(positions, written)
        total_loss += loss.detach() * len(idx)
        count_entries(counts, modified, written, batch_true)
        num_seen += len(idx)
        if step % 20 == 0 or step == len(loader):
            if first_bad_step.item():
                raise UserError(f"non-finite loss in epoch {epoch}, batch {first_bad_step.item()}; the last "
                                f"good checkpoint is kept in {cfg.run_dir}. Try a lower --lr.")
            bar.set_postfix(loss=f"{total_loss.item() / num_seen:.4f}")

    train_labels.end_epoch()
    return {"train_loss": total_loss.item() / num_seen, **method.epoch_stats(epoch, cfg),
            **entry_stats({name: count.item() for name, count in counts.items()}, method.writes_labels,
                          train_labels.truth is not None)}


# The label entries an epoch counts: modified by the method, written by it (LL-Cp), and of each, those
# truly positive (where the truth is known). Summed on the device, read once at the end of the epoch.
ENTRY_COUNTS = ("modified", "modified_true_pos", "written", "written_true_pos")


def count_entries(counts, modified, written, batch_true):
    """Add a batch's modified and written (or None) entries, (B, K) bool, to ``counts``."""
    counts["modified"] += modified.sum()
    if written is not None:
        counts["written"] += written.sum()
    if batch_true is not None:
        counts["modified_true_pos"] += (modified & batch_true).sum()
        if written is not None:
            counts["written_true_pos"] += (written & batch_true).sum()


def entry_stats(counts, writes_labels, truth_known):
    """The epoch's log record of ``counts`` (ints): what the method did, and with the truth how well."""
    stats = {"num_modified": counts["modified"]}
    if writes_labels:
        stats["num_written"] = counts["written"]
    if truth_known:
        stats["num_modified_true_pos"] = counts["modified_true_pos"]
        stats["modification_precision"] = (counts["modified_true_pos"] / counts["modified"]
                                            if counts["modified"] else None)
        if writes_labels:
            stats["num_written_true_pos"] = counts["written_true_pos"]
    return stats


def group_lrs(optimizer, parts):
    """{'lr_<part>': lr} of each of the optimizer's parameter groups, named by the module of ``parts``
    (name -> module or None) whose parameters it holds, for the epoch's record."""
    owner = {id(p): name for name, module in parts.items() if module is not None for p in module.parameters()}
    return {f"lr_{owner[id(group['params'][0])]}": group["lr"] for group in optimizer.param_groups}


def batch_loss(logits, batch_obs, cfg, epoch, parts, estimate=None):
    """The loss of a batch under ``cfg`` and which of its entries were modified.

    Args:
        logits: (B, K) fp32; batch_obs: (B, K) observed labels; estimate: ROLE's (B, K) logits.
        parts: row counts that split the batch into parts, each with its own loss (its own top-k,
            EPR mean, ...), weighted by its rows: [B] for the whole batch (--loss_scope global), or
            each process's share (per_process), which is what a loss computed per GPU would give.
    Returns:
        (loss, modified (B, K) bool, written (B, K) bool or None): the entries the loss modified, and
        those the method writes as +1 into the run's labels (LL-Cp; None for the others).
    """
    estimates = [None] * len(parts) if estimate is None else estimate.split(parts)
    results = [part_loss(*part, cfg, epoch)
               for part in zip(logits.split(parts), batch_obs.split(parts), estimates)]
    if len(parts) == 1:
        return results[0]
    loss = sum(loss * n for (loss, _, _), n in zip(results, parts)) / len(logits)
    modified, written = (list(masks) for masks in zip(*(result[1:] for result in results)))
    return loss, torch.cat(modified), None if written[0] is None else torch.cat(written)


def part_loss(logits, batch_obs, estimate, cfg, epoch):
    """``batch_loss`` of one part: the method's loss function (its file in methods/) on its rows, and the
    entries it writes into the run's labels."""
    method, batch = methods.get(cfg.mod_scheme), methods.Batch(cfg, epoch, estimate)
    loss, modified = method.loss(logits, batch_obs, batch)
    written = None if method.corrections is None else method.corrections(logits, batch_obs, modified, batch)
    return loss, modified, written


def fp32_logits(model, images, amp, device):
    """(B, K) fp32 logits whatever ``amp`` is (SPEC 7): the backbone runs under --amp's autocast,
    the head outside it on the pooled features cast to fp32. bf16 logits would keep 8 significant
    bits, so that a class's scores fall on a few thousand values and their ties lower AP. In fp32
    any module will do; reduced precision needs the model's ``head_input`` and ``logits``."""
    if autocast_dtype(amp, device) is None:
        return model(images)
    with autocast(amp, device):
        head_input = model.head_input(images)                # (B, C) or BoostLU's (B, C, h, w); bf16 under bf16
    return model.logits(head_input.float())


@torch.no_grad()
def predict(model, loader, device, desc="eval", amp="none"):
    """(N, K) float32 logits of all the images of a ``make_loader(train=False)`` loader's dataset,
    in dataset order, in every process: each process predicts its share and the shares are gathered
    (``amp``: the backbone's --amp; the head always runs in fp32, see ``fp32_logits``). For the
    training set's predictions (APL) and small datasets; evaluation uses ``predict_split``."""
    model.eval()
    outputs = [fp32_logits(model, to_device(images, device), amp, device) for images, _ in progress(loader, desc)]
    scores = torch.cat(outputs)
    if distributed.world_size() > 1:
        scores = distributed.gather_rows(scores, distributed.share_sizes(len(loader.dataset)))
    return scores.cpu().numpy()


@torch.no_grad()
def predict_split(model, loader, split, device, desc="eval", amp="none"):
    """The scores a split is evaluated on, on the main process only (None in the others): its (n, K)
    float32 logits where its labels are full, or where they are partial (OpenImages) the logits of
    its known entries alone, (E,) in the order of ``split.labels_obs.entries()``. Each process keeps
    that much of its share's predictions, batch by batch, so no process ever holds an N x K matrix
    of a partially labelled split (125,000 x 5,000 for OpenImages' test set: 1.67 M known entries).

    Args:
        loader: ``make_loader(split, cfg, train=False)``: this process's contiguous share, in order.
    """
    model.eval()
    known = None if split.labels is not None else split.labels_obs.entries()
    outputs = []
    for images, idx in progress(loader, desc):
        logits = fp32_logits(model, to_device(images, device), amp, device)                  # (b, K)
        if known is not None:       # the batch's rows are consecutive: so are their known entries
            indptr, cols, _ = known
            first, last = int(idx[0]), int(idx[-1]) + 1
            rows = torch.from_numpy(np.repeat(np.arange(last - first), np.diff(indptr[first:last + 1])))
            logits = logits[rows.to(device), torch.from_numpy(cols[indptr[first]:indptr[last]]).to(device)]
        outputs.append(logits)
    empty = (0,) if known is not None else (0, split.labels_obs.num_classes)
    scores = torch.cat(outputs) if outputs else torch.zeros(empty, device=device)
    shares = distributed.share_sizes(len(split.labels_obs))
    if known is not None:           # each process's number of known entries
        bounds = np.cumsum([0, *shares])
        shares = [int(known[0][b] - known[0][a]) for a, b in zip(bounds[:-1], bounds[1:])]
    scores = distributed.gather_to_main(scores, shares)
    return None if scores is None else scores.cpu().numpy()


def evaluate(model, loader, split, device, desc="eval", class_groups=None, amp="none", skip_without_positive=False):
    """mAP (percent) of the model on a split, in every process: ``predict_split``, then
    ``scores_metrics`` on the main process, which sends the result to the others."""
    scores = predict_split(model, loader, split, device, desc, amp)
    return distributed.broadcast_object(
        None if scores is None else scores_metrics(scores, split, device, desc, class_groups, skip_without_positive))


def scores_metrics(scores, split, device, desc="eval", class_groups=None, skip_without_positive=False):
    """mAP (percent) of a split's ``scores`` (``predict_split``): on its full labels, or on its
    annotated entries where the truth is only partially known (OpenImages). With ``class_groups``
    ((K,) int), also the mAP of each group of classes, as ``map_G1``, ``map_G2``, ... On partial labels
    a class without an annotated entry is skipped; one with annotated entries but no annotated
    positive scores AP 0 (upstream's compute_metrics_openimages, SPEC 7), or is skipped with
    ``skip_without_positive`` (--ap_without_positive skip). ``desc`` names the split in errors."""
    known = metrics.known_entries(split)
    if known is None:
        ap = average_precision_per_class(split.labels.dense() == 1, scores, device=device)
    else:
        cols, positive = known
        ap = average_precision_entries(cols, scores, positive, split.labels_obs.num_classes,
                                       skip_without_positive=skip_without_positive)
    result = {"map": mean_ap(ap)}
    if result["map"] is None:
        raise UserError(f"no class has an annotated entry{' with a positive' if skip_without_positive else ''} "
                        f"in this split ({desc}): mAP is undefined")
    for g in ([] if class_groups is None else np.unique(class_groups)):
        result[f"map_G{g + 1}"] = mean_ap(ap[class_groups == g])    # None: no class of the group scored
    return result


def count_written_as_before(history):
    """LL-Cp's epoch records of 0976ac2 and earlier, in today's terms: LL-Cp wrote every entry it
    corrected (--llcp_write all), and the cumulative counts had other names."""
    for record in history:
        if "num_written" not in record:
            record["num_written"] = record["num_modified"]
            if "num_modified_true_pos" in record:
                record["num_written_true_pos"] = record["num_modified_true_pos"]
            for old, new in (("num_corrected_total", "num_written_total"),
                             ("corrected_precision_total", "written_precision_total")):
                if old in record:
                    record[new] = record.pop(old)


def correction_totals(history):
    """LL-Cp: how many entries are written permanently so far, and the share that is truly positive,
    from the epochs' records. A written entry was unobserved and stays +1 from then on, so it is
    written once: the totals are sums, and no copy of the initial (N, K) labels is needed to count
    them. (An entry corrected in the loss but not written may be corrected again later: the
    per-epoch ``num_modified`` counts corrections, not entries.)"""
    count = sum(r["num_written"] for r in history)
    totals = {"num_written_total": count}
    if "num_written_true_pos" in history[-1]:
        totals["written_precision_total"] = (sum(r["num_written_true_pos"] for r in history) / count
                                             if count else None)
    return totals


def prepare_run_dir(cfg, resume):
    """Create the run folder; refuse to overwrite a finished or interrupted run by accident."""
    finished = os.path.exists(os.path.join(cfg.run_dir, run_files.RESULTS))
    started = os.path.exists(os.path.join(cfg.run_dir, run_files.LAST))
    if finished and not cfg.overwrite:
        raise UserError(f"{cfg.run_dir} holds a finished run; pass --overwrite to replace it "
                        f"or --exp_name to choose another folder")
    if started and not (resume or cfg.overwrite):
        raise UserError(f"{cfg.run_dir} holds an interrupted run; pass --resume to continue it "
                        f"or --overwrite to start again")
    if not distributed.is_main():     # the checks above fail or pass in every process alike
        return
    if cfg.overwrite and not resume:
        for name in (run_files.RESULTS, run_files.LAST, run_files.BEST, run_files.BEST_LINEAR, run_files.LOG,
                     run_files.LOSS_HISTORY, run_files.TRAJECTORIES, run_files.TRAIN_LABELS):   # analysis records
            if os.path.exists(os.path.join(cfg.run_dir, name)):
                os.remove(os.path.join(cfg.run_dir, name))
    os.makedirs(cfg.run_dir, exist_ok=True)


def make_loader(split, cfg, train, generator=None):
    """Training: shuffled, each image flipped or not, both drawn from ``generator``, in batches of
    which this process loads its share. Else: this process's share of the images, in order."""
    dataset = datasets.ImageDataset(split.paths, datasets.image_transform(cfg.image_size))
    options = dict(num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                   pin_memory=torch.cuda.is_available())
    if train:
        batches = datasets.ShardedBatches(datasets.ShuffleFlipSampler(len(split), generator or torch.Generator()),
                                          cfg.bsize, distributed.rank(), distributed.world_size(),
                                          cfg.max_steps_per_epoch)
        return DataLoader(dataset, batch_sampler=batches, **options)
    return DataLoader(dataset, batch_size=cfg.bsize, sampler=distributed.share(range(len(split))), **options)


@torch.no_grad()
def cache_backbone_features(model, split, cfg, device):
    """LinearInit: the pooled features of the frozen backbone (eval mode) for every training image,
    unflipped and flipped, computed once (each process its share, then gathered). Returns a
    (2, N, C) float32 CPU tensor ([flip, row]); (1, N, C), unflipped only, for Cole et al.'s linear
    phase, which trains on the fixed features of the unflipped images."""
    model.backbone.eval()
    dataset = datasets.ImageDataset(split.paths, datasets.image_transform(cfg.image_size))
    rows, sizes = distributed.share(range(len(split))), distributed.share_sizes(len(split))
    features = []
    for flip in ((False,) if cfg.separate_linear_phase else (False, True)):
        loader = DataLoader(dataset, batch_size=cfg.bsize, sampler=[(i, flip) for i in rows],
                            num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
        with autocast(cfg.amp, device):              # the precision the uncached phase would use
            share = torch.cat([model.features(to_device(images, device)).float().cpu()
                               for images, _ in progress(loader, f"caching features (flip={flip})")])
        if distributed.world_size() > 1:             # gathered on the device, where NCCL works
            share = distributed.gather_rows(share.to(device), sizes).cpu()
        features.append(share)
    return torch.stack(features)


class CachedFeatureBatches:
    """LinearInit's frozen phase without running the backbone: (features (b, C), idx) batches in
    the order and with the flips that ``batch_sampler`` (``datasets.ShardedBatches``) gives the image
    loader, so the head receives the same inputs (up to float rounding of the batched convolutions)
    and makes the same updates."""

    def __init__(self, features, batch_sampler):
        self.features = features            # (2, N, C): unflipped, flipped; or (1, N, C): unflipped only
        self.batch_sampler = batch_sampler

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        for batch in self.batch_sampler:    # draws this epoch's order and flips, as the loader would
            idx, flip = (torch.tensor(column) for column in zip(*batch))
            flip = flip.long() if len(self.features) == 2 else torch.zeros_like(idx)    # the flips are drawn anyway
            yield self.features[flip, idx], idx


def resolve_expected_positives(cfg, train_split):
    """k_hat for EPR and ROLE where neither --expected_num_pos nor the paper gives it: the mean
    number of positives per image in the training split's full labels. Computed once, before the
    config is saved, so a resumed run compares equal."""
    if not methods.get(cfg.mod_scheme).needs_k_hat or cfg.expected_num_pos is not None:
        return cfg
    if train_split.labels is None:
        raise UserError(f"{cfg.mod_scheme} needs --expected_num_pos (k_hat, the expected number of "
                        f"positives per image): {cfg.dataset} has no full training labels to compute it from")
    # float32 row sums, as Cole et al.'s float32 label files give them, so that k_hat is theirs to the digit.
    k_hat = round(float(train_split.labels.row_counts(1).astype(np.float32).mean()), 4)
    print(f"{cfg.mod_scheme}: expected positives per image k_hat = {k_hat} (mean of the training labels)")
    return dataclasses.replace(cfg, expected_num_pos=k_hat)


def run(cfg, resume=False):
    """Train with model selection on val mAP, then report the best epoch's test mAP.

    Writes into ``cfg.run_dir``: config.json, git.json, log.jsonl (one line per epoch), last.pt
    (everything needed to resume), best.pt (the best epoch's weights) and results.json.
    Returns the results dict. The steps of a run are ``Training``'s methods, in this order.
    """
    training = Training(cfg, resume)        # run folder, data, model, optimizer, the method's state
    training.restore()                      # from last.pt on --resume
    training.write_run_files()
    for epoch in range(training.state["epoch"] + 1, training.cfg.total_epochs + 1):
        if training.stopped_early:
            break
        if training.cfg.separate_linear_phase and epoch == training.cfg.linear_init_epochs + 1:
            training.start_fine_tuning()    # after Cole et al.'s linear phase
        training.run_epoch(epoch)
    return training.finish()


class Training:
    """One run's state, built once and advanced epoch by epoch (``run`` reads as its steps)."""

    def __init__(self, cfg, resume):
        self.resume = resume
        self.device = device = distributed.init(resolve_device(cfg.device))
        self.splits, cfg = load_data(cfg, resume, device)
        self.cfg = cfg
        self.num_classes = self.splits["train"].labels_obs.num_classes
        self.method = method = methods.get(cfg.mod_scheme)
        if method.prepare is not None:          # a stage before this training (CSL's prior model)
            method.prepare(cfg, resume, run)
        seed_everything(cfg.seed)
        self.model = build_training_model(cfg, self.num_classes, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(cfg.amp, device) == torch.float16)
        # The method's state (ROLE's label estimate, APL's pseudo-labels, VLPL's, CSL's prior), saved in
        # last.pt as "label_estimate" where it changes; refused before it is made where it cannot fit.
        train = self.splits["train"]
        check_per_image_memory(cfg, method, len(train), self.num_classes, self.model.head.in_features, device)
        self.label_estimate = None if method.make_state is None else method.make_state(train, cfg).to(device)
        self.trained_state = self.label_estimate if method.state_trains else None   # APL's labels do not train
        corrections = labels.Corrections(len(train), self.num_classes) if method.writes_labels else None
        self.train_labels = labels.TrainingLabels(train.labels_obs, train.labels, corrections)
        self.shuffle = torch.Generator()
        self.loaders = {"train": make_loader(train, cfg, train=True, generator=self.shuffle),
                        "val": make_loader(self.splits["val"], cfg, train=False),
                        "test": make_loader(self.splits["test"], cfg, train=False)}
        self.paths = {n: os.path.join(cfg.run_dir, f) for n, f in (("last", run_files.LAST), ("best", run_files.BEST),
                                                                   ("best_linear", run_files.BEST_LINEAR))}
        self.state = {"epoch": 0, "best_map": -math.inf, "best_epoch": 0, "history": []}
        self.ckpt = (torch.load(self.paths["last"], map_location=device, weights_only=True)
                     if resume and os.path.exists(self.paths["last"]) else None)
        # The optimizer of the phase that wrote the checkpoint (Cole et al.'s LinearInit has two).
        self.optimizer = build_optimizer(self.model, cfg, self.trained_state,
                                         cfg.linear_phase(max(self.ckpt["state"]["epoch"], 1) if self.ckpt else 1))
        self.net = self.net_frozen = self.cached_features = self.recorder = None
        self.stopped_early = False
        self.start = time.time()

    def restore(self):
        """Continue from last.pt (--resume): weights, optimizer, LL-Cp's corrections, the method's state,
        history."""
        ckpt, cfg = self.ckpt, self.cfg
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.restore_corrections(ckpt)
            if self.label_estimate is not None:
                # Checkpoints of 0976ac2 and before kept CSL's prior model under a key of its own.
                saved = ckpt["label_estimate"] if ckpt["label_estimate"] is not None else ckpt.get("training_prior")
                self.label_estimate.load_state_dict(saved or {})
            self.scaler.load_state_dict(ckpt["scaler"])
            self.state = ckpt["state"]
            if self.method.writes_labels:
                count_written_as_before(self.state["history"])
            in_linear_phase = cfg.linear_phase(max(self.state["epoch"], 1))
            reconcile_best_checkpoint(self.paths["best_linear" if in_linear_phase else "best"], self.state,
                                      ckpt["model"], {"label_estimate": ckpt["label_estimate"]} if in_linear_phase else {})
            print(f"Resuming {cfg.run_dir} after epoch {self.state['epoch']}")
        self.ckpt = None
        self.stopped_early = any(r.get("early_stop") for r in self.state["history"])

    def restore_corrections(self, ckpt):
        """LL-Cp's corrections from last.pt; a checkpoint written before they had their own structure
        (0976ac2 and earlier) holds the run's whole label matrix, whose new +1 entries they are."""
        corrections = self.train_labels.corrections
        if corrections is None:
            return
        if "corrections" in ckpt:
            corrections.load_state_dict(ckpt["corrections"])
        else:
            old = labels.Corrections.from_label_matrix(self.splits["train"].labels_obs.dense(), ckpt["labels_obs"].cpu())
            corrections.keys = old.keys

    def write_run_files(self):
        """config.json (checked against the interrupted run's on --resume), git.json, class_names.json,
        log.jsonl rewritten from the checkpoint, and the analyses' recorder."""
        cfg, splits = self.cfg, self.splits
        check_resumed_config(cfg, self.resume)
        save_atomic(dataclasses.asdict(cfg), os.path.join(cfg.run_dir, run_files.CONFIG))
        save_atomic(git_state(), os.path.join(cfg.run_dir, run_files.GIT))
        # predict.py reads the class names from the run folder, so it needs no data folder.
        self.class_names = datasets.load_class_names(cfg.data_dir, self.num_classes)
        save_atomic(self.class_names, os.path.join(cfg.run_dir, run_files.CLASS_NAMES))
        if distributed.is_main():
            with open(os.path.join(cfg.run_dir, run_files.LOG), "w") as log:
                log.writelines(json.dumps(record) + "\n" for record in self.state["history"])
        self.events = tensorboard_log.EpochEvents(cfg.run_dir, self.state["history"]) if distributed.is_main() else None
        if (cfg.record_losses or cfg.record_labels_for) and distributed.is_main():
            train = splits["train"]
            self.recorder = analysis.TrainingRecorder(cfg.run_dir, cfg.num_epochs, self.method.rejects,
                                                      train.labels_obs.dense(),
                                                      None if train.labels is None else train.labels.dense(),
                                                      train.images, cfg.record_losses, cfg.record_labels_for,
                                                      self.resume)
        # Cole et al.'s linear phase draws batches of --linear_init_bsize (the image loader's are --bsize).
        self.linear_batches = (datasets.ShardedBatches(datasets.ShuffleFlipSampler(len(splits["train"]), self.shuffle),
                                                       cfg.linear_init_bsize, distributed.rank(), distributed.world_size(),
                                                       cfg.max_steps_per_epoch)
                               if cfg.separate_linear_phase else self.loaders["train"].batch_sampler)

    def start_fine_tuning(self):
        """Cole et al. fine-tune from the linear phase's best epoch (head and ROLE's estimate) as a new
        run: a fresh optimizer, and model selection over the fine-tuning epochs only. LL-Cp's
        corrections of the linear phase stay: they are the run's labels, not the model's."""
        distributed.barrier()           # best_linear.pt is written by the main process
        best_linear = torch.load(self.paths["best_linear"], map_location=self.device, weights_only=True)
        self.model.load_state_dict(best_linear["model"])
        if self.label_estimate is not None:
            self.label_estimate.load_state_dict(best_linear["label_estimate"])
        self.optimizer = build_optimizer(self.model, self.cfg, self.trained_state)
        self.state.update(linear_best_map=self.state["best_map"], linear_best_epoch=self.state["best_epoch"],
                          best_map=-math.inf, best_epoch=0)
        self.net = None

    def training_inputs(self, epoch):
        """What trains in ``epoch`` and on what: (net, loader). LinearInit's frozen epochs train the head
        on the backbone's features, computed once."""
        cfg, model = self.cfg, self.model
        frozen = cfg.frozen_backbone(epoch)
        if self.net is None or frozen != self.net_frozen:     # a new phase: what trains and how it runs
            model.freeze_backbone(frozen)
            self.net, self.net_frozen = training_net(model.head if frozen else model, cfg, self.device), frozen
        if frozen and self.cached_features is None:
            self.cached_features = CachedFeatureBatches(
                cache_backbone_features(model, self.splits["train"], cfg, self.device), self.linear_batches)
        if not frozen:
            self.cached_features = None
        return self.net, self.cached_features if frozen else self.loaders["train"]

    def run_epoch(self, epoch):
        """Train one epoch, validate, log one JSON line and checkpoint."""
        cfg, state, model = self.cfg, self.state, self.model
        epoch_start = time.time()
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        self.shuffle.manual_seed(epoch_seed(cfg.seed, epoch))
        net, loader = self.training_inputs(epoch)
        linear_phase = cfg.linear_phase(epoch)
        record = {"epoch": epoch, "frozen_backbone": self.net_frozen}
        if cfg.separate_linear_phase:
            record.update(phase="linear" if linear_phase else "fine_tune", phase_epoch=cfg.phase_epoch(epoch))
        record.update(train_one_epoch(net, loader, self.optimizer, self.train_labels, cfg,
                                      cfg.phase_epoch(epoch), self.device, self.label_estimate, self.recorder,
                                      self.scaler))
        record.update(group_lrs(self.optimizer, {"backbone": model.backbone, "head": model.head,
                                                 "label_estimate": self.trained_state}))
        distributed.broadcast_buffers(model)
        if self.method.after_epoch is not None and not linear_phase:   # APL: pseudo-labels from predictions
            self.method.after_epoch(self.label_estimate, cfg.phase_epoch(epoch), cfg, self.splits["train"].labels_obs, lambda: predict(
                model, make_loader(self.splits["train"], cfg, train=False), self.device, "pseudo-labels", cfg.amp))
        if self.recorder is not None:
            self.recorder.flush()
        if self.method.writes_labels:
            record.update(correction_totals(state["history"] + [record]))
        val = evaluate(model, self.loaders["val"], self.splits["val"], self.device, f"epoch {epoch} val",
                       datasets.load_class_groups(cfg.data_dir, self.num_classes), cfg.amp,
                       cfg.ap_without_positive == "skip")
        # With class groups (OpenImages), the mAP of each too: val_map_G1, ...
        record.update(val_map=val.pop("map"), **{f"val_{group}": value for group, value in val.items()})
        improved = record["val_map"] > state["best_map"]
        if improved:
            state.update(best_map=record["val_map"], best_epoch=epoch)
        # Cole et al.'s protocol runs every epoch; a linear phase always runs its epochs.
        self.stopped_early = (cfg.early_stop and not linear_phase
                              and state["best_map"] - record["val_map"] > cfg.early_stop_drop)
        record.update(early_stop=self.stopped_early, time_s=round(time.time() - epoch_start, 2))
        state["history"].append(record)
        state["epoch"] = epoch
        self.checkpoint(epoch, record, improved, linear_phase)
        print(format_epoch(record, state, cfg.total_epochs))
        if self.stopped_early:
            print(f"Early stop: val mAP fell more than {cfg.early_stop_drop} points below the best "
                  f"({state['best_map']:.2f} at epoch {state['best_epoch']})")

    def checkpoint(self, epoch, record, improved, linear_phase):
        """last.pt, then best.pt where the epoch improved, then the log line."""
        estimate, corrections = self.label_estimate, self.train_labels.corrections
        # What the run changed, never the labels it read: LL-Cp's corrections (8 bytes each), not N x K.
        save_atomic({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scaler": self.scaler.state_dict(),
                     "corrections": None if corrections is None else corrections.state_dict(),
                     "label_estimate": None if estimate is None else estimate.state_dict(),
                     "state": self.state}, self.paths["last"])
        # After last.pt, which already names this epoch as the best and holds its weights: a kill
        # before this write is repaired from last.pt on --resume (reconcile_best_checkpoint).
        if improved:
            best = {"model": self.model.state_dict(), "epoch": epoch, "val_map": record["val_map"]}
            if linear_phase:        # Cole et al.'s linear phase: its best head and label estimate
                best["label_estimate"] = None if estimate is None else estimate.state_dict()
            save_atomic(best, self.paths["best_linear" if linear_phase else "best"])
        if distributed.is_main():
            with open(os.path.join(self.cfg.run_dir, run_files.LOG), "a") as log:
                log.write(json.dumps(record) + "\n")
            self.events.add(record)                 # the same record as TensorBoard scalars

    def finish(self):
        """The best epoch's weights on the test set; results.json."""
        cfg, state, model = self.cfg, self.state, self.model
        distributed.barrier()                           # best.pt is written by the main process
        # --num_epochs 0: Cole et al.'s linear phase alone, whose best epoch is the run's.
        best_path = self.paths["best_linear" if cfg.num_epochs == 0 else "best"]
        best = torch.load(best_path, map_location=self.device, weights_only=True)
        if best["epoch"] != state["best_epoch"]:        # reconcile_best_checkpoint makes this unreachable
            raise UserError(f"{best_path} holds epoch {best['epoch']} but last.pt names epoch {state['best_epoch']} "
                            f"as the best: the run folder is inconsistent; rerun with --overwrite")
        model.load_state_dict(best["model"])
        # One pass per split, gathered to the main process: these scores give the test mAP, the
        # per-class AP, the val thresholds.
        scores = {name: predict_split(model, self.loaders[name], self.splits[name], self.device, name, cfg.amp)
                  for name in ("val", "test")}
        results = self.write_results(scores) if distributed.is_main() else None
        results = distributed.broadcast_object(results)
        print(f"Test mAP {results['test_map']:.2f} with the weights of epoch {state['best_epoch']} "
              f"(val mAP {state['best_map']:.2f}); run folder {cfg.run_dir}")
        return results

    def write_results(self, scores):
        """The main process's end of a run: results.json, thresholds.json, curves.png (and what the
        method adds: CSL's prior model file) from the best model's val and test scores."""
        cfg = self.cfg
        test = scores_metrics(scores["test"], self.splits["test"], self.device, "test",
                              datasets.load_class_groups(cfg.data_dir, self.num_classes),
                              cfg.ap_without_positive == "skip")
        results = {"test_map": test["map"], **{f"test_{k}": v for k, v in test.items() if k != "map"},
                   **run_summary(cfg, self.state, self.stopped_early, round(time.time() - self.start, 1), self.splits)}
        results.update(per_class_results(scores, self.splits, self.class_names, cfg.run_dir))
        if self.method.finish is not None:       # what the method adds (CSL's prior model file)
            results.update(self.method.finish(self.label_estimate, cfg))
        save_atomic(results, os.path.join(cfg.run_dir, run_files.RESULTS))
        curves.draw_run(cfg.run_dir)            # curves.png: val mAP, loss, precision of modification
        self.events.close()
        return results


def load_data(cfg, resume, device):
    """The run folder, the demo's caches and the three splits; (splits, cfg with k_hat resolved)."""
    if cfg.sync_bn and device.type != "cuda":
        raise UserError("--sync_bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only)")
    prepare_run_dir(cfg, resume)
    if cfg.dataset == "demo" and distributed.is_main():
        ensure_demo_dataset(cfg.data_dir)
    if cfg.weights == "demo" and distributed.is_main():
        ensure_demo_backbone()
    distributed.barrier()                           # the run folder, the demo data and weights are ready
    splits = datasets.load_splits(cfg)
    for name, split in splits.items():              # every process needs a share of each split
        if len(split) < distributed.world_size():
            raise UserError(f"the {name} split has {len(split)} images, fewer than the "
                            f"{distributed.world_size()} processes")
    cfg = resolve_expected_positives(cfg, splits["train"])
    print(f"{cfg.dataset}: {splits['train'].labels_obs.num_classes} classes; train {len(splits['train'])}, val "
          f"{len(splits['val'])}, test {len(splits['test'])} images; device {device}"
          + (f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""))
    return splits, cfg


def available_memory(device):
    """Bytes free where a per-image state would live: the GPU's free memory, or this machine's
    available memory (/proc/meminfo's MemAvailable) shared by the run's processes on it."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if os.path.isfile("/proc/meminfo"):
        with open("/proc/meminfo") as f:
            available = 1024 * int(dict(line.split(":", 1) for line in f)["MemAvailable"].split()[0])
    else:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return available // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def check_per_image_memory(cfg, method, num_images, num_classes, feature_dim, device):
    """Refuse, before anything is allocated, a state that grows with the training images and would
    not fit where it lives (the method's ``state_bytes``: ROLE's estimate, APL's soft labels; LinearInit's
    cached features): exit 2 naming what it needs, the dataset's size and what to do, rather than
    an out-of-memory kill hours later."""
    needs = []
    if method.state_bytes is not None:
        needs.append((f"{method.name} keeps a state per training entry", method.state_bytes(num_images, num_classes),
                      f"{num_images:,} training images x {num_classes:,} classes", device))
    if cfg.train_mode == "linear_init":
        flips = 1 if cfg.separate_linear_phase else 2
        needs.append(("LinearInit caches the backbone's features of every training image",
                      flips * num_images * feature_dim * 4, f"{num_images:,} images x {flips} x {feature_dim} floats",
                      torch.device("cpu")))
    for what, needed, size, where in needs:
        available = available_memory(where)
        if needed > available:
            raise UserError(f"{what}: {needed / 2**30:,.1f} GiB ({size}) in each process, more than the "
                            f"{available / 2**30:,.1f} GiB available to it ({where.type}); train on fewer images "
                            f"(--ss_frac_train), with more memory, or with a method whose memory does not grow with "
                            f"the dataset (AN, IU, WAN, LSAN, LL-R, LL-Ct, LL-Cp: Table 3's rows)")


def build_training_model(cfg, num_classes, device):
    """The run's model from its config (``models.build_from_config``) on ``device``."""
    weights = ensure_demo_backbone() if cfg.weights == "demo" else cfg.weights     # cached by now: a path
    model = build_from_config(cfg, num_classes, weights).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and distributed.world_size() > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def check_resumed_config(cfg, resume):
    """--resume with other settings than the interrupted run's config.json is refused."""
    config_path = os.path.join(cfg.run_dir, run_files.CONFIG)
    if resume and os.path.exists(config_path):
        with open(config_path) as f:
            saved = {k: v for k, v in json.load(f).items() if k != "overwrite"}
        flags = {flag.name: flag for flag in methods.get(cfg.mod_scheme).flags}
        fields = {field.name for field in dataclasses.fields(cfg)}
        # Versions up to the methods/ package kept CSL's flags among the fields (config.json's top level): they
        # are the method's options now, and the other methods' are no setting of theirs. A run older than one
        # of its method's flags ran with that flag's legacy value.
        moved = {k: saved.pop(k) for k in list(saved) if k not in fields}
        saved["method_options"] = {**{name: flag.legacy for name, flag in flags.items() if flag.legacy is not None},
                                   **{k: v for k, v in moved.items() if k in flags}, **saved.get("method_options", {})}
        changed = {k: (v, getattr(cfg, k)) for k, v in saved.items() if getattr(cfg, k, None) != v}
        if changed:
            saved_options, options = changed.pop("method_options", ({}, {}))
            differing = [f"--{name}: {saved_options.get(name)} then, {value} now" for name, value in options.items()
                         if saved_options.get(name) != value]
            raise UserError(f"--resume with other settings than the interrupted run: "
                            f"{'; '.join([*(f'{k}: {a} then, {b} now' for k, (a, b) in changed.items()), *differing])}; "
                            f"rerun with the same arguments")


def run_summary(cfg, state, stopped_early, train_time_s, splits):
    """What results.json records of the run besides its test scores (the collector reads these)."""
    summary = {"best_epoch": state["best_epoch"], "best_val_map": state["best_map"],
               "num_images": {name: len(split) for name, split in splits.items()},
               "epochs_run": state["epoch"], "stopped_early": stopped_early, "train_time_s": train_time_s,
               "dataset": cfg.dataset, "mod_scheme": cfg.mod_scheme, "delta_rel": cfg.delta_rel,
               "expected_num_pos": cfg.expected_num_pos, "train_set_variant": cfg.train_set_variant,
               "train_mode": cfg.train_mode, "seed": cfg.seed, "protocol": cfg.protocol, "bsize": cfg.bsize,
               "lr": cfg.lr}
    if cfg.train_mode == "linear_init":
        summary["linear_init_style"] = cfg.linear_init_style
    if cfg.separate_linear_phase:
        summary.update(linear_best_epoch=state.get("linear_best_epoch", state["best_epoch"]),
                       linear_best_val_map=state.get("linear_best_map", state["best_map"]))
    return summary


def per_class_results(scores, splits, class_names, run_dir):
    """The best model's per-class test AP by class name and its multi-label metrics
    (``metrics``) at 0.5 and at the per-class thresholds that maximise F1 on val; those
    are saved to ``thresholds.json`` for ``predict.py --threshold val_f1``. ``scores``: the best
    model's fp32 logits of "val" and "test" (``predict_split``)."""
    thresholds = metrics.split_f1_thresholds(splits["val"], scores["val"])
    save_atomic({"val_f1": dict(zip(class_names, map(float, thresholds)))}, os.path.join(run_dir, run_files.THRESHOLDS))
    at_half, at_val_f1 = (metrics.split_report(splits["test"], scores["test"], class_names, t)
                          for t in (0.5, thresholds))
    for report in (at_half, at_val_f1):
        report.pop("map")
    at_val_f1.pop("per_class_ap")
    return {"test_per_class_ap": at_half.pop("per_class_ap"), "test_at_0.5": at_half, "test_at_val_f1": at_val_f1}


def reconcile_best_checkpoint(best_path, state, last_model, extra=None):
    """On --resume: make best.pt hold the epoch that last.pt names as the best, or fail loudly.

    Each epoch writes last.pt (the state naming the best epoch, and this epoch's weights) before
    best.pt, so a kill between the two leaves best.pt one improvement behind, with the missing
    weights in last.pt: they are written to best.pt here. Any other mismatch (files copied or
    edited by hand) cannot be repaired and raises UserError.

    Args:
        best_path: the run's best.pt (best_linear.pt in Cole et al.'s linear phase); state: last.pt's
            state dict; last_model: last.pt's weights; extra: more entries of that file (the estimate).
    """
    if state["best_epoch"] == 0:
        return
    best_epoch = (torch.load(best_path, map_location="cpu", weights_only=True)["epoch"]
                  if os.path.exists(best_path) else 0)
    if best_epoch == state["best_epoch"]:
        return
    if best_epoch < state["best_epoch"] == state["epoch"]:
        print(f"best.pt holds epoch {best_epoch}, last.pt the best epoch {state['epoch']}: the run was stopped "
              f"between the two writes; best.pt is rewritten from last.pt")
        save_atomic({"model": last_model, "epoch": state["epoch"], "val_map": state["best_map"], **(extra or {})},
                    best_path)
        return
    raise UserError(f"{best_path} holds epoch {best_epoch} but last.pt names epoch {state['best_epoch']} as the "
                    f"best (after epoch {state['epoch']}): the run folder is inconsistent and cannot be resumed; "
                    f"rerun with --overwrite")


def format_epoch(record, state, num_epochs):
    line = (f"epoch {record['epoch']}/{num_epochs} | loss {record['train_loss']:.4f} | "
            f"val mAP {record['val_map']:.2f} (best {state['best_map']:.2f} @ {state['best_epoch']})")
    if record["num_modified"]:
        line += f" | modified {record['num_modified']}"
        if record.get("modification_precision") is not None:
            line += f" ({100 * record['modification_precision']:.1f} % truly positive)"
    if record["num_modified"] and "num_written_total" in record:     # LL-Cp: what stays corrected
        line += f" | written {record['num_written']} ({record['num_written_total']} in all"
        if record.get("written_precision_total") is not None:
            line += f", {100 * record['written_precision_total']:.1f} % truly positive"
        line += ")"
    return line + f" | {record['time_s']:.1f} s"
