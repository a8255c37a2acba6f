"""The demo's stand-in for ImageNet weights: a ResNet-18 pretrained once, on the CPU, on a
single-label task generated like the demo, and cached.

The paper's mechanism needs a network that has learnt the clean patterns by the end of the
warm-up epoch (it starts from ImageNet weights), so that the largest losses afterwards are mostly
false negatives. A ResNet-18 from scratch is still weak after one demo epoch, so the demo starts
from these weights (``--weights demo``), as the paper starts from ImageNet's.

The pretraining task is to tell all 36 shape x colour combinations apart (3 shapes x the 12 demo
colours), one object per image, on 32 x 32 crops of the demo's noisy canvas with objects of the
demo's pixel size: a broader task than the demo's 12 classes (each a colour with one shape), as
ImageNet is broader than COCO. The convolutions see objects at the same scale in the 64-pixel demo
images. Deterministic for a given spec and machine; about a minute on a 2-core CPU, once: the weights,
the 36-way head (the demo's stand-in for CLIP, zero_shot.DemoHeadScorer) and the spec that made them
are cached in ``data/demo_backbone/``, and rebuilt when the spec changes.
"""
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import ImageDraw
from tqdm import tqdm

import run_files
from data import demo

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_backbone")
# Bump "version" when the task or the training changes: cached weights of another spec are rebuilt.
SPEC = {"version": 1, "arch": "resnet18", "num_images": 8000, "canvas": 32, "epochs": 3, "batch_size": 64,
        "lr": 1e-3, "data_seed": 0, "train_seed": 0, "num_held_out": 1000}
COMBINATIONS = [(shape, colour) for colour in demo.COLOURS for shape in demo.SHAPES]    # 36 classes
WEIGHTS_FILE, SPEC_FILE = "resnet18_shapes36.pt", "spec.json"
HEAD_FILE = "head36.pt"     # the 36-way ``fc.`` head, kept for zero_shot.DemoHeadScorer (the demo's CLIP)


def make_pretraining_images(num_images, canvas, seed):
    """(N, canvas, canvas, 3) uint8 images of one object each and their (N,) class in COMBINATIONS."""
    rng = np.random.RandomState(seed)
    images, targets = [], rng.randint(len(COMBINATIONS), size=num_images)
    for target in targets:
        image = demo.noisy_canvas(rng, canvas)
        shape, colour = COMBINATIONS[target]
        size = rng.randint(*demo.OBJECT_SIZE)
        x0, y0 = rng.randint(0, canvas - size + 1, size=2)
        demo.draw_object(ImageDraw.Draw(image), shape, demo.COLOURS[colour],
                         [int(x0), int(y0), int(x0 + size - 1), int(y0 + size - 1)])
        images.append(np.asarray(image))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(targets)


def _accuracy(model, images, targets, batch_size):
    import datasets        # the repository's modules, importable once training runs
    model.eval()
    with torch.no_grad():
        correct = sum((model(datasets.normalize(images[s:s + batch_size])).argmax(1) == targets[s:s + batch_size]).sum()
                      for s in range(0, len(images), batch_size))
    return float(correct) / len(images)


def pretrain(spec=SPEC):
    """Train the backbone of ``spec``; returns (backbone state_dict in torchvision's names, the 36-way
    head's state_dict (``fc.weight``, ``fc.bias``), held-out accuracy)."""
    import datasets
    images, targets = make_pretraining_images(spec["num_images"], spec["canvas"], spec["data_seed"])
    held_out = make_pretraining_images(spec["num_held_out"], spec["canvas"], spec["data_seed"] + 1)
    torch.manual_seed(spec["train_seed"])
    model = torchvision.models.resnet18(num_classes=len(COMBINATIONS))
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    order = torch.Generator().manual_seed(spec["train_seed"])
    bs = spec["batch_size"]
    for epoch in range(1, spec["epochs"] + 1):
        model.train()
        perm = torch.randperm(len(images), generator=order)
        for start in tqdm(range(0, len(images), bs), desc=f"demo backbone epoch {epoch}/{spec['epochs']}",
                          leave=False, dynamic_ncols=True, disable=None):
            batch = perm[start:start + bs]
            loss = F.cross_entropy(model(datasets.normalize(images[batch])), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    accuracy = _accuracy(model, *held_out, bs)
    state = model.state_dict()
    return ({k: v for k, v in state.items() if not k.startswith("fc.")},
            {k: v for k, v in state.items() if k.startswith("fc.")}, accuracy)


def ensure_demo_backbone(folder=DEFAULT_DIR, spec=SPEC):
    """Path of the cached pretrained weights of ``spec``, pretraining them first if they are missing
    or were made by another spec (the spec file is written after the weights and the head, so a
    half-written cache is rebuilt; so is a cache from before the head was kept: pretraining is
    deterministic, so the backbone comes out the same)."""
    weights_path, spec_path = os.path.join(folder, WEIGHTS_FILE), os.path.join(folder, SPEC_FILE)
    head_path = os.path.join(folder, HEAD_FILE)
    if os.path.isfile(weights_path) and os.path.isfile(head_path) and os.path.isfile(spec_path):
        with open(spec_path) as f:
            if json.load(f).get("spec") == spec:
                return weights_path
    print(f"Pretraining the demo backbone (ResNet-18, {spec['num_images']} generated images of 36 shape x "
          f"colour classes, {spec['epochs']} epochs; once, about a minute on 2 CPU cores) into {folder} ...")
    start = time.time()
    state, head, accuracy = pretrain(spec)
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(spec_path):
        os.remove(spec_path)
    for path, tensors in ((weights_path, state), (head_path, head)):
        run_files.save(tensors, path)
    with open(spec_path, "w") as f:
        json.dump({"spec": spec, "held_out_accuracy": accuracy, "seconds": round(time.time() - start, 1),
                   "torch_threads": torch.get_num_threads()}, f, indent=2)
    print(f"Demo backbone ready: held-out accuracy {100 * accuracy:.1f} % on the 36 classes, "
          f"{time.time() - start:.0f} s")
    return weights_path


def load_demo_head_model(folder=DEFAULT_DIR, spec=SPEC):
    """The pretrained ResNet-18 with its 36-way head (classes in COMBINATIONS' order), in eval mode,
    and the paths of the two weight files (pretrained first if missing)."""
    weights_path = ensure_demo_backbone(folder, spec)
    head_path = os.path.join(folder, HEAD_FILE)
    model = torchvision.models.resnet18(num_classes=len(COMBINATIONS))
    model.load_state_dict({**torch.load(weights_path, weights_only=True), **torch.load(head_path, weights_only=True)})
    return model.eval(), (weights_path, head_path)
