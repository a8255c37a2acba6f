"""OpenImages V3's human verifications: real partial labels, kept sparse (data/README.md, "openimages")."""
import csv
import os
from array import array

import numpy as np
from tqdm import tqdm

from data.formatted import PreparationError, read_tokens, require_file

OPENIMAGES_NUM_GROUPS = 5
# Human verifications are binary; the release writes them as "0"/"1".
OPENIMAGES_CONFIDENCE = {"1": 1, "1.0": 1, "0": -1, "0.0": -1}


def read_openimages_annotations(path, class_index):
    """Raw human verifications of the trainable classes in one annotations-human.csv.

    Returns (image_ids sorted, rows, cols, values): one entry per CSV line of a trainable class,
    value +1 (confidence 1) or -1 (confidence 0); rows index ``image_ids``. Images without any
    trainable-class verification do not appear.
    """
    row_of, rows, cols, values = {}, array("q"), array("q"), array("b")
    with open(require_file(path, "openimages"), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        needed = ("ImageID", "LabelName", "Confidence")
        if any(name not in header for name in needed):
            raise PreparationError(f"{path}: header {header}, expected the columns {needed}")
        i_image, i_label, i_conf = (header.index(name) for name in needed)
        for line_no, fields in enumerate(tqdm(reader, desc=os.path.basename(os.path.dirname(path)),
                                              unit=" lines", disable=None), start=2):
            if len(fields) != len(header):
                raise PreparationError(f"{path}, line {line_no}: {len(fields)} fields, "
                                       f"expected {len(header)}")
            col = class_index.get(fields[i_label])
            if col is None:
                continue
            value = OPENIMAGES_CONFIDENCE.get(fields[i_conf])
            if value is None:
                raise PreparationError(f"{path}, line {line_no}: confidence {fields[i_conf]!r}; "
                                       f"human verifications are 0 or 1")
            rows.append(row_of.setdefault(fields[i_image], len(row_of)))
            cols.append(col)
            values.append(value)
    # Sort images by id so the row order does not depend on the order of the file.
    ids = np.array(list(row_of), dtype=str)
    order = np.argsort(ids, kind="stable")
    new_row = np.empty(len(ids), dtype=np.int64)
    new_row[order] = np.arange(len(ids))
    return (ids[order], new_row[np.frombuffer(rows, dtype=np.int64)],
            np.frombuffer(cols, dtype=np.int64).copy(), np.frombuffer(values, dtype=np.int8).copy())


def resolve_openimages_labels(rows, cols, values, num_classes):
    """One label per (image, class): +1 if any verification says present, else -1.

    An (image, class) pair verified both ways is taken as positive: per the V3 release notes, human
    verification "practically eliminates false positives (but not false negatives)", so a positive
    verification is the more trustworthy one. Returns (rows, cols, values, num_conflicts), sorted
    by (row, col).
    """
    keys = rows.astype(np.int64) * num_classes + cols
    positive = np.unique(keys[values == 1])
    negative = np.unique(keys[values == -1])
    num_conflicts = np.intersect1d(positive, negative, assume_unique=True).size
    negative = np.setdiff1d(negative, positive, assume_unique=True)
    keys = np.concatenate([positive, negative])
    merged = np.concatenate([np.ones(len(positive), np.int8), -np.ones(len(negative), np.int8)])
    order = np.argsort(keys, kind="stable")
    keys, merged = keys[order], merged[order]
    return keys // num_classes, keys % num_classes, merged, num_conflicts


def openimages_class_groups(cols, num_classes, num_groups=OPENIMAGES_NUM_GROUPS):
    """(num_classes,) group index per class column, 0 = most annotated.

    ``cols`` are the class columns of the resolved (one per image and class) known training labels,
    so a class's count is the number of training images with a +1 or -1 for it. Classes are sorted
    by count, descending, ties kept in column order, and cut into ``num_groups`` equal groups
    (1000 classes each for the 5000 trainable classes).
    """
    counts = np.bincount(cols, minlength=num_classes)
    rank = np.empty(num_classes, dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(num_classes)
    return rank * num_groups // num_classes


# The official splits and the formatted file sets they become: the paper trains on all of the
# official train set, selects its epoch on the official validation set and reports the official test set.
OPENIMAGES_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def format_openimages(root):
    """OpenImages V3 (2017_11): real partial labels of the 5000 trainable classes.

    Official train -> "train", validation -> "val", test -> "test" (``OPENIMAGES_SPLITS``). Labels
    stay sparse, (rows, cols, values) with values +1/-1 (absent = 0, unknown), and are written so
    (labels.py): the dense train matrix alone would take 17 GB.
    """
    meta = os.path.join(root, "2017_11")
    trainable_path = os.path.join(meta, "classes-trainable.txt")
    mids = [fields[0] for _, fields in read_tokens(trainable_path, "openimages", 1)]
    descriptions_path = os.path.join(meta, "class-descriptions.csv")
    with open(require_file(descriptions_path, "openimages"), newline="") as f:
        names = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
    missing = [mid for mid in mids if mid not in names]
    if missing:
        raise PreparationError(f"{descriptions_path} has no name for {len(missing)} trainable "
                               f"classes of {trainable_path}, e.g. {missing[:3]}")
    class_index = {mid: k for k, mid in enumerate(mids)}
    splits = {}
    for phase, official in OPENIMAGES_SPLITS.items():
        path = os.path.join(meta, official, "annotations-human.csv")
        image_ids, rows, cols, values = read_openimages_annotations(path, class_index)
        rows, cols, values, num_conflicts = resolve_openimages_labels(rows, cols, values, len(mids))
        splits[phase] = {"images": np.char.add(np.char.add(f"{official}/", image_ids), ".jpg"),
                         "entries": (rows, cols, values), "num_conflicts": num_conflicts}
    return {"class_names": [names[mid] for mid in mids], "splits": splits}
