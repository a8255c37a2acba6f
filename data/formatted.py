"""What every dataset format shares: the error a bad raw file raises, readers of raw text files,
the image checks, the observed-label simulation and the writer of the formatted layout
(data/README.md).
"""
import json
import os
import shutil
import sys

import numpy as np

import labels
from datasets import CLASS_NAMES_FILE, IMAGE_ROOTS, ImagePaths, find_missing_images, generate_observed_labels

# Top-level entries of each raw release that hold its images: linked from OUT to ROOT when the two
# differ, so the image root of the formatted layout (datasets.IMAGE_ROOTS) resolves.
IMAGE_FOLDERS = {
    "pascal": ("VOCdevkit",),
    "coco": ("train2014", "val2014"),
    "nuswide": ("Flickr",),
    "cub": ("CUB_200_2011",),
    "openimages": ("images",),
}


class PreparationError(Exception):
    """A raw file is missing or malformed; the message names it and says what to do."""


def hint(dataset):
    return f"see the '{dataset}' section of data/README.md for the expected layout"


def require_file(path, dataset):
    if not os.path.isfile(path):
        raise PreparationError(f"missing file {path}: {hint(dataset)}")
    return path


def read_tokens(path, dataset, min_fields):
    """Whitespace-split non-empty lines of a text file, as (line number, fields)."""
    with open(require_file(path, dataset)) as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise PreparationError(f"{path}, line {line_no}: expected at least {min_fields} "
                                       f"fields, got {line.rstrip()!r}")
            yield line_no, fields


def int_field(value, path, line_no, allowed=None):
    try:
        number = int(value)
    except ValueError:
        raise PreparationError(f"{path}, line {line_no}: {value!r} is not an integer") from None
    if allowed is not None and number not in allowed:
        raise PreparationError(f"{path}, line {line_no}: value {number}, expected one of {allowed}")
    return number



def load_npy(path, dataset):
    try:
        return np.load(require_file(path, dataset), allow_pickle=False)
    except ValueError as error:
        raise PreparationError(f"{path}: not a plain numpy array file ({error})") from None



def keep_rows(split, keep):
    """The split restricted to the rows where ``keep`` is True."""
    kept = {"images": split["images"][keep]}
    if "labels" in split:
        kept["labels"] = split["labels"][keep]
    for key in ("boxes", "sizes"):
        if key in split:
            kept[key] = [item for item, k in zip(split[key], keep) if k]
    if "entries" in split:
        rows, cols, values = split["entries"]
        on_kept = keep[rows]
        new_row = np.cumsum(keep) - 1
        kept["entries"] = (new_row[rows[on_kept]], cols[on_kept], values[on_kept])
        kept["num_conflicts"] = split["num_conflicts"]
    return kept


def link_image_folders(dataset, root, out):
    """Link OUT/<folder> -> ROOT/<folder> for the image folders, unless OUT already has one."""
    if os.path.realpath(root) == os.path.realpath(out):
        return
    for name in IMAGE_FOLDERS[dataset]:
        source, target = os.path.join(root, name), os.path.join(out, name)
        if not os.path.lexists(target):
            os.symlink(os.path.abspath(source), target)
            print(f"linked {target} -> {os.path.abspath(source)}")
        elif not (os.path.exists(source) and os.path.exists(target)
                  and os.path.samefile(source, target)):
            print(f"warning: {target} exists and is not {source}; the images are read from "
                  f"{target}", file=sys.stderr)


def check_shipped_observed_labels(path, observed, num_pos, num_neg, seed, dataset):
    """Stop if ROOT holds observed labels (Cole et al. ship formatted_{phase}_labels_obs.npy with
    NUS-WIDE) that differ from the regenerated ones, before anything is written: with ROOT == OUT
    they would be overwritten, and otherwise the runs would not train on the labels Cole et al.'s
    numbers came from."""
    if not os.path.isfile(path):
        return
    shipped = load_npy(path, dataset)
    if shipped.shape != observed.shape or not np.array_equal(shipped, observed):
        differ = (f"shape {shipped.shape}, regenerated {observed.shape}" if shipped.shape != observed.shape
                  else f"{int((shipped != observed).sum())} of {observed.size} entries differ")
        raise PreparationError(
            f"{path} (shipped observed labels) differs from the labels regenerated with --num_pos {num_pos} "
            f"--num_neg {num_neg} --seed {seed} ({differ}); nothing was written, and the shipped file is left "
            f"as it is. With the defaults (1, 0, 1200) Cole et al.'s files are reproduced bit for bit, so a "
            f"difference means other label matrices or image lists than theirs, or other flags: use the "
            f"files of one download together, or move {os.path.basename(path)} out of the folder to "
            f"generate new observed labels")



def check_images(dataset, root, splits, drop_missing_images):
    """Stop on a missing image, or drop its row with a warning, before anything is written."""
    image_root = os.path.join(root, IMAGE_ROOTS[dataset])
    for phase, split in splits.items():
        missing = find_missing_images(ImagePaths(image_root, split["images"], np.arange(len(split["images"]))))
        if missing.any():
            first = [os.path.join(image_root, p) for p in split["images"][missing][:5]]
            message = (f"{missing.sum()} of {len(missing)} {phase} images are missing under "
                       f"{image_root}, first: {first}")
            if not drop_missing_images:
                raise PreparationError(f"{message}; put them there ({hint(dataset)}) or pass "
                                       f"--drop_missing_images")
            print(f"warning: {message}; dropped", file=sys.stderr)
            splits[phase] = keep_rows(split, ~missing)
        if len(splits[phase]["images"]) == 0:
            raise PreparationError(f"no {phase} image left for {dataset} in {root}: "
                                   f"{hint(dataset)}")


def simulate_observed(dataset, root, splits, num_pos, num_neg, seed):
    """{phase: observed labels} drawn from the full labels of the splits that have them (not
    OpenImages' real partial labels), checked against any shipped in ROOT."""
    observed = {phase: generate_observed_labels(split["labels"], num_pos=num_pos, num_neg=num_neg, seed=seed)
                for phase, split in splits.items() if "entries" not in split}
    for phase in observed:
        check_shipped_observed_labels(os.path.join(root, f"formatted_{phase}_labels_obs.npy"), observed[phase],
                                      num_pos, num_neg, seed, dataset)
    return observed


def formatted_path(out, phase, kind):
    """OUT/formatted_<phase>_<kind>, the names datasets.py reads."""
    return os.path.join(out, f"formatted_{phase}_{kind}")


def write_class_names(out, class_names):
    """OUT/class_names.json, making OUT if needed."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, CLASS_NAMES_FILE), "w") as f:
        json.dump(class_names, f)


def write_split(out, root, phase, split, observed, num_classes):
    """The formatted_<phase>_* files of one split; ``observed`` is None for real partial labels."""
    np.save(formatted_path(out, phase, "images.npy"), split["images"])
    stale = formatted_path(out, phase, "labels_obs.npy") if "entries" in split else labels.sparse_path(out, phase, "labels_obs")
    if os.path.isfile(stale):       # the other storage, from an earlier preparation: never read both
        os.remove(stale)
    elif os.path.isdir(stale):
        shutil.rmtree(stale)
    if "entries" in split:
        # Real partial labels (OpenImages): sparse (labels.py), and the truth is unknown, so no labels file.
        shape = (len(split["images"]), num_classes)
        labels.save_sparse(labels.sparse_path(out, phase, "labels_obs"),
                           *labels.sparse_from_entries(*split["entries"], shape), shape)
        num_known = len(split["entries"][0])
    else:
        np.save(formatted_path(out, phase, "labels.npy"), split["labels"].astype(np.float32))
        # float32 as Cole et al.'s files; the values are -1/0/+1. A shipped file equals them (checked)
        # and is left untouched where OUT is ROOT.
        shipped = os.path.join(root, f"formatted_{phase}_labels_obs.npy")
        if not (os.path.isfile(shipped) and os.path.samefile(shipped, os.path.join(out, os.path.basename(shipped)))):
            np.save(formatted_path(out, phase, "labels_obs.npy"), observed.astype(np.float32))
        num_known = int(split["labels"].sum())
    if "boxes" in split:
        with open(formatted_path(out, phase, "boxes.json"), "w") as f:
            json.dump({"boxes": split["boxes"], "sizes": split["sizes"]}, f)
    kind = "known labels" if "entries" in split else "positives"
    print(f"{phase}: {len(split['images'])} images, {num_classes} classes, "
          f"{num_known / len(split['images']):.2f} {kind} per image")
    if split.get("num_conflicts"):
        print(f"{phase}: {split['num_conflicts']} (image, class) pairs verified both present "
              f"and absent, kept as positive")
