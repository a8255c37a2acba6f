"""Formatted multi-label datasets: loading, observed-label simulation, splits, transforms.

Every dataset, real or generated, lives in one folder in the *formatted layout* (data/README.md):
``formatted_{train,val}_{images,labels,labels_obs}`` plus an image folder, the labels dense or sparse
(labels.py). The official train set is split into our train/val and the official val set is our
test set (SPEC section 3), unless the dataset ships its own validation split
(``formatted_test_*``: OpenImages), which is then used as it is.
"""
import dataclasses
import functools
import json
import os
import warnings
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision.transforms.v2 import functional as TF

import distributed
import labels
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


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the code knows of a --dataset; every list of datasets derives from ``DATASETS``."""
    display: str                # its name in tables
    image_root: str             # where its images lie, relative to its folder (the upstream layouts)
    release: bool = False       # formatted from an official release by data/prepare.py
    table2: bool = False        # a dataset of the paper's Table 2
    single_positive: bool = True  # observed labels simulated from full labels (OpenImages: real partial labels)


DATASETS = {
    "pascal": DatasetInfo("VOC", "VOCdevkit/VOC2012/JPEGImages", release=True, table2=True),
    "coco": DatasetInfo("COCO", "", release=True, table2=True),
    "nuswide": DatasetInfo("NUS-WIDE", "Flickr", release=True, table2=True),
    "cub": DatasetInfo("CUB", "CUB_200_2011/images", release=True, table2=True),
    "openimages": DatasetInfo("OpenImages", "images", release=True, single_positive=False),
    "demo": DatasetInfo("Demo", "images"),
    "custom": DatasetInfo("Custom", ""),
}
IMAGE_ROOTS = {name: dataset.image_root for name, dataset in DATASETS.items()}
RELEASES = tuple(name for name, dataset in DATASETS.items() if dataset.release)
TABLE2 = tuple(name for name, dataset in DATASETS.items() if dataset.table2)
SINGLE_POSITIVE = tuple(name for name, dataset in DATASETS.items() if dataset.single_positive)
CLASS_NAMES_FILE = "class_names.json"   # in a formatted folder (and in a run folder, run_files.py)
# The formatted file sets. Cole et al.'s layout has two: "train", and "val", the official validation
# set, which is our test set (our val is then 20 % of train). A dataset that ships a validation and a
# test split (OpenImages) has all three, and each is what its name says.
PHASES = ("train", "val", "test")


class ImagePaths:
    """The image files of a split: position i is ``root/names[rows[i]]`` + ``suffix``. ``names`` is
    the formatted file's array, memory-mapped: no per-image string is made until an image is read."""

    def __init__(self, root, names, rows, suffix=""):
        self.root, self.names, self.rows, self.suffix = root, names, rows, suffix

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return os.path.join(self.root, str(self.names[self.rows[i]]) + self.suffix)


@dataclasses.dataclass
class Split:
    """One evaluated or trained subset: its images and label matrices, read from the formatted files."""
    paths: ImagePaths                 # (n,) image files
    labels: Optional[labels.Labels]   # (n, K) 0/1 ground truth; None where unknown (OpenImages)
    labels_obs: labels.Labels         # (n, K) -1/0/+1 observed labels

    def __len__(self):
        return len(self.paths)

    @property
    def rows(self):
        """(n,) the rows of formatted_<phase>_*.npy it holds (per-image files beside the dataset, such as
        zero-shot scores, are indexed so)."""
        return self.paths.rows

    @property
    def images(self):
        """(n,) absolute image paths, as one array (for small splits and the analyses)."""
        return np.array([self.paths[i] for i in range(len(self))])


def images_path(data_dir, phase):
    """The formatted (N,) image names of a file set."""
    return labels.dense_path(data_dir, phase, "images")


def load_formatted(data_dir, phase):
    """One formatted file set: (image names, observed-label store, full-label store or None), the
    names and labels memory-mapped and checked."""
    names_path = images_path(data_dir, phase)
    if not os.path.isfile(names_path) or not labels.exists(data_dir, phase, "labels_obs"):
        raise UserError(f"missing {names_path} or {labels.dense_path(data_dir, phase, 'labels_obs')}: prepare the "
                        f"dataset first (data/README.md)")
    images = np.load(names_path, mmap_mode="r")
    labels_obs = labels.load_store(data_dir, phase, "labels_obs", (-1, 0, 1))
    truth = labels.load_store(data_dir, phase, "labels", (0, 1))
    if images.ndim != 1 or labels_obs.shape[0] != len(images):
        raise UserError(f"{data_dir} ({phase}): {names_path} has shape {images.shape} but its observed labels "
                        f"{labels_obs.shape}; expected (N,) and (N, K)")
    if truth is not None:
        if truth.shape != labels_obs.shape:
            raise UserError(f"{data_dir} ({phase}): the labels have shape {truth.shape}, the observed labels "
                            f"{labels_obs.shape}")
        check_agreement(truth, labels_obs, f"{data_dir} ({phase})")
    return images, labels_obs, truth


def check_agreement(truth, observed, name):
    """An observed label must agree with the ground truth (checked in row chunks)."""
    step = labels.chunk_rows(truth.shape[1])
    for start in range(0, truth.shape[0], step):
        rows = np.arange(start, min(start + step, truth.shape[0]))
        t, o = truth.rows(rows), observed.rows(rows)
        if ((o == 1) & (t == 0)).any() or ((o == -1) & (t == 1)).any():
            raise UserError(f"{name}: its labels_obs contradicts its labels: an observed label must agree "
                            f"with the ground truth")


def has_own_validation(data_dir):
    """Whether the dataset ships its own validation split (three file sets), or is Cole et al.'s two."""
    return os.path.isfile(images_path(data_dir, "test"))


def resized_copy(data_dir, image_size):
    """(folder, file suffix) of a complete pre-resized copy of the dataset's images at ``image_size``
    (data/resize_images.py), or None."""
    marker = os.path.join(data_dir, f"resized_{image_size}", "complete.json")
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        return os.path.dirname(marker), json.load(f)["suffix"]


def load_splits(cfg):
    """Train / val / test splits of the dataset named in ``cfg`` (SPEC section 3): the dataset's own
    validation and test splits where it ships them, else Cole et al.'s 80/20 split of the official
    train set for train and val, and the official validation set as test."""
    image_root = os.path.join(cfg.data_dir, IMAGE_ROOTS[cfg.dataset])
    own_validation = has_own_validation(cfg.data_dir)
    if cfg.dataset == "openimages" and not own_validation:
        raise UserError(f"{cfg.data_dir} is prepared in the old layout (no official test split; the paper trains on "
                        f"all of the official train set, selects on the official validation and reports the "
                        f"official test): prepare it again with\n  python data/prepare.py --dataset openimages "
                        f"--root RAW_DIR --out {cfg.data_dir}")
    sets = {phase: load_formatted(cfg.data_dir, phase) for phase in (PHASES if own_validation else PHASES[:2])}
    if len({store.shape[1] for _, store, _ in sets.values()}) != 1:
        raise UserError(f"{cfg.data_dir}: the file sets have different numbers of classes: "
                        f"{ {phase: store.shape[1] for phase, (_, store, _) in sets.items()} }")
    if cfg.train_set_variant == "clean" and sets["train"][2] is None:
        raise UserError(f"--train_set_variant clean needs formatted_train_labels.npy in {cfg.data_dir}")
    num_train = len(sets["train"][0])
    if own_validation:
        train_idx, roles = np.arange(num_train), {"val": ("val", None), "test": ("test", None)}
    else:
        train_idx, val_idx = split_indices(num_train, cfg.val_frac, cfg.split_seed)
        roles = {"val": ("train", val_idx), "test": ("val", None)}
    roles["train"] = ("train", subsample_indices(train_idx, cfg.ss_frac_train, cfg.ss_seed))
    # A pre-resized copy at this size holds the loader's own inputs (data/resize_images.py): read it instead.
    root, suffix = resized_copy(cfg.data_dir, cfg.image_size) or (image_root, "")
    splits = {}
    for name in ("train", "val", "test"):
        phase, rows = roles[name]
        images, observed, truth = sets[phase]
        rows = np.arange(len(images)) if rows is None else np.asarray(rows)
        if name == "train" and cfg.train_set_variant == "clean":
            observed = truth
        splits[name] = Split(ImagePaths(root, images, rows, suffix),
                             None if truth is None else labels.Labels(truth, rows), labels.Labels(observed, rows))
    for name, split in splits.items():
        if len(split) == 0:
            raise UserError(f"the {name} split of {cfg.data_dir} is empty")
        missing = find_missing_images(split.paths)
        if missing.any():
            raise UserError(f"{missing.sum()} of {len(split)} {name} images are missing under {split.paths.root}, "
                            f"e.g. {split.paths[int(np.argmax(missing))]}")
    return splits


def find_missing_images(paths):
    """Boolean mask of the ``ImagePaths`` whose file is not there.

    Lists each folder once rather than stat-ing every file: millions of OpenImages paths, where a
    stat each would take minutes to an hour on a network filesystem.
    """
    listings = {}
    missing = np.zeros(len(paths), dtype=bool)
    for i in range(len(paths)):
        folder, name = os.path.split(paths[i])
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        missing[i] = name not in listings[folder]
    return missing


def read_class_names(data_dir):
    """The class names of a formatted folder (its class_names.json), or None where it has none."""
    path = os.path.join(data_dir, CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_class_names(data_dir, num_classes):
    """The K class names of a formatted folder, or 'class 0', 'class 1', ... where it names none (or
    not K)."""
    names = read_class_names(data_dir)
    return names if names is not None and len(names) == num_classes else [f"class {k}" for k in range(num_classes)]


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

    def draw(self):
        """This epoch's (order (n,) int64, flips (n,) bool) tensors: 9 bytes an image, where a list of
        pairs would take about 80 (270 MB for OpenImages' 3.4 M)."""
        order = torch.randperm(self.num_items, generator=self.generator)
        flips = torch.rand(self.num_items, generator=self.generator) < 0.5     # p = 0.5, as upstream
        return order, flips

    def __iter__(self):
        order, flips = self.draw()
        return iter(zip(order.tolist(), flips.tolist()))


class ShardedBatches(Sampler):
    """Batch sampler: the batches of ``batch_size`` items that one process with the whole batch
    would draw from ``sampler`` (a ``ShuffleFlipSampler``), of which process ``part`` of ``parts``
    takes its contiguous share (``distributed.share``). With one process, the plain batches (the
    last one may be smaller); at most ``max_batches`` of them (--max_steps_per_epoch).

    With several processes, a last batch with fewer items than processes is skipped (so that no
    process has an empty batch): at most ``parts - 1`` items per epoch. Every process draws the same
    order, so each knows the whole batch's rows (``positions``) without asking the others.
    """

    def __init__(self, sampler, batch_size, part=0, parts=1, max_batches=None):
        self.sampler, self.batch_size, self.part, self.parts = sampler, batch_size, part, parts
        num_items = len(sampler)
        sizes = [min(batch_size, num_items - start) for start in range(0, num_items, batch_size)]
        # Every process's share of each batch, known in advance: what distributed.gather_rows needs.
        self.shares = [distributed.share_sizes(size, parts) for size in sizes if size >= parts][:max_batches]
        self.order = None

    def __len__(self):
        return len(self.shares)

    def __iter__(self):
        self.order, flips = self.sampler.draw()
        for step in range(len(self)):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            batch = list(zip(self.order[rows].tolist(), flips[rows].tolist()))
            yield distributed.share(batch, self.part, self.parts)

    def positions(self, step):
        """(B,) int64 CPU tensor: the rows of the whole batch ``step`` (0-based) of the epoch being drawn."""
        return self.order[step * self.batch_size:(step + 1) * self.batch_size]


class ImageDataset(Dataset):
    """Images, as (S, S, 3) uint8 tensors (``image_transform``), and their row index; labels stay
    with the training loop, which owns (and for LL-Cp corrects) them, so no worker process ever holds
    a stale copy. ``paths``: a sequence of image files (``ImagePaths``, a list)."""

    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        """``item`` is a row index, or a (row index, flip) pair from ``ShuffleFlipSampler``."""
        idx, flip = item if isinstance(item, tuple) else (item, False)
        path = self.paths[idx]
        try:
            with Image.open(path) as image:
                pixels = self.transform(image.convert("RGB"))                      # (S, S, 3)
        except (OSError, SyntaxError) as err:    # PIL raises these for truncated or corrupt files
            raise UserError(f"cannot read image {path}: {err}") from err
        # A flip only permutes pixels, so flipping after the resize equals upstream's
        # RandomHorizontalFlip between Resize and ToTensor.
        return (pixels.flip(1) if flip else pixels), idx
