"""The demo dataset: coloured shapes on a noisy canvas, several per image, generated on first use.

It is written in the same formatted layout as the real datasets (data/README.md) and read by the
same code, so the whole pipeline runs on a CPU in minutes with no download. Each of the 12 classes
is a shape in a colour of its own (colour alone identifies the class, so a small network trained
from scratch learns it in a minute); an image holds 2-4 distinct classes, so single-positive labels
leave 1-3 false negatives per image, as in COCO. Every object's box is saved for the pointing game.
"""
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from datasets import generate_observed_labels

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (230, 25, 25), "green": (30, 170, 50), "blue": (30, 60, 230), "yellow": (245, 225, 30),
           "cyan": (40, 220, 230), "magenta": (225, 40, 210), "orange": (250, 140, 20),
           "purple": (110, 30, 160), "white": (255, 255, 255), "black": (0, 0, 0),
           "brown": (120, 70, 20), "pink": (255, 160, 200)}
CLASS_NAMES = [f"{colour} {SHAPES[i % len(SHAPES)]}" for i, colour in enumerate(COLOURS)]
NUM_IMAGES = {"train": 1200, "val": 400}     # official train (split later into train/val) and test
CANVAS = 64                                  # pixels


def _draw_object(draw, shape, colour, box):
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
        size = rng.randint(14, 25)
        x0, y0 = rng.randint(0, CANVAS - size + 1, size=2)
        box = [int(x0), int(y0), int(x0 + size - 1), int(y0 + size - 1)]
        if all(_overlap(box, t) <= (t[2] - t[0] + 1) * (t[3] - t[1] + 1) / 4 for t in taken):
            break
    return box


def _make_image(rng):
    """One image with its 0/1 label vector and its boxes [[class, x0, y0, x1, y1], ...]."""
    background = rng.randint(90, 166, size=(CANVAS, CANVAS, 1)) + rng.randint(-12, 13, size=(CANVAS, CANVAS, 3))
    image = Image.fromarray(background.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    classes = rng.choice(len(CLASS_NAMES), size=rng.randint(2, 5), replace=False)
    labels = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    boxes = []
    for c in classes:
        box = _place(rng, [b[1:] for b in boxes])
        shape, colour = SHAPES[c % len(SHAPES)], list(COLOURS.values())[c]
        _draw_object(draw, shape, colour, box)
        labels[c] = 1
        boxes.append([int(c), *box])
    return image, labels, boxes


def ensure_demo_dataset(data_dir, num_images=None, seed=0):
    """Generate the demo dataset into ``data_dir`` unless it is already there (deterministic).

    ``num_images`` maps 'train' and 'val' to image counts (default NUM_IMAGES; tests use fewer).
    """
    num_images = num_images or NUM_IMAGES
    if all(os.path.isfile(os.path.join(data_dir, f"formatted_{phase}_labels_obs.npy")) for phase in num_images):
        return
    print(f"Generating the demo dataset in {data_dir} ...")
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(data_dir, "images"), exist_ok=True)
    for phase, count in num_images.items():
        names, labels, boxes = [], [], []
        for i in range(count):
            image, label_vec, image_boxes = _make_image(rng)
            names.append(f"{phase}_{i:05d}.png")
            image.save(os.path.join(data_dir, "images", names[-1]))
            labels.append(label_vec)
            boxes.append(image_boxes)
        labels = np.stack(labels)
        np.save(os.path.join(data_dir, f"formatted_{phase}_images.npy"), np.array(names))
        np.save(os.path.join(data_dir, f"formatted_{phase}_labels.npy"), labels)
        with open(os.path.join(data_dir, f"formatted_{phase}_boxes.json"), "w") as f:
            json.dump({"boxes": boxes, "sizes": [[CANVAS, CANVAS]] * count}, f)
        # Written last: its presence marks a complete phase.
        np.save(os.path.join(data_dir, f"formatted_{phase}_labels_obs.npy"),
                generate_observed_labels(labels).astype(np.float32))
    with open(os.path.join(data_dir, "class_names.json"), "w") as f:
        json.dump(CLASS_NAMES, f)
