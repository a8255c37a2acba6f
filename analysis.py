"""The paper's analyses (Section 3.2 and 4.3; SPEC section 8): what is recorded during training, and
the pure functions that turn the records into Table 1, Fig. 1, Fig. 3, Fig. 4 and Table 4.

Recording (optional, off by default) is done by ``TrainingRecorder``, which the training loop calls
once per batch. It writes into the run folder:

| file | content |
|---|---|
| `train_labels.npz` | `labels_obs` (N, K) int8, the observed training labels before any correction; `labels_true` (N, K) uint8 where known; `images` (N,) paths |
| `loss_history.npy` | `--record_losses`: (epochs, N, K) float16, every training entry's loss in every epoch (NaN for epochs not run). COCO: 10 x 65,665 x 80 x 2 bytes = 105 MB on disk, written through a memmap, so RAM does not grow |
| `label_trajectories.npy` | `--record_labels_for M`: (epochs, M, K) int8 state of the first M training images' labels per epoch (codes below; -1 for epochs not run) |

The recorded loss of an entry in epoch t is its assume-negative BCE (Eq. 2) at the moment its batch
was trained in epoch t, before that batch's large-loss modification, against the training target
it had then (for LL-Cp, earlier permanent corrections count as positives). Each entry is seen once
per epoch, so this is every loss the training saw for it; the paper's Fig. 1 plots the same losses
against iterations, ours against epochs.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

import run_files

# Label states of the trajectories (paper Fig. 3), per entry and epoch.
NEGATIVE, OBSERVED, CORRECTED, REJECTED, NOT_RUN = 0, 1, 2, 3, -1
STATE_NAMES = {NEGATIVE: "assumed negative", OBSERVED: "observed positive",
               CORRECTED: "corrected to positive", REJECTED: "rejected (LL-R)"}


def assume_negative_losses(logits, labels_obs):
    """Elementwise assume-negative BCE (Eq. 2): target 1 for observed positives (+1), 0 otherwise.

    Args:
        logits: (B, K) classifier outputs.
        labels_obs: (B, K) observed labels in {-1, 0, +1}.
    Returns:
        (B, K) float32 losses.
    """
    return F.binary_cross_entropy_with_logits(logits.float(), (labels_obs == 1).float(), reduction="none")


def label_states(initial_obs, batch_obs, modified, rejects):
    """The state of each label entry in the batch as training used it (paper Fig. 3).

    Args:
        initial_obs: (B, K) observed labels before any correction, {-1, 0, +1}.
        batch_obs: (B, K) the training labels the batch was trained with (LL-Cp's earlier
            permanent corrections are +1 here).
        modified: (B, K) bool, the entries this batch rejected or corrected.
        rejects: the method gives its modified entries weight 0 (LL-R; ``methods.Method.rejects``),
            rather than a new target (LL-Ct, LL-Cp).
    Returns:
        (B, K) int8 array of NEGATIVE, OBSERVED, CORRECTED or REJECTED.
    """
    initial_obs, batch_obs, modified = (np.asarray(a) for a in (initial_obs, batch_obs, modified))
    states = np.full(initial_obs.shape, NEGATIVE, dtype=np.int8)
    states[(batch_obs == 1) & (initial_obs != 1)] = CORRECTED             # LL-Cp, earlier epochs
    states[modified] = REJECTED if rejects else CORRECTED
    states[initial_obs == 1] = OBSERVED
    return states


class TrainingRecorder:
    """Writes the per-entry losses and label trajectories of a run as it trains (see module doc)."""

    def __init__(self, run_dir, num_epochs, rejects, labels_obs, labels_true, images,
                 record_losses, num_traced, resume):
        """
        Args:
            labels_obs: (N, K) observed training labels before training (no correction yet).
            labels_true: (N, K) 0/1 ground truth or None.
            images: (N,) training image paths.
            num_traced: how many training images (the first rows) get a label trajectory.
            resume: reopen the records of an interrupted run instead of starting new ones.
        """
        self.rejects = rejects
        self.initial_obs = np.asarray(labels_obs, dtype=np.int8)
        num_images, num_classes = self.initial_obs.shape
        self.num_traced = min(num_traced, num_images)
        np.savez(os.path.join(run_dir, run_files.TRAIN_LABELS), labels_obs=self.initial_obs,
                 images=np.asarray(images), **({} if labels_true is None
                                               else {"labels_true": np.asarray(labels_true, np.uint8)}))
        self.losses = (_open_record(os.path.join(run_dir, run_files.LOSS_HISTORY),
                                    (num_epochs, num_images, num_classes), np.float16, np.nan, resume)
                       if record_losses else None)
        self.trajectories = (_open_record(os.path.join(run_dir, run_files.TRAJECTORIES),
                                          (num_epochs, self.num_traced, num_classes), np.int8, NOT_RUN, resume)
                             if self.num_traced else None)

    def record_batch(self, epoch, idx, logits, batch_obs, modified):
        """Store what the batch of training rows ``idx`` saw in (1-based) ``epoch``."""
        # Copies to the host every batch (a device sync on a GPU): acceptable for an analysis run,
        # and why nothing of this runs unless an option asks for it.
        idx = idx.cpu().numpy()
        if self.losses is not None:
            self.losses[epoch - 1, idx] = assume_negative_losses(logits, batch_obs).cpu().numpy()
        if self.trajectories is not None:
            traced = idx < self.num_traced
            if traced.any():
                rows = idx[traced]
                self.trajectories[epoch - 1, rows] = label_states(
                    self.initial_obs[rows], batch_obs.cpu().numpy()[traced], modified.cpu().numpy()[traced],
                    self.rejects)

    def flush(self):
        """Called after each epoch, so a resumed run finds every finished epoch on disk."""
        for record in (self.losses, self.trajectories):
            if record is not None:
                record.flush()


def _open_record(path, shape, dtype, fill, resume):
    """A .npy memmap of ``shape``: the interrupted run's on resume, else a new one set to ``fill``."""
    if resume and os.path.exists(path):
        record = np.load(path, mmap_mode="r+")
        if record.shape == shape and record.dtype == dtype:
            return record
    record = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    record[:] = fill
    return record


# ---------------------------------------------------------------- Table 1 and Fig. 1: memorization

ENTRY_TYPES = ("TP", "TN", "FN")


def entry_types(labels_obs, labels_true):
    """Masks of the entry types of Table 1.

    Returns:
        dict with "TP" (observed positive), "TN" (unobserved and truly negative) and "FN"
        (unobserved and truly positive), each an (N, K) bool array. Observed negatives are in none.
    """
    unobserved = labels_obs == 0
    truly_positive = np.asarray(labels_true).astype(bool)
    return {"TP": labels_obs == 1, "TN": unobserved & ~truly_positive, "FN": unobserved & truly_positive}


def highest_loss_epoch(loss_history, chunk_rows=4096):
    """The 1-based epoch in which each entry's recorded loss is highest.

    Args:
        loss_history: (E, N, K) losses, NaN for epochs not run (early stop); may be a memmap.
        chunk_rows: rows converted to float32 at once, bounding memory on COCO.
    Returns:
        (N, K) int array; ties go to the earliest epoch; 0 where no epoch was recorded.
    """
    num_images = loss_history.shape[1]
    peaks = np.zeros(loss_history.shape[1:], dtype=np.int64)
    for start in range(0, num_images, chunk_rows):
        chunk = np.asarray(loss_history[:, start:start + chunk_rows], dtype=np.float32)
        recorded = ~np.isnan(chunk)
        peak = np.argmax(np.where(recorded, chunk, -np.inf), axis=0) + 1
        peaks[start:start + chunk_rows] = np.where(recorded.any(axis=0), peak, 0)
    return peaks


def memorization_table(peak_epoch, labels_obs, labels_true):
    """Table 1: for each entry type, the share of entries whose highest loss falls in epoch 1
    (the warm-up, before the model memorises) and in later epochs.

    Args:
        peak_epoch: (N, K) 1-based epoch of each entry's highest loss (0: never recorded).
        labels_obs: (N, K) observed labels before training, {-1, 0, +1}.
        labels_true: (N, K) 0/1 ground truth.
    Returns:
        {type: {"entries": count, "warmup": share in [0, 1], "later": share}} for TP, TN, FN;
        shares are None for a type without entries.
    """
    table = {}
    for name, mask in entry_types(np.asarray(labels_obs), labels_true).items():
        peaks = peak_epoch[mask & (peak_epoch > 0)]
        count = len(peaks)
        warmup = float(np.mean(peaks == 1)) if count else None
        table[name] = {"entries": count, "warmup": warmup, "later": None if warmup is None else 1 - warmup}
    return table


def format_memorization_table(table):
    lines = ["| entries | count | highest loss in epoch 1 (warm-up) | highest loss later |",
             "|---|---|---|---|"]
    for name, row in table.items():
        shares = (["-", "-"] if row["warmup"] is None
                  else [f"{100 * row['warmup']:.1f} %", f"{100 * row['later']:.1f} %"])
        lines.append(f"| {name} | {row['entries']} | {shares[0]} | {shares[1]} |")
    return "\n".join(lines)


def mean_loss_curves(loss_history, masks, chunk_rows=4096):
    """Mean recorded loss per epoch over the entries of each mask.

    Returns:
        {name: (E,) float64 array, NaN for an epoch not run or an empty mask}.
    """
    num_epochs, num_images = loss_history.shape[:2]
    sums = {name: np.zeros(num_epochs) for name in masks}
    for start in range(0, num_images, chunk_rows):
        chunk = np.asarray(loss_history[:, start:start + chunk_rows], dtype=np.float64)
        for name, mask in masks.items():
            sums[name] += chunk[:, mask[start:start + chunk_rows]].sum(axis=1)
    return {name: sums[name] / mask.sum() if mask.any() else np.full(num_epochs, np.nan)
            for name, mask in masks.items()}


def plot_loss_curves(loss_history, labels_obs, labels_true, path, examples=5, seed=0):
    """Fig. 1-style: loss per epoch of true-negative and false-negative entries (mean over all
    entries of the type, thick, and a few random entries, thin); epoch 1 is the warm-up."""
    # Imported here so that training, which imports this module for the recorder, needs no matplotlib.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = {k: v for k, v in entry_types(np.asarray(labels_obs), labels_true).items() if k != "TP"}
    means = mean_loss_curves(loss_history, masks)
    epochs = np.arange(1, loss_history.shape[0] + 1)
    rng = np.random.RandomState(seed)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, (name, title) in zip(axes, (("TN", "true negative"), ("FN", "false negative"))):
        rows, cols = np.nonzero(masks[name])
        for i in rng.choice(len(rows), size=min(examples, len(rows)), replace=False):
            ax.plot(epochs, np.asarray(loss_history[:, rows[i], cols[i]], np.float32), lw=0.8, alpha=0.6)
        ax.plot(epochs, means[name], color="black", lw=2.5, label=f"mean of {len(rows)} entries")
        ax.axvspan(0.5, 1.5, color="grey", alpha=0.15, label="warm-up (epoch 1)")
        ax.set(title=f"{title} entries", xlabel="epoch", xticks=epochs)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("assume-negative BCE")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- Fig. 4: precision of modification

# What Fig. 4 draws: label -> the log.jsonl keys that hold it, the first present wins. Runs written
# before LL-Cp's write rule was a flag logged the cumulative share as corrected_precision_total (they
# wrote every corrected entry).
PRECISION_SERIES = {"modified per epoch": ("modification_precision",),
                    "written, cumulative": ("written_precision_total", "corrected_precision_total")}


def precision_curves(records):
    """Fig. 4, precision of modification, from a run's log.jsonl records: {label: (epochs, shares)}.

    "modified per epoch": the share of each epoch's modified entries (rejected, or corrected in the
    loss) that are truly positive. "written, cumulative" (LL-Cp): the share of all entries written
    permanently so far that are truly positive, the paper's LL-Cp curve. Epochs where a share is
    undefined (the warm-up; nothing written yet) are left out, and a series without any point, so
    the dict is empty where nothing was modified or the truth is unknown.
    """
    curves = {}
    for label, keys in PRECISION_SERIES.items():
        points = [(r["epoch"], next((r[k] for k in keys if k in r), None)) for r in records]
        points = [(epoch, value) for epoch, value in points if value is not None]
        if points:
            curves[label] = ([e for e, _ in points], [v for _, v in points])
    return curves


def modification_counts(records):
    """What a run modified, in words: '2,574 modified' (entries rejected or corrected in the loss,
    summed over the epochs), and for LL-Cp '..., 0 written permanently' (its cumulative total)."""
    text = f"{sum(r.get('num_modified', 0) for r in records):,} modified"
    written = [r["num_written_total"] for r in records if "num_written_total" in r]
    return text + (f", {written[-1]:,} written permanently" if written else "")


# ---------------------------------------------------------------- Table 4: pointing game

def class_activation_maps(feature_map, head_weight, size):
    """CAM_k = sum_c w_kc F_c (Zhou et al. 2016), bilinearly upsampled to the input image.

    Args:
        feature_map: (B, C, h, w) last convolutional features.
        head_weight: (K, C) weights of the linear classifier (the bias shifts a map, not its peak).
        size: side of the square input image, in pixels.
    Returns:
        (B, K, size, size) maps.
    """
    cams = torch.einsum("kc,bchw->bkhw", head_weight.float(), feature_map.float())
    return upsample_maps(cams, size)


def upsample_maps(cams, size):
    """(B, K, h, w) maps (e.g. ``models.MultiLabelNet.class_activation_map``, boosted under BoostLU)
    bilinearly upsampled to (B, K, size, size)."""
    return F.interpolate(cams.float(), size=(size, size), mode="bilinear", align_corners=False)


def peak_location(cam):
    """(row, col) of the maximum of a 2-D map; on ties, the tied pixel nearest the map's centre.

    A bilinearly upsampled map peaks at a feature cell's centre, except that upsampling clamps at
    the borders: when the strongest cell lies on the border, the map is flat from that cell's centre
    out to the image's edge. The tied pixel nearest the map's centre is the cell centre again, where
    the first maximum in row-major order would be the image's corner pixel. Values within 1e-5 of
    the map's range below the maximum count as tied: the flat region is only flat up to rounding,
    which differs between batched and per-image computation.
    """
    top, bottom = cam.max(), cam.min()
    rows, cols = np.nonzero(cam >= top - 1e-5 * (top - bottom))
    centre_row, centre_col = (cam.shape[0] - 1) / 2, (cam.shape[1] - 1) / 2
    nearest = np.argmin((rows - centre_row) ** 2 + (cols - centre_col) ** 2)
    return int(rows[nearest]), int(cols[nearest])


def pointing_hit(peak, boxes, image_size, map_size):
    """Whether a peak pixel of the (square) map lies inside one of the boxes.

    Args:
        peak: (row, col) pixel of the map.
        boxes: [[x0, y0, x1, y1], ...] in original-image pixel coordinates.
        image_size: (width, height) of the original image.
        map_size: side of the map (the network input), in pixels.
    Returns:
        True when the peak pixel's centre lies inside a box scaled to the input size.
    """
    y, x = peak[0] + 0.5, peak[1] + 0.5
    sx, sy = map_size / image_size[0], map_size / image_size[1]
    return any(x0 * sx <= x <= x1 * sx and y0 * sy <= y <= y1 * sy for x0, y0, x1, y1 in boxes)


def pointing_game_image(cams, image_boxes, image_size):
    """Hits of one image: {class: hit} for each ground-truth class present (each has >= 1 box).

    Args:
        cams: the image's (S, S) maps indexed by class: a (K, S, S) array, or a dict holding at least
            the image's classes (upsampling only those keeps COCO at 448 pixels affordable).
        image_boxes: [[class, x0, y0, x1, y1], ...] (the formatted boxes file).
        image_size: (width, height) of the original image.
    """
    by_class = {}
    for c, *box in image_boxes:
        by_class.setdefault(int(c), []).append(box)
    return {c: pointing_hit(peak_location(cams[c]), boxes, image_size, cams[c].shape[-1])
            for c, boxes in by_class.items()}


def pointing_game_score(image_hits, num_classes):
    """Table 4: the hit rate of each class over the test images that contain it, averaged over
    the classes that occur (each class counts once, however frequent).

    Args:
        image_hits: list of {class: hit} per image (``pointing_game_image``).
        num_classes: K.
    Returns:
        (per_class, mean): per_class a (K,) array, NaN for a class that never occurs; mean in [0, 1].
    """
    hits, counts = np.zeros(num_classes), np.zeros(num_classes)
    for per_image in image_hits:
        for c, hit in per_image.items():
            hits[c] += hit
            counts[c] += 1
    if not counts.any():
        raise ValueError("no ground-truth box in the test set: the pointing game is undefined")
    per_class = np.divide(hits, counts, out=np.full(num_classes, np.nan), where=counts > 0)
    return per_class, float(np.nanmean(per_class))
