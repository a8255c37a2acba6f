"""The demo dataset: coloured shapes on a noisy canvas, several per image, generated on first use.

It is written in the same formatted layout as the real datasets (data/README.md) and read by the
same code, so the whole pipeline runs on a CPU in minutes with no download. Each of the 12 classes
is a shape in a colour of its own (colour alone identifies the class, so a small network trained
from scratch learns it in a minute); an image holds 2-4 distinct classes, so single-positive labels
leave 1-3 false negatives per image, as in COCO. Every object's box is saved for the pointing game.
"""
import json
import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

import labels
from datasets import CLASS_NAMES_FILE, generate_observed_labels

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (230, 25, 25), "green": (30, 170, 50), "blue": (30, 60, 230), "yellow": (245, 225, 30),
           "cyan": (40, 220, 230), "magenta": (225, 40, 210), "orange": (250, 140, 20),
           "purple": (110, 30, 160), "white": (255, 255, 255), "black": (0, 0, 0),
           "brown": (120, 70, 20), "pink": (255, 160, 200)}
CLASS_NAMES = [f"{colour} {SHAPES[i % len(SHAPES)]}" for i, colour in enumerate(COLOURS)]
NUM_IMAGES = {"train": 1200, "val": 400}     # official train (split later into train/val) and test
CANVAS = 64                                  # pixels
OBJECT_SIZE = (14, 25)                       # side of an object's box, pixels: [low, high)
# Bump when the generated images or labels change: a folder written by another version is regenerated.
GENERATOR_VERSION = 2
VERSION_FILE = "demo_version.json"


def draw_object(draw, shape, colour, box):
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        x0, y0, x1, y1 = box
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def _overlap(a, b):
    return max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)


def _place(rng, taken, tries=20):
    """A random square box that covers at most a quarter of any earlier object, so none is hidden."""
    for _ in range(tries):
        size = rng.randint(*OBJECT_SIZE)
        x0, y0 = rng.randint(0, CANVAS - size + 1, size=2)
        box = [int(x0), int(y0), int(x0 + size - 1), int(y0 + size - 1)]
        if all(_overlap(box, t) <= (t[2] - t[0] + 1) * (t[3] - t[1] + 1) / 4 for t in taken):
            break
    return box


def noisy_canvas(rng, size):
    """A grey canvas with per-pixel colour noise (PIL image), the background of every demo image."""
    background = rng.randint(90, 166, size=(size, size, 1)) + rng.randint(-12, 13, size=(size, size, 3))
    return Image.fromarray(background.clip(0, 255).astype(np.uint8))


def _make_image(rng):
    """One image with its 0/1 label vector and its boxes [[class, x0, y0, x1, y1], ...]."""
    image = noisy_canvas(rng, CANVAS)
    draw = ImageDraw.Draw(image)
    classes = rng.choice(len(CLASS_NAMES), size=rng.randint(2, 5), replace=False)
    labels = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    boxes = []
    for c in classes:
        box = _place(rng, [b[1:] for b in boxes])
        shape, colour = SHAPES[c % len(SHAPES)], list(COLOURS.values())[c]
        draw_object(draw, shape, colour, box)
        labels[c] = 1
        boxes.append([int(c), *box])
    return image, labels, boxes


def _generator_spec(num_images, seed):
    """What determines the folder's content; stored in VERSION_FILE, written last."""
    return {"generator_version": GENERATOR_VERSION, "num_images": dict(num_images), "seed": seed, "canvas": CANVAS}


def _stale_reason(data_dir, spec, any_size=False):
    """Why ``data_dir`` does not hold the complete demo dataset of ``spec``, or None if it does.
    ``any_size``: a complete dataset of this generator version of any size and seed will do."""
    version_path = os.path.join(data_dir, VERSION_FILE)
    if not os.path.isfile(version_path):
        return "no complete demo dataset"
    with open(version_path) as f:
        saved = json.load(f)
    compared = ("generator_version", "canvas") if any_size else tuple(spec)
    if any(saved.get(key) != spec[key] for key in compared):
        return f"written by another generator or settings ({saved}, now {spec})"
    for phase, count in saved["num_images"].items():
        for kind in ("images.npy", "boxes.json", "labels", "labels_obs"):      # labels: dense or sparse (labels.py)
            if not (os.path.isfile(os.path.join(data_dir, f"formatted_{phase}_{kind}"))
                    or labels.exists(data_dir, phase, kind)):
                return f"formatted_{phase}_{kind} is missing"
        missing = [i for i in range(count) if not os.path.isfile(os.path.join(data_dir, "images", _image_name(phase, i)))]
        if missing:
            return f"{len(missing)} {phase} images are missing, e.g. {_image_name(phase, missing[0])}"
    return None


def _image_name(phase, i):
    return f"{phase}_{i:05d}.png"


def _remove_generated(data_dir):
    """Delete what the generator writes (and nothing else) before writing it anew."""
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        if name == "images" and os.path.isdir(path):
            shutil.rmtree(path)
        elif name.startswith("formatted_") and os.path.isdir(path):       # a sparse label folder
            shutil.rmtree(path)
        elif name.startswith("formatted_") or name in (CLASS_NAMES_FILE, VERSION_FILE):
            os.remove(path)


def ensure_demo_dataset(data_dir, num_images=None, seed=0):
    """Generate the demo dataset into ``data_dir`` unless that exact dataset is already there.

    Deterministic for a given ``seed`` and ``num_images`` (maps 'train' and 'val' to image counts;
    tests use fewer). Without ``num_images`` (a training run) a complete folder of this generator
    version is used whatever its size, and NUM_IMAGES are generated where there is none. A folder
    written by another generator version or other settings, half-written, or with files removed is
    regenerated, so stale or mixed data never reaches a run. Returns True when it generated the data.
    """
    spec = _generator_spec(num_images or NUM_IMAGES, seed)
    reason = _stale_reason(data_dir, spec, any_size=num_images is None)
    if reason is None:
        return False
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        print(f"Regenerating the demo dataset in {data_dir}: {reason}")
        _remove_generated(data_dir)
    else:
        print(f"Generating the demo dataset in {data_dir} ...")
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(data_dir, "images"), exist_ok=True)
    for phase, count in spec["num_images"].items():
        names, labels, boxes = [], [], []
        for i in range(count):
            image, label_vec, image_boxes = _make_image(rng)
            names.append(_image_name(phase, i))
            image.save(os.path.join(data_dir, "images", names[-1]))
            labels.append(label_vec)
            boxes.append(image_boxes)
        labels = np.stack(labels)
        np.save(os.path.join(data_dir, f"formatted_{phase}_images.npy"), np.array(names))
        np.save(os.path.join(data_dir, f"formatted_{phase}_labels.npy"), labels)
        with open(os.path.join(data_dir, f"formatted_{phase}_boxes.json"), "w") as f:
            json.dump({"boxes": boxes, "sizes": [[CANVAS, CANVAS]] * count}, f)
        np.save(os.path.join(data_dir, f"formatted_{phase}_labels_obs.npy"),
                generate_observed_labels(labels).astype(np.float32))
    with open(os.path.join(data_dir, CLASS_NAMES_FILE), "w") as f:
        json.dump(CLASS_NAMES, f)
    with open(os.path.join(data_dir, VERSION_FILE), "w") as f:     # last: marks a complete folder
        json.dump(spec, f)
    return True
