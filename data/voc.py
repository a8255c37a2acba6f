"""PASCAL VOC 2012 in its official layout (data/README.md, "pascal"): class lists and boxes."""
import os
import xml.etree.ElementTree as ET

import numpy as np
from tqdm import tqdm

from data.formatted import PreparationError, int_field, read_tokens, require_file

# Column order of Cole et al.'s PASCAL script (alphabetical, as in the VOC devkit).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)


def read_voc_image_set(path):
    """{image name: label} from ImageSets/Main/<class>_<split>.txt; labels 1, 0 (difficult), -1."""
    return {fields[0]: int_field(fields[1], path, line_no, (-1, 0, 1))
            for line_no, fields in read_tokens(path, "pascal", 2)}


def read_voc_boxes(path, class_index):
    """(boxes [[class, x0, y0, x1, y1], ...], [width, height]) of one Annotations/*.xml.

    Coordinates as in the file (VOC's 1-based pixels); difficult objects are included.
    """
    try:
        tree = ET.parse(require_file(path, "pascal"))
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
