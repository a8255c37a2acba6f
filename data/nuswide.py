"""NUS-WIDE from Cole et al.'s formatted files of their re-crawled subset (data/README.md, "nuswide")."""
import os

import numpy as np

from data.formatted import PreparationError, load_npy, read_tokens

# NUS-WIDE's Concepts81.txt, in its order. Cole et al.'s formatted files carry no class names;
# their 81 columns are assumed to follow this official order.
NUSWIDE_CONCEPTS = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars",
    "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog",
    "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost", "garden",
    "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map", "military", "moon",
    "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest",
    "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky", "snow",
    "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers", "tattoo",
    "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water",
    "waterfall", "wedding", "whales", "window", "zebra",
)


def format_nuswide(root):
    """NUS-WIDE from Cole et al.'s formatted files of their re-crawled subset.

    Their image lists and 0/1 label matrices are taken as they are (order included); this checks
    them and converts the labels to float32. Class names come from ROOT/Concepts81.txt if present,
    else the official list built in here.
    """
    concepts_path = os.path.join(root, "Concepts81.txt")
    class_names = list(NUSWIDE_CONCEPTS)
    if os.path.isfile(concepts_path):
        class_names = [fields[0] for _, fields in read_tokens(concepts_path, "nuswide", 1)]
    if len(class_names) != 81:
        raise PreparationError(f"{concepts_path}: {len(class_names)} names, expected 81")
    splits = {}
    for phase in ("train", "val"):
        images_path = os.path.join(root, f"formatted_{phase}_images.npy")
        labels_path = os.path.join(root, f"formatted_{phase}_labels.npy")
        images, labels = load_npy(images_path, "nuswide"), load_npy(labels_path, "nuswide")
        if images.ndim != 1 or images.dtype.kind != "U":
            raise PreparationError(f"{images_path}: expected a 1-D array of str, got "
                                   f"{images.dtype} {images.shape}")
        if labels.shape != (len(images), 81):
            raise PreparationError(f"{labels_path}: shape {labels.shape}, expected "
                                   f"({len(images)}, 81) to match {images_path}")
        if not np.isin(labels, (0, 1)).all():
            raise PreparationError(f"{labels_path}: values {np.unique(labels)[:10]}, expected 0/1")
        splits[phase] = {"images": images, "labels": labels.astype(np.float32)}
    return {"class_names": class_names, "splits": splits}
