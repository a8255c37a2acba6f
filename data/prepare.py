"""One-time preparation of the real datasets into the formatted layout (data/README.md).

    python data/prepare.py --dataset pascal --root /path/to/raw [--out data/pascal]

Each ``format_<dataset>(root)`` reads an official release and returns the class names and, per
official split ("train", and "val" = the official val/test set, our test set), the image paths and
labels; ``prepare()`` checks that every image exists, makes the observed labels and writes the
files. Facts about the releases follow Cole et al.'s formatting scripts
(elijahcole/single-positive-multi-label, preproc/) so that row orders, hence the simulated
single-positive labels, match theirs.
"""
import argparse
import csv
import json
import os
import sys
import xml.etree.ElementTree as ET
from array import array

import numpy as np
from tqdm import tqdm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from datasets import IMAGE_ROOTS, generate_observed_labels, split_indices  # noqa: E402  (needs the path above)

DATASETS = ("pascal", "coco", "nuswide", "cub", "openimages")

# Top-level entries of each raw release that hold its images: linked from OUT to ROOT when the two
# differ, so the image root of the formatted layout (datasets.IMAGE_ROOTS) resolves.
IMAGE_FOLDERS = {
    "pascal": ("VOCdevkit",),
    "coco": ("train2014", "val2014"),
    "nuswide": ("Flickr",),
    "cub": ("CUB_200_2011",),
    "openimages": ("images",),
}

# Column order of Cole et al.'s PASCAL script (alphabetical, as in the VOC devkit).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

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

OPENIMAGES_NUM_GROUPS = 5
# Human verifications are binary; the release writes them as "0"/"1".
OPENIMAGES_CONFIDENCE = {"1": 1, "1.0": 1, "0": -1, "0.0": -1}


class PreparationError(Exception):
    """A raw file is missing or malformed; the message names it and says what to do."""


def _hint(dataset):
    return f"see the '{dataset}' section of data/README.md for the expected layout"


def _require_file(path, dataset):
    if not os.path.isfile(path):
        raise PreparationError(f"missing file {path}: {_hint(dataset)}")
    return path


def _read_tokens(path, dataset, min_fields):
    """Whitespace-split non-empty lines of a text file, as (line number, fields)."""
    with open(_require_file(path, dataset)) as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise PreparationError(f"{path}, line {line_no}: expected at least {min_fields} "
                                       f"fields, got {line.rstrip()!r}")
            yield line_no, fields


def _int_field(value, path, line_no, allowed=None):
    try:
        number = int(value)
    except ValueError:
        raise PreparationError(f"{path}, line {line_no}: {value!r} is not an integer") from None
    if allowed is not None and number not in allowed:
        raise PreparationError(f"{path}, line {line_no}: value {number}, expected one of {allowed}")
    return number


# ----------------------------------------------------------------------------- PASCAL VOC 2012

def read_voc_image_set(path):
    """{image name: label} from ImageSets/Main/<class>_<split>.txt; labels 1, 0 (difficult), -1."""
    return {fields[0]: _int_field(fields[1], path, line_no, (-1, 0, 1))
            for line_no, fields in _read_tokens(path, "pascal", 2)}


def read_voc_boxes(path, class_index):
    """(boxes [[class, x0, y0, x1, y1], ...], [width, height]) of one Annotations/*.xml.

    Coordinates as in the file (VOC's 1-based pixels); difficult objects are included.
    """
    try:
        tree = ET.parse(_require_file(path, "pascal"))
    except ET.ParseError as error:
        raise PreparationError(f"{path}: not valid XML ({error})") from None
    size = tree.find("size")
    try:
        width, height = int(size.findtext("width")), int(size.findtext("height"))
        boxes = []
        for obj in tree.findall("object"):
            # Direct children only: person objects also hold <part> elements with their own boxes.
            name, box = obj.findtext("name").strip(), obj.find("bndbox")
            if name not in class_index:
                raise PreparationError(f"{path}: unknown class {name!r}")
            boxes.append([class_index[name]] + [float(box.findtext(k))
                                                for k in ("xmin", "ymin", "xmax", "ymax")])
    except (AttributeError, TypeError, ValueError):
        raise PreparationError(f"{path}: missing or malformed <size>/<object> fields") from None
    return boxes, [width, height]


def format_pascal(root):
    """VOC 2012: official train -> "train", official val -> "val".

    An image is positive for a class where its label is 1; 0 (difficult) and -1 are negatives.
    Images with no positive are dropped; names are sorted (as Cole et al.).
    """
    devkit = os.path.join(root, "VOCdevkit", "VOC2012")
    class_index = {name: k for k, name in enumerate(VOC_CLASSES)}
    splits = {}
    for phase in ("train", "val"):
        positives = {}
        for k, name in enumerate(VOC_CLASSES):
            path = os.path.join(devkit, "ImageSets", "Main", f"{name}_{phase}.txt")
            for image, label in read_voc_image_set(path).items():
                if label == 1:
                    positives.setdefault(image, []).append(k)
        names = sorted(positives)
        labels = np.zeros((len(names), len(VOC_CLASSES)), dtype=np.float32)
        for row, image in enumerate(names):
            labels[row, positives[image]] = 1
        boxes, sizes = [], []
        for image in tqdm(names, desc=f"VOC {phase} annotations", disable=None):
            image_boxes, size = read_voc_boxes(
                os.path.join(devkit, "Annotations", image + ".xml"), class_index)
            boxes.append(image_boxes)
            sizes.append(size)
        splits[phase] = {"images": np.array([n + ".jpg" for n in names], dtype=str),
                         "labels": labels, "boxes": boxes, "sizes": sizes}
    return {"class_names": list(VOC_CLASSES), "splits": splits}


# ----------------------------------------------------------------------------- COCO 2014

def _load_json(path, dataset):
    with open(_require_file(path, dataset)) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise PreparationError(f"{path}: not valid JSON ({error}); re-download it") from None


def format_coco_split(instances, phase):
    """One split of an instances_<phase>2014.json (already parsed).

    Columns follow the order of ``categories``. Images without any annotation are dropped. Rows are
    sorted by the image id *as a decimal string* ('10' < '100' < '9'), as Cole et al.'s script
    does; the order decides which positive the seeded generator keeps, so it is kept for
    bit-identical observed labels. Boxes [x, y, w, h] become [class, x, y, x + w, y + h]; crowd
    annotations count as labels and boxes, as upstream.
    """
    class_index = {cat["id"]: k for k, cat in enumerate(instances["categories"])}
    sizes_by_id = {image["id"]: [image["width"], image["height"]] for image in instances["images"]}
    boxes_by_id = {}
    for ann in instances["annotations"]:
        x, y, w, h = ann["bbox"]
        boxes_by_id.setdefault(ann["image_id"], []).append(
            [class_index[ann["category_id"]], float(x), float(y), float(x + w), float(y + h)])
    image_ids = sorted(boxes_by_id, key=str)
    labels = np.zeros((len(image_ids), len(class_index)), dtype=np.float32)
    for row, image_id in enumerate(image_ids):
        labels[row, [box[0] for box in boxes_by_id[image_id]]] = 1
    return {"images": np.array([f"{phase}2014/COCO_{phase}2014_{i:012d}.jpg" for i in image_ids],
                               dtype=str),
            "labels": labels,
            "boxes": [boxes_by_id[i] for i in image_ids],
            "sizes": [sizes_by_id[i] for i in image_ids]}


def format_coco(root):
    """COCO 2014: train2014 -> "train", val2014 -> "val"."""
    class_names, splits = None, {}
    for phase in ("train", "val"):
        path = os.path.join(root, "annotations", f"instances_{phase}2014.json")
        instances = _load_json(path, "coco")
        absent = [key for key in ("images", "annotations", "categories") if key not in instances]
        if absent:
            raise PreparationError(f"{path}: no {absent} field; is it an instances_*.json file?")
        names = [cat["name"] for cat in instances["categories"]]
        if class_names is None:
            class_names = names
        elif names != class_names:
            raise PreparationError(f"{path}: its categories differ from the train file's; use the "
                                   f"two files of one annotations_trainval2014.zip")
        unknown_images = ({ann["image_id"] for ann in instances["annotations"]}
                          - {image["id"] for image in instances["images"]})
        unknown_classes = ({ann["category_id"] for ann in instances["annotations"]}
                           - {cat["id"] for cat in instances["categories"]})
        if unknown_images or unknown_classes:
            raise PreparationError(f"{path}: annotations of images {sorted(unknown_images)[:3]} or "
                                   f"categories {sorted(unknown_classes)[:3]} it does not list; "
                                   f"re-download it")
        splits[phase] = format_coco_split(instances, phase)
    return {"class_names": class_names, "splits": splits}


# ----------------------------------------------------------------------------- NUS-WIDE

def _load_npy(path, dataset):
    try:
        return np.load(_require_file(path, dataset), allow_pickle=False)
    except ValueError as error:
        raise PreparationError(f"{path}: not a plain numpy array file ({error})") from None


def format_nuswide(root):
    """NUS-WIDE from Cole et al.'s formatted files of their re-crawled subset.

    Their image lists and 0/1 label matrices are taken as they are (order included); this checks
    them and converts the labels to float32. Class names come from ROOT/Concepts81.txt if present,
    else the official list built in here.
    """
    concepts_path = os.path.join(root, "Concepts81.txt")
    class_names = list(NUSWIDE_CONCEPTS)
    if os.path.isfile(concepts_path):
        class_names = [fields[0] for _, fields in _read_tokens(concepts_path, "nuswide", 1)]
    if len(class_names) != 81:
        raise PreparationError(f"{concepts_path}: {len(class_names)} names, expected 81")
    splits = {}
    for phase in ("train", "val"):
        images_path = os.path.join(root, f"formatted_{phase}_images.npy")
        labels_path = os.path.join(root, f"formatted_{phase}_labels.npy")
        images, labels = _load_npy(images_path, "nuswide"), _load_npy(labels_path, "nuswide")
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


# ----------------------------------------------------------------------------- CUB-200-2011

def read_cub_attribute_labels(path, image_ids, num_attributes):
    """(len(image_ids), num_attributes) float32 is_present matrix, rows in ``image_ids`` order.

    Lines are "image_id attribute_id is_present certainty_id time"; a few official lines carry an
    extra field, so only the first three are read (by position, as Cole et al.'s pandas call).
    Every (image, attribute) pair must appear exactly once.
    """
    row_of = {image_id: row for row, image_id in enumerate(image_ids)}
    labels = np.zeros((len(image_ids), num_attributes), dtype=np.float32)
    seen = np.zeros(labels.shape, dtype=np.int32)
    lines = _read_tokens(path, "cub", 4)
    for line_no, fields in tqdm(lines, desc="CUB attribute labels", unit=" lines", disable=None):
        image_id, attribute_id = (_int_field(v, path, line_no) for v in fields[:2])
        if image_id not in row_of or not 1 <= attribute_id <= num_attributes:
            raise PreparationError(f"{path}, line {line_no}: unknown image {image_id} or "
                                   f"attribute {attribute_id}")
        labels[row_of[image_id], attribute_id - 1] = _int_field(fields[2], path, line_no, (0, 1))
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
    paths = {_int_field(f[0], images_path, n): f[1] for n, f in _read_tokens(images_path, "cub", 2)}
    is_train = {_int_field(f[0], split_path, n): _int_field(f[1], split_path, n, (0, 1))
                for n, f in _read_tokens(split_path, "cub", 2)}
    if set(is_train) != set(paths):
        raise PreparationError(f"{split_path} and {images_path} list different image ids")

    candidates = [os.path.join(root, "attributes.txt"),
                  os.path.join(base, "attributes", "attributes.txt")]
    names_path = next((p for p in candidates if os.path.isfile(p)), None)
    if names_path is None:
        raise PreparationError(f"missing file {candidates[0]} (or {candidates[1]}): "
                               f"{_hint('cub')}")
    class_names = [" ".join(f[1:]) for _, f in _read_tokens(names_path, "cub", 2)]

    image_ids = list(paths)
    labels = read_cub_attribute_labels(
        os.path.join(base, "attributes", "image_attribute_labels.txt"), image_ids, len(class_names))
    train = np.array([is_train[i] == 1 for i in image_ids])
    images = np.array([paths[i] for i in image_ids], dtype=str)
    splits = {"train": {"images": images[train], "labels": labels[train]},
              "val": {"images": images[~train], "labels": labels[~train]}}
    return {"class_names": class_names, "splits": splits}


# ----------------------------------------------------------------------------- OpenImages V3

def read_openimages_annotations(path, class_index):
    """Raw human verifications of the trainable classes in one annotations-human.csv.

    Returns (image_ids sorted, rows, cols, values): one entry per CSV line of a trainable class,
    value +1 (confidence 1) or -1 (confidence 0); rows index ``image_ids``. Images without any
    trainable-class verification do not appear.
    """
    row_of, rows, cols, values = {}, array("q"), array("q"), array("b")
    with open(_require_file(path, "openimages"), newline="") as f:
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


def format_openimages(root, eval_split="validation"):
    """OpenImages V3 (2017_11): real partial labels of the 5000 trainable classes.

    Official train -> "train", ``eval_split`` ("validation" or "test") -> "val". Labels stay sparse
    here, (rows, cols, values) with values +1/-1 (absent = 0, unknown), because the dense matrix
    of the full train set takes several GB; ``prepare`` writes it straight to disk.
    """
    meta = os.path.join(root, "2017_11")
    trainable_path = os.path.join(meta, "classes-trainable.txt")
    mids = [fields[0] for _, fields in _read_tokens(trainable_path, "openimages", 1)]
    descriptions_path = os.path.join(meta, "class-descriptions.csv")
    with open(_require_file(descriptions_path, "openimages"), newline="") as f:
        names = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
    missing = [mid for mid in mids if mid not in names]
    if missing:
        raise PreparationError(f"{descriptions_path} has no name for {len(missing)} trainable "
                               f"classes of {trainable_path}, e.g. {missing[:3]}")
    class_index = {mid: k for k, mid in enumerate(mids)}
    splits = {}
    for phase, official in (("train", "train"), ("val", eval_split)):
        path = os.path.join(meta, official, "annotations-human.csv")
        image_ids, rows, cols, values = read_openimages_annotations(path, class_index)
        rows, cols, values, num_conflicts = resolve_openimages_labels(rows, cols, values, len(mids))
        splits[phase] = {"images": np.array([f"{official}/{i}.jpg" for i in image_ids], dtype=str),
                         "entries": (rows, cols, values), "num_conflicts": num_conflicts}
    return {"class_names": [names[mid] for mid in mids], "splits": splits}


# ----------------------------------------------------------------------------- your own CSV

# The values of the CSV's optional split column, and the formatted split each goes to.
CSV_SPLITS = {"train": "train", "test": "val"}
# Cells of the wide layout: observed positive, unknown (0 or empty), observed negative.
WIDE_VALUES = {"1": 1, "0": 0, "": 0, "-1": -1}


def _csv_error(path, line_no, message):
    return PreparationError(f"{path}, line {line_no}: {message}")


def _class_list(cell):
    """';'-separated class names of a long-layout cell, stripped, empty ones left out."""
    return [name.strip() for name in cell.split(";") if name.strip()]


def read_label_csv(path, root, class_names=None, layout="auto", drop_missing_images=False):
    """Image paths and partial labels from a CSV (data/README.md, "Your own data").

    Layouts: "long", columns ``path,positives[,negatives][,split]`` with ';'-separated class names;
    "wide", columns ``path[,split]`` and one per class holding 1 (positive), -1 (negative), 0 or
    empty (unknown). "auto" is long when the header has a ``positives`` column.

    Args:
        path: the CSV file; root: the folder its image paths are relative to.
        class_names: the classes in column order, or None for every class the CSV names, sorted.
        drop_missing_images: leave out rows whose image does not exist (with a warning) instead
            of stopping.
    Returns:
        dict: "class_names"; "images" (N,) str paths relative to ``root``; "observed" (N, K) int8
        in {-1, 0, +1}; "split" (N,) str from the split column ("train" or "test"), or None.
    Raises:
        PreparationError naming the CSV line: an empty file, a missing column, an empty or
        missing or repeated path, a class both positive and negative, a class not in
        ``class_names``, a cell or split value not allowed.
    """
    with open(_require_file(path, "csv"), newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise PreparationError(f"{path} is empty: expected a header line (data/README.md, 'Your own data')")
        if layout == "auto":
            layout = "long" if "positives" in header else "wide"
        needed = ("path", "positives") if layout == "long" else ("path",)
        absent = [name for name in needed if name not in header]
        if absent:
            raise _csv_error(path, 1, f"no {' or '.join(repr(a) for a in absent)} column in the "
                                      f"{layout} layout; header {header}")
        known = None if class_names is None else set(class_names)
        wide_classes = [] if layout == "long" else [h for h in header if h not in ("path", "split")]
        for name in wide_classes:
            if known is not None and name not in known:
                raise _csv_error(path, 1, f"column {name!r} is not a class of --classes")
        rows, first_line = [], {}
        for fields in reader:
            line_no = reader.line_num
            if not any(cell.strip() for cell in fields):
                continue
            if len(fields) != len(header):
                raise _csv_error(path, line_no, f"{len(fields)} fields, expected {len(header)} ({header})")
            cells = dict(zip(header, (cell.strip() for cell in fields)))
            image = cells["path"]
            if not image:
                raise _csv_error(path, line_no, "empty path")
            if image in first_line:
                raise _csv_error(path, line_no, f"{image} is listed twice (first on line {first_line[image]})")
            first_line[image] = line_no
            if layout == "long":
                positives = _class_list(cells["positives"])
                negatives = _class_list(cells.get("negatives", ""))
                both = sorted(set(positives) & set(negatives))
                if both:
                    raise _csv_error(path, line_no, f"{both} both positive and negative")
                labels = {**{n: -1 for n in negatives}, **{n: 1 for n in positives}}
            else:
                labels = {}
                for name in wide_classes:
                    if cells[name] not in WIDE_VALUES:
                        raise _csv_error(path, line_no, f"column {name!r} holds {cells[name]!r}; "
                                                        f"expected 1, 0, -1 or empty")
                    labels[name] = WIDE_VALUES[cells[name]]
            unknown = sorted(n for n in labels if known is not None and n not in known)
            if unknown:
                raise _csv_error(path, line_no, f"class {unknown[0]!r} is not in --classes")
            split = cells.get("split")
            if split is not None and split not in CSV_SPLITS:
                raise _csv_error(path, line_no, f"split {split!r}; expected one of {tuple(CSV_SPLITS)}")
            if not os.path.isfile(os.path.join(root, image)):
                if not drop_missing_images:
                    raise _csv_error(path, line_no, f"image {os.path.join(root, image)} does not exist "
                                                    f"(--drop_missing_images leaves such rows out)")
                print(f"warning: {path}, line {line_no}: image {os.path.join(root, image)} does not exist; "
                      f"dropped", file=sys.stderr)
                continue
            rows.append((image, labels, split))
    if not rows:
        raise PreparationError(f"{path}: no image rows (with an existing image) after the header")
    if class_names is None:
        class_names = sorted({n for _, labels, _ in rows for n in labels} | set(wide_classes))
    column = {name: k for k, name in enumerate(class_names)}
    observed = np.zeros((len(rows), len(class_names)), dtype=np.int8)
    for row, (_, labels, _) in enumerate(rows):
        for name, value in labels.items():
            observed[row, column[name]] = value
    has_split = "split" in header
    return {"class_names": list(class_names), "images": np.array([r[0] for r in rows], dtype=str),
            "observed": observed, "split": np.array([r[2] for r in rows], dtype=str) if has_split else None}


def read_class_file(path):
    """Class names, one per line (blank lines skipped); repeated names are an error."""
    seen = {}
    with open(_require_file(path, "csv")) as f:
        for line_no, line in enumerate(f, start=1):
            name = line.strip()
            if name in seen:
                raise PreparationError(f"{path}, line {line_no}: class {name!r} repeated (line {seen[name]})")
            if name:
                seen[name] = line_no
    if not seen:
        raise PreparationError(f"{path} is empty: expected one class name per line")
    return list(seen)


def format_csv(table, simulate=None, test_frac=0.2, split_seed=1200):
    """The formatted splits of a ``read_label_csv`` table.

    The split column decides each row's split ("train": the official train set, which training
    splits into train and val; "test": the test set, written as formatted_val_*); without one, a
    seeded ``test_frac`` of the rows is the test set (``datasets.split_indices``).

    Labels: with ``simulate="single_positive"`` the CSV's positives are taken as complete (every
    other class negative) and become the full 0/1 labels, from which ``prepare_csv`` draws the
    observed ones. Otherwise the labels are real partial labels, kept as they are; the full labels
    are written too only when every entry is known (+1 or -1).
    Returns:
        {"train": {"images", "observed" or "labels"}, "val": ...}.
    """
    images, observed = table["images"], table["observed"]
    if table["split"] is not None:
        parts = {CSV_SPLITS[name]: np.flatnonzero(table["split"] == name) for name in CSV_SPLITS}
    else:
        train_idx, test_idx = split_indices(len(images), test_frac, split_seed)
        parts = {"train": train_idx, "val": test_idx}
    splits = {}
    for phase, idx in parts.items():
        split = {"images": images[idx]}
        if simulate == "single_positive":
            split["labels"] = (observed[idx] == 1).astype(np.float32)
        else:
            split["observed"] = observed[idx]
            if (observed[idx] != 0).all():
                split["labels"] = (observed[idx] == 1).astype(np.float32)
        splits[phase] = split
    return splits


FORMATTERS = {"pascal": format_pascal, "coco": format_coco, "nuswide": format_nuswide,
              "cub": format_cub, "openimages": format_openimages}


# ----------------------------------------------------------------------------- checks and writing

def find_missing_images(image_root, paths):
    """Boolean mask of the ``paths`` (relative to ``image_root``) that are not there.

    Lists each folder once rather than stat-ing every file: millions of OpenImages paths.
    """
    by_folder = {}
    for i, path in enumerate(paths):
        by_folder.setdefault(os.path.dirname(path), []).append(i)
    missing = np.zeros(len(paths), dtype=bool)
    for folder, indices in by_folder.items():
        folder_path = os.path.join(image_root, folder)
        present = set(os.listdir(folder_path)) if os.path.isdir(folder_path) else set()
        for i in indices:
            missing[i] = os.path.basename(paths[i]) not in present
    return missing


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


def save_dense_int8(path, entries, shape, chunk_rows=65536):
    """Write the (N, K) int8 matrix of sparse ``entries`` (rows sorted) as a .npy file.

    Filled chunk by chunk through a memory map, so the full matrix (GBs for OpenImages) never
    sits in memory; the file is a plain .npy that np.load(..., mmap_mode="r") reads.
    """
    rows, cols, values = entries
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.int8, shape=shape)
    bounds = np.searchsorted(rows, np.arange(0, shape[0] + chunk_rows, chunk_rows))
    for chunk, start in enumerate(range(0, shape[0], chunk_rows)):
        stop = min(start + chunk_rows, shape[0])
        block = np.zeros((stop - start, shape[1]), dtype=np.int8)
        a, b = bounds[chunk], bounds[chunk + 1]
        block[rows[a:b] - start, cols[a:b]] = values[a:b]
        matrix[start:stop] = block
    matrix.flush()
    del matrix


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
    shipped = _load_npy(path, dataset)
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


def prepare(dataset, root, out, num_pos=1, num_neg=0, seed=1200, drop_missing_images=False,
            openimages_eval_split="validation"):
    """Format ``dataset`` from the raw release in ``root`` into ``out`` (data/README.md)."""
    if not os.path.isdir(root):
        raise PreparationError(f"--root {root} is not a folder: {_hint(dataset)}")
    if dataset == "openimages":
        formatted = format_openimages(root, openimages_eval_split)
    else:
        formatted = FORMATTERS[dataset](root)
    class_names, splits = formatted["class_names"], formatted["splits"]
    num_classes = len(class_names)

    # Every check passes before anything is written.
    image_root = os.path.join(root, IMAGE_ROOTS[dataset])
    for phase, split in splits.items():
        missing = find_missing_images(image_root, split["images"])
        if missing.any():
            first = [os.path.join(image_root, p) for p in split["images"][missing][:5]]
            message = (f"{missing.sum()} of {len(missing)} {phase} images are missing under "
                       f"{image_root}, first: {first}")
            if not drop_missing_images:
                raise PreparationError(f"{message}; put them there ({_hint(dataset)}) or pass "
                                       f"--drop_missing_images")
            print(f"warning: {message}; dropped", file=sys.stderr)
            splits[phase] = keep_rows(split, ~missing)
        if len(splits[phase]["images"]) == 0:
            raise PreparationError(f"no {phase} image left for {dataset} in {root}: "
                                   f"{_hint(dataset)}")

    observed = {phase: generate_observed_labels(split["labels"], num_pos=num_pos, num_neg=num_neg, seed=seed)
                for phase, split in splits.items() if "entries" not in split}
    for phase in observed:
        check_shipped_observed_labels(os.path.join(root, f"formatted_{phase}_labels_obs.npy"), observed[phase],
                                      num_pos, num_neg, seed, dataset)

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "class_names.json"), "w") as f:
        json.dump(class_names, f)
    for phase, split in splits.items():
        def path(kind):
            return os.path.join(out, f"formatted_{phase}_{kind}")

        np.save(path("images.npy"), split["images"])
        if "entries" in split:
            # Real partial labels (OpenImages): the truth is unknown, so no labels file.
            save_dense_int8(path("labels_obs.npy"), split["entries"],
                            (len(split["images"]), num_classes))
            num_known = len(split["entries"][0])
        else:
            np.save(path("labels.npy"), split["labels"].astype(np.float32))
            # float32 as Cole et al.'s files; the values are -1/0/+1. A shipped file equals them (checked)
            # and is left untouched where OUT is ROOT.
            shipped = os.path.join(root, f"formatted_{phase}_labels_obs.npy")
            if not (os.path.isfile(shipped) and os.path.samefile(shipped, os.path.join(out, os.path.basename(shipped)))):
                np.save(path("labels_obs.npy"), observed[phase].astype(np.float32))
            num_known = int(split["labels"].sum())
        if "boxes" in split:
            with open(path("boxes.json"), "w") as f:
                json.dump({"boxes": split["boxes"], "sizes": split["sizes"]}, f)
        kind = "known labels" if "entries" in split else "positives"
        print(f"{phase}: {len(split['images'])} images, {num_classes} classes, "
              f"{num_known / len(split['images']):.2f} {kind} per image")
        if split.get("num_conflicts"):
            print(f"{phase}: {split['num_conflicts']} (image, class) pairs verified both present "
                  f"and absent, kept as positive")
    if dataset == "openimages":
        groups = openimages_class_groups(splits["train"]["entries"][1], num_classes)
        np.save(os.path.join(out, "class_groups.npy"), groups)
    link_image_folders(dataset, root, out)
    print(f"wrote {dataset} to {out}; images under {os.path.join(out, IMAGE_ROOTS[dataset])}")


def prepare_csv(csv_path, root, out, classes=None, layout="auto", simulate=None, test_frac=0.2,
                split_seed=1200, num_pos=1, num_neg=0, seed=1200, drop_missing_images=False):
    """Format your own images and CSV of labels into ``out`` (data/README.md, "Your own data"),
    read by ``main.py --dataset custom --data_dir OUT``.

    Image paths are written relative to ``out``: as they are when ``root`` lies inside ``out``,
    else under ``out/images``, a link to ``root``. With ``simulate="single_positive"`` the observed
    labels are drawn from the full ones with ``datasets.generate_observed_labels`` (``num_pos``,
    ``num_neg``, ``seed``; SPEC 2), float32 as for the simulated datasets; else they are the
    CSV's, int8 (OpenImages-style).
    """
    if not os.path.isdir(root):
        raise PreparationError(f"--root {root} is not a folder (the folder the CSV's image paths are relative to)")
    table = read_label_csv(csv_path, root, None if classes is None else read_class_file(classes), layout,
                           drop_missing_images)
    splits = format_csv(table, simulate, test_frac, split_seed)
    for phase, split in splits.items():
        if len(split["images"]) == 0:
            raise PreparationError(f"{csv_path}: no {'test' if phase == 'val' else 'train'} image; "
                                   f"{'its split column needs both train and test rows' if table['split'] is not None else 'add rows or change --test_frac'}")
    class_names = table["class_names"]
    os.makedirs(out, exist_ok=True)
    inside = os.path.relpath(os.path.realpath(root), os.path.realpath(out))
    if inside.split(os.sep)[0] == os.pardir:
        prefix, link = "images", os.path.join(out, "images")
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(root), link)
            print(f"linked {link} -> {os.path.abspath(root)}")
        elif not (os.path.exists(link) and os.path.samefile(link, root)):
            raise PreparationError(f"{link} exists and is not {root}; choose another --out")
    else:
        prefix = "" if inside == os.curdir else inside
    with open(os.path.join(out, "class_names.json"), "w") as f:
        json.dump(class_names, f)
    for phase, split in splits.items():
        def path(kind):
            return os.path.join(out, f"formatted_{phase}_{kind}")

        for stale in ("labels.npy", "labels_obs.npy"):       # a previous preparation's files
            if os.path.exists(path(stale)):
                os.remove(path(stale))
        np.save(path("images.npy"), np.array([os.path.join(prefix, p) for p in split["images"]], dtype=str))
        if "labels" in split:
            np.save(path("labels.npy"), split["labels"])
        if simulate == "single_positive":
            observed = generate_observed_labels(split["labels"], num_pos=num_pos, num_neg=num_neg,
                                                seed=seed).astype(np.float32)
        else:
            observed = split["observed"]
        np.save(path("labels_obs.npy"), observed)
        name = "test" if phase == "val" else "train"
        print(f"{name} (formatted_{phase}_*): {len(split['images'])} images, {len(class_names)} classes, "
              f"{(observed == 1).sum() / len(observed):.2f} observed positives and "
              f"{(observed == -1).sum() / len(observed):.2f} negatives per image"
              + ("" if "labels" in split else "; no full labels (real partial labels)"))
    print(f"wrote {out}; train with: python main.py --dataset custom --data_dir {out}")


def get_args_parser():
    p = argparse.ArgumentParser(
        "Format a raw dataset release into the layout of data/README.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=(*DATASETS, "csv"),
                   help="'csv': your own images and a CSV of labels (--csv; data/README.md, 'Your own data')")
    p.add_argument("--root", required=True,
                   help="folder holding the extracted release (layouts in data/README.md); for csv, the "
                        "folder the CSV's image paths are relative to")
    p.add_argument("--out", default=None,
                   help="output folder; default data/<dataset> in the repository. Image folders "
                        "are symlinked there from --root when the two differ")
    p.add_argument("--num_pos", type=int, default=1,
                   help="observed positives kept per image (simulated datasets; -1 keeps all)")
    p.add_argument("--num_neg", type=int, default=0,
                   help="observed negatives kept per image (simulated datasets; -1 keeps all)")
    p.add_argument("--seed", type=int, default=1200,
                   help="seed of the observed-label generator, one fresh RandomState per split; "
                        "1200 reproduces Cole et al.'s files")
    p.add_argument("--drop_missing_images", action="store_true",
                   help="drop images whose file is missing instead of failing (OpenImages: some "
                        "Flickr URLs are dead); the dropped count is printed")
    p.add_argument("--openimages_eval_split", default="validation", choices=("validation", "test"),
                   help="official OpenImages split written as formatted_val_*")
    g = p.add_argument_group("--dataset csv (data/README.md, 'Your own data')")
    g.add_argument("--csv", default=None, help="the labels: path,positives[,negatives][,split] or one column per class")
    g.add_argument("--csv_layout", default="auto", choices=("auto", "long", "wide"),
                   help="auto: long when the header has a 'positives' column")
    g.add_argument("--classes", default=None,
                   help="file of class names, one per line, in column order; default every class the CSV names, sorted")
    g.add_argument("--simulate", default=None, choices=("single_positive",),
                   help="take the CSV's positives as complete and keep --num_pos of them per image (the "
                        "paper's setting); default: the labels are real partial labels, kept as they are")
    g.add_argument("--test_frac", type=float, default=0.2,
                   help="without a split column: the share of rows held out as the test set (seeded by --split_seed)")
    g.add_argument("--split_seed", type=int, default=1200, help="seed of that train/test split")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    out = args.out or os.path.join(REPO_ROOT, "data", "custom" if args.dataset == "csv" else args.dataset)
    try:
        if args.dataset == "csv":
            if args.csv is None:
                raise PreparationError("--dataset csv needs --csv LABELS.csv")
            prepare_csv(args.csv, args.root, out, args.classes, args.csv_layout, args.simulate, args.test_frac,
                        args.split_seed, args.num_pos, args.num_neg, args.seed, args.drop_missing_images)
            return
        prepare(args.dataset, args.root, out, num_pos=args.num_pos, num_neg=args.num_neg,
                seed=args.seed, drop_missing_images=args.drop_missing_images,
                openimages_eval_split=args.openimages_eval_split)
    except PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
