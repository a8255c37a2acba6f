"""CUB-200-2011's binary attributes (data/README.md, "cub")."""
import os

import numpy as np
from tqdm import tqdm

from data.formatted import PreparationError, hint, int_field, read_tokens

def read_cub_attribute_labels(path, image_ids, num_attributes):
    """(len(image_ids), num_attributes) float32 is_present matrix, rows in ``image_ids`` order.

    Lines are "image_id attribute_id is_present certainty_id time"; a few official lines carry an
    extra field, so only the first three are read (by position, as Cole et al.'s pandas call).
    Every (image, attribute) pair must appear exactly once.
    """
    row_of = {image_id: row for row, image_id in enumerate(image_ids)}
    labels = np.zeros((len(image_ids), num_attributes), dtype=np.float32)
    seen = np.zeros(labels.shape, dtype=np.int32)
    lines = read_tokens(path, "cub", 4)
    for line_no, fields in tqdm(lines, desc="CUB attribute labels", unit=" lines", disable=None):
        image_id, attribute_id = (int_field(v, path, line_no) for v in fields[:2])
        if image_id not in row_of or not 1 <= attribute_id <= num_attributes:
            raise PreparationError(f"{path}, line {line_no}: unknown image {image_id} or "
                                   f"attribute {attribute_id}")
        labels[row_of[image_id], attribute_id - 1] = int_field(fields[2], path, line_no, (0, 1))
        seen[row_of[image_id], attribute_id - 1] += 1
    if (seen != 1).any():
        row, col = np.argwhere(seen != 1)[0]
        raise PreparationError(f"{path}: image {image_ids[row]}, attribute {col + 1} appears "
                               f"{seen[row, col]} times, expected once; re-download the release")
    return labels


def format_cub(root):
    """CUB-200-2011: the 312 binary is_present attributes; train_test_split.txt 1 -> "train",
    0 -> "val". Rows follow images.txt; images without any present attribute are kept (as upstream).

    Attribute names come from the release's top-level attributes.txt (beside CUB_200_2011/), or
    CUB_200_2011/attributes/attributes.txt where a copy puts it there.
    """
    base = os.path.join(root, "CUB_200_2011")
    images_path = os.path.join(base, "images.txt")
    split_path = os.path.join(base, "train_test_split.txt")
    paths = {int_field(f[0], images_path, n): f[1] for n, f in read_tokens(images_path, "cub", 2)}
    is_train = {int_field(f[0], split_path, n): int_field(f[1], split_path, n, (0, 1))
                for n, f in read_tokens(split_path, "cub", 2)}
    if set(is_train) != set(paths):
        raise PreparationError(f"{split_path} and {images_path} list different image ids")

    candidates = [os.path.join(root, "attributes.txt"),
                  os.path.join(base, "attributes", "attributes.txt")]
    names_path = next((p for p in candidates if os.path.isfile(p)), None)
    if names_path is None:
        raise PreparationError(f"missing file {candidates[0]} (or {candidates[1]}): "
                               f"{hint('cub')}")
    class_names = [" ".join(f[1:]) for _, f in read_tokens(names_path, "cub", 2)]

    image_ids = list(paths)
    labels = read_cub_attribute_labels(
        os.path.join(base, "attributes", "image_attribute_labels.txt"), image_ids, len(class_names))
    train = np.array([is_train[i] == 1 for i in image_ids])
    images = np.array([paths[i] for i in image_ids], dtype=str)
    splits = {"train": {"images": images[train], "labels": labels[train]},
              "val": {"images": images[~train], "labels": labels[~train]}}
    return {"class_names": class_names, "splits": splits}
