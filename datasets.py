"""Formatted multi-label datasets: loading, observed-label simulation, splits, transforms.

Every dataset, real or generated, lives in one folder in the *formatted layout* (data/README.md):
``formatted_{train,val}_{images,labels,labels_obs}.npy`` plus an image folder. The official train
set is split into our train/val; the official val set is our test set (SPEC section 3).
"""
import dataclasses
import functools
import os
import warnings
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision.transforms.v2 import functional as TF

import distributed
from errors import UserError


def generate_observed_labels(labels, num_pos=1, num_neg=0, seed=1200):
    """Simulate partial labels from a full 0/1 label matrix, bit-identical to Cole et al.'s generator.

    Args:
        labels: (N, K) array of 0/1 ground-truth labels.
        num_pos: positives kept per row (-1 keeps all).
        num_neg: negatives kept per row (-1 keeps all).
        seed: seed of the fresh ``numpy.random.RandomState`` used for this matrix (one per phase).
    Returns:
        (N, K) int8 array in {-1, 0, +1}: observed negative, unobserved, observed positive.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be a 2-D 0/1 matrix, got shape {labels.shape} "
                         f"with values {np.unique(labels)[:10]}")
    rng = np.random.RandomState(seed)
    observed = np.zeros(labels.shape, dtype=np.int8)
    for i, row in enumerate(labels):
        # Both shuffles always run, even with num_neg == 0: they consume random numbers, and the
        # upstream generator's stream (hence its labels) depends on that.
        for value, count, mark in ((1, num_pos, 1), (0, num_neg, -1)):
            idx = np.nonzero(row == value)[0]
            rng.shuffle(idx)
            observed[i, idx if count == -1 else idx[:count]] = mark
    return observed


def split_indices(num_examples, val_frac=0.2, seed=1200):
    """Split the official train set into (train_idx, val_idx), sorted, as Cole et al. do (SPEC 3)."""
    num_val = int(np.round(val_frac * num_examples))
    perm = np.random.RandomState(seed).permutation(num_examples)
    # perm[num_examples - num_val:] rather than upstream's perm[-num_val:], which takes everything
    # when num_val == 0.
    return np.sort(perm[:num_examples - num_val]), np.sort(perm[num_examples - num_val:])


def subsample_indices(indices, frac, seed=999):
    """Keep the first round(frac * n) of a seeded permutation of ``indices``, sorted (paper Fig. 6)."""
    num_keep = int(np.round(frac * len(indices)))
    return indices[np.sort(np.random.RandomState(seed).permutation(len(indices))[:num_keep])]


# Where each dataset's images lie, relative to its data_dir (the upstream layouts).
IMAGE_ROOTS = {
    "pascal": "VOCdevkit/VOC2012/JPEGImages",
    "coco": "",
    "nuswide": "Flickr",
    "cub": "CUB_200_2011/images",
    "openimages": "images",
    "demo": "images",
    "custom": "",
}
PHASES = ("train", "val")   # the official splits, as stored; our test set is the official val


@dataclasses.dataclass
class Split:
    """One evaluated or trained subset: image paths and its label matrices."""
    images: np.ndarray             # (N,) absolute paths
    labels: Optional[np.ndarray]   # (N, K) 0/1 ground truth; None where unknown (OpenImages)
    labels_obs: np.ndarray         # (N, K) int8 -1/0/+1 observed labels
    rows: np.ndarray = None        # (N,) the rows of formatted_<phase>_*.npy it holds (per-image files beside
                                   # the dataset, such as zero-shot scores, are indexed so)

    def __len__(self):
        return len(self.images)


def load_formatted(data_dir, phase):
    """Read and check one official split of a formatted dataset folder."""
    def path(kind):
        return os.path.join(data_dir, f"formatted_{phase}_{kind}.npy")

    for kind in ("images", "labels_obs"):
        if not os.path.isfile(path(kind)):
            raise UserError(f"missing {path(kind)}: prepare the dataset first (data/README.md)")
    images = np.load(path("images"))
    labels_obs = np.load(path("labels_obs"), mmap_mode="r")
    labels = np.load(path("labels"), mmap_mode="r") if os.path.isfile(path("labels")) else None
    if images.ndim != 1 or labels_obs.ndim != 2 or len(images) != len(labels_obs):
        raise UserError(f"{data_dir} ({phase}): {path('images')} has shape {images.shape} but "
                          f"{path('labels_obs')} has {labels_obs.shape}; expected (N,) and (N, K)")
    _check_values(labels_obs, (-1, 0, 1), path("labels_obs"))
    if labels is not None:
        if labels.shape != labels_obs.shape:
            raise UserError(f"{path('labels')} has shape {labels.shape}, "
                              f"{path('labels_obs')} has {labels_obs.shape}")
        _check_values(labels, (0, 1), path("labels"))
        if ((labels_obs == 1) & (labels == 0)).any() or ((labels_obs == -1) & (labels == 1)).any():
            raise UserError(f"{path('labels_obs')} contradicts {path('labels')}: an observed label "
                              f"must agree with the ground truth")
    return images, labels, labels_obs


def _check_values(matrix, allowed, name):
    bad = ~np.isin(matrix, allowed)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserError(f"{name}: value {matrix[row, col]} at [{row}, {col}]; allowed {allowed}")


def load_splits(cfg):
    """Train / val / test splits of the dataset named in ``cfg`` (SPEC section 3)."""
    image_root = os.path.join(cfg.data_dir, IMAGE_ROOTS[cfg.dataset])
    (train_images, train_labels, train_obs), test = (load_formatted(cfg.data_dir, p) for p in PHASES)
    if train_obs.shape[1] != test[2].shape[1]:
        raise UserError(f"{cfg.data_dir}: train has {train_obs.shape[1]} classes, val {test[2].shape[1]}")
    if cfg.train_set_variant == "clean":
        if train_labels is None:
            raise UserError(f"--train_set_variant clean needs formatted_train_labels.npy in {cfg.data_dir}")
        train_obs = train_labels

    train_idx, val_idx = split_indices(len(train_images), cfg.val_frac, cfg.split_seed)
    train_idx = subsample_indices(train_idx, cfg.ss_frac_train, cfg.ss_seed)

    def subset(images, labels, labels_obs, idx=None):
        idx = np.arange(len(images)) if idx is None else np.asarray(idx)
        paths = np.array([os.path.join(image_root, p) for p in images[idx]])
        return Split(paths, None if labels is None else np.asarray(labels[idx], np.float32),
                     np.asarray(labels_obs[idx], np.int8), idx)

    splits = {"train": subset(train_images, train_labels, train_obs, train_idx),
              "val": subset(train_images, train_labels, train_obs, val_idx),
              "test": subset(*test)}
    for name, split in splits.items():
        if len(split) == 0:
            raise UserError(f"the {name} split of {cfg.data_dir} is empty")
        missing = [p for p in split.images if not os.path.isfile(p)]
        if missing:
            raise UserError(f"{len(missing)} of {len(split)} {name} images are missing under "
                              f"{image_root}, e.g. {missing[0]}")
    return splits


def load_class_groups(data_dir, num_classes):
    """OpenImages' class groups G1..G5 ((K,) int, 0 = most annotated), or None if the dataset has none."""
    path = os.path.join(data_dir, "class_groups.npy")
    if not os.path.isfile(path):
        return None
    groups = np.load(path)
    if groups.shape != (num_classes,):
        raise UserError(f"{path} has shape {groups.shape}; expected ({num_classes},)")
    return groups


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resize_square(image, image_size):
    with warnings.catch_warnings():
        # np.asarray wraps the bytes PIL exports, read-only (nothing writes them), where np.array
        # would copy the full-size image once more (0.6 ms for 1024 x 768).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        pixels = torch.from_numpy(np.asarray(image))                          # (H, W, 3) uint8
    if image.size == (image_size, image_size):      # as PIL's Resize, the identity: skip the kernel
        return pixels.clone()
    # A (3, H, W) view of (H, W, 3) memory is what torch's vectorised uint8 kernel takes (about 4x
    # faster than PIL's resize at 448; a contiguous (3, H, W) input falls back to a slow path); its
    # output is laid out the same way, so the final permute is free.
    return TF.resize(pixels.permute(2, 0, 1), [image_size, image_size], antialias=True).permute(1, 2, 0)


def image_transform(image_size):
    """RGB PIL image -> (S, S, 3) uint8 tensor: upstream's torchvision ``Resize((S, S))``, bilinear
    with antialiasing, computed on a uint8 tensor instead of the PIL image; the two round differently
    (by 1 of 255 levels, on up to 6 % of the values at 448; tests/test_pipeline.py). ToTensor's scaling
    and the ImageNet normalisation happen on the training device (``normalize``), so the loader's
    workers ship a quarter of float32's bytes; the random flip is the sampler's (``ShuffleFlipSampler``)."""
    return functools.partial(_resize_square, image_size=image_size)


@functools.lru_cache(maxsize=None)
def _imagenet_stats(device):
    # Cached per device: building them each batch would be a blocking host-to-device copy.
    return (torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1))


def normalize(images, memory_format=torch.contiguous_format):
    """The model's input from a batch of ``ImageDataset`` images, on the batch's device.

    Args:
        images: (B, H, W, 3) uint8.
        memory_format: of the result; ``torch.channels_last`` costs no copy (the batch is laid out so).
    Returns:
        (B, 3, H, W) float32: torchvision's ToTensor then Normalize with the ImageNet mean and std,
        the same operations in the same order, so equal to them up to float rounding (bit-equal on the CPU).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a (B, H, W, 3) uint8 batch, got {tuple(images.shape)} {images.dtype}")
    mean, std = _imagenet_stats(images.device)
    images = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=memory_format)
    return images.div_(255).sub_(mean).div_(std)


class ShuffleFlipSampler(Sampler):
    """One epoch's training order and horizontal flips, as (row index, flip) pairs.

    Both are drawn from ``generator`` in the main process rather than in the loader's worker
    processes, so they depend on the generator's seed alone (whatever --num_workers), and LinearInit's
    cached-feature phase can feed the head exactly what the image loader would.
    """

    def __init__(self, num_items, generator):
        self.num_items = num_items
        self.generator = generator

    def __len__(self):
        return self.num_items

    def __iter__(self):
        order = torch.randperm(self.num_items, generator=self.generator)
        flips = torch.rand(self.num_items, generator=self.generator) < 0.5     # p = 0.5, as upstream
        return iter(zip(order.tolist(), flips.tolist()))


class ShardedBatches(Sampler):
    """Batch sampler: the batches of ``batch_size`` items that one process with the whole batch
    would draw from ``sampler``, of which process ``part`` of ``parts`` takes its contiguous share
    (``distributed.share``). With one process, the plain batches (the last one may be smaller).

    With several processes, a last batch with fewer items than processes is skipped (so that no
    process has an empty batch): at most ``parts - 1`` items per epoch.
    """

    def __init__(self, sampler, batch_size, part=0, parts=1):
        self.sampler, self.batch_size, self.part, self.parts = sampler, batch_size, part, parts
        num_items = len(sampler)
        sizes = [min(batch_size, num_items - start) for start in range(0, num_items, batch_size)]
        # Every process's share of each batch, known in advance: what distributed.gather_rows needs.
        self.shares = [distributed.share_sizes(size, parts) for size in sizes if size >= parts]

    def __len__(self):
        return len(self.shares)

    def __iter__(self):
        items = list(self.sampler)
        for step in range(len(self)):
            batch = items[step * self.batch_size:(step + 1) * self.batch_size]
            yield distributed.share(batch, self.part, self.parts)


class ImageDataset(Dataset):
    """Images, as (S, S, 3) uint8 tensors (``image_transform``), and their row index; labels stay
    with the training loop, which owns (and for LL-Cp edits) them, so no worker process ever holds a
    stale copy."""

    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        """``item`` is a row index, or a (row index, flip) pair from ``ShuffleFlipSampler``."""
        idx, flip = item if isinstance(item, tuple) else (item, False)
        try:
            with Image.open(self.paths[idx]) as image:
                pixels = self.transform(image.convert("RGB"))                      # (S, S, 3)
        except (OSError, SyntaxError) as err:    # PIL raises these for truncated or corrupt files
            raise UserError(f"cannot read image {self.paths[idx]}: {err}") from err
        # A flip only permutes pixels, so flipping after the resize equals upstream's
        # RandomHorizontalFlip between Resize and ToTensor.
        return (pixels.flip(1) if flip else pixels), idx
