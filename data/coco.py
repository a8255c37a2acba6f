"""COCO 2014 from its instances_*.json files (data/README.md, "coco")."""
import json
import os

import numpy as np

from data.formatted import PreparationError, require_file

def _load_json(path, dataset):
    with open(require_file(path, dataset)) as f:
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
