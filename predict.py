"""Run a trained model on new images, or export it.

    python predict.py RUN_DIR IMAGES... --out preds.csv [--threshold 0.5 | val_f1] [--format jsonl]
    python predict.py RUN_DIR --export model.pt2

IMAGES are image files, folders (searched recursively) or list files (.txt: one path per line,
relative to the list file's folder). The run folder's config.json, class_names.json and best.pt
are all that is read, so the data folder is not needed. Images go through the evaluation's
preprocessing (``datasets.image_transform`` then ``datasets.normalize``) and the model runs in fp32.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import datasets
import models
import metrics
import run_files
import train
from errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LIST_EXTENSIONS = (".txt", ".lst")


def load_run(run_dir, device="cpu"):
    """(config dict, class names, model in eval mode on ``device``) of a finished or interrupted run."""
    paths = {name: os.path.join(run_dir, name) for name in (run_files.CONFIG, run_files.CLASS_NAMES, run_files.BEST)}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise UserError(f"{run_dir} has no {name}: is it a run folder (main.py's --save_path/--exp_name) "
                            f"with at least one finished epoch?")
    with open(paths[run_files.CONFIG]) as f:
        config = json.load(f)
    with open(paths[run_files.CLASS_NAMES]) as f:
        class_names = json.load(f)
    model = models.build_from_config(config, len(class_names), source=paths[run_files.CONFIG])
    models.load_weights(model, torch.load(paths[run_files.BEST], map_location="cpu", weights_only=True)["model"],
                        paths[run_files.BEST])
    model = model.to(device).eval()
    if torch.device(device).type == "cuda":      # as in training: convolutions run faster so
        model = model.to(memory_format=torch.channels_last)
    return config, class_names, model


def load_thresholds(run_dir, threshold, class_names):
    """A float from ``--threshold``, or the (K,) per-class thresholds saved as ``val_f1``."""
    if threshold != "val_f1":
        try:
            return float(threshold)
        except ValueError:
            raise UserError(f"--threshold {threshold!r}: a probability or 'val_f1'") from None
    path = os.path.join(run_dir, run_files.THRESHOLDS)
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: the run did not finish (training writes it after the test)")
    with open(path) as f:
        saved = json.load(f)["val_f1"]
    return np.array([saved[name] for name in class_names])


def list_images(inputs):
    """Image paths of files, folders (recursively, sorted) and list files, in the order given."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, _, files in sorted(os.walk(item)):
                paths += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
        elif item.lower().endswith(LIST_EXTENSIONS) and os.path.isfile(item):
            base = os.path.dirname(item)
            with open(item) as f:
                paths += [os.path.join(base, line.strip()) for line in f if line.strip()]
        else:
            paths.append(item)     # a missing or unreadable file is reported when it is read
    if not paths:
        raise UserError(f"no image found in {inputs}")
    return paths


class ImageFiles(Dataset):
    """``datasets.ImageDataset``'s preprocessing, with a failure returned (as its message) rather
    than raised, so that the caller decides whether to skip the image."""

    def __init__(self, paths, image_size):
        self.paths = paths
        self.transform = datasets.image_transform(image_size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, idx):
        try:
            with Image.open(self.paths[idx]) as image:
                return self.transform(image.convert("RGB")), idx, None
        except (OSError, SyntaxError) as err:    # missing, truncated or not an image
            return None, idx, str(err)


def _collate(items):
    good = [(pixels, idx) for pixels, idx, error in items if error is None]
    pixels = torch.stack([p for p, _ in good]) if good else None
    return pixels, [idx for _, idx in good], [(idx, error) for _, idx, error in items if error is not None]


@torch.no_grad()
def predict_images(model, paths, image_size, device, batch_size=64, num_workers=0, on_error="skip"):
    """fp32 logits of the readable images.

    Returns:
        (indices into ``paths`` of the images predicted, (n, K) float32 logits, [(path, error)]).
    """
    loader = DataLoader(ImageFiles(paths, image_size), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate)
    indices, logits, failures = [], [], []
    for pixels, idx, errors in train.progress(loader, "predict"):
        for i, error in errors:
            if on_error == "stop":
                raise UserError(f"cannot read image {paths[i]}: {error} (--on_error skip leaves it out)")
            print(f"skipped {paths[i]}: {error}", file=sys.stderr)
            failures.append((paths[i], error))
        if pixels is not None:
            logits.append(model(train.to_device(pixels, device)).float().cpu())
            indices += idx
    num_classes = model.head.out_features
    return indices, (torch.cat(logits).numpy() if logits else np.zeros((0, num_classes), np.float32)), failures


def write_predictions(path, fmt, paths, probs, class_names, thresholds):
    """One row per image: its path, each class's probability and the classes at or above threshold."""
    predicted = probs >= thresholds
    with open(path, "w", newline="") as f:
        if fmt == "jsonl":
            for p, row, chosen in zip(paths, probs, predicted):
                f.write(json.dumps({"path": p, "scores": dict(zip(class_names, map(float, row))),
                                    "predicted": [n for n, c in zip(class_names, chosen) if c]}) + "\n")
            return
        writer = csv.writer(f)
        writer.writerow(["path", *class_names, "predicted"])
        for p, row, chosen in zip(paths, probs, predicted):
            writer.writerow([p, *(f"{v:.6g}" for v in row), ";".join(n for n, c in zip(class_names, chosen) if c)])


class ExportedClassifier(torch.nn.Module):
    """The deployable model: the loader's uint8 images in, class probabilities out.

    Input (B, S, S, 3) uint8 RGB, already resized to S x S (``datasets.image_transform``: bilinear,
    antialiased); normalised here with the ImageNet mean and std, as in training."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(datasets.IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(datasets.IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images):                                    # (B, S, S, 3) uint8
        x = images.permute(0, 3, 1, 2).float().div(255)
        return torch.sigmoid(self.model((x - self.mean) / self.std))   # (B, K) probabilities


def export_metadata(config, class_names):
    """What a user of the exported file needs besides the graph."""
    size = config["image_size"]
    return {"class_names": class_names, "image_size": size, "arch": config["arch"],
            "input": f"(B, {size}, {size}, 3) uint8 RGB",
            "preprocessing": f"convert to RGB; resize to {size} x {size} (bilinear, antialiased; no crop); "
                             f"the model divides by 255 and normalises with the ImageNet mean "
                             f"{list(datasets.IMAGENET_MEAN)} and std {list(datasets.IMAGENET_STD)} itself",
            "output": "(B, K) sigmoid probabilities, columns in the order of class_names",
            "load": "with torch.no_grad(): torch.export.load(path).module()(images)"}


def export(model, config, class_names, path):
    """torch.export the model with a dynamic batch size to ``path`` (.pt2); the metadata goes both
    into the archive (extra file metadata.json) and beside it (``path``.json)."""
    size = config["image_size"]
    wrapped = ExportedClassifier(model.cpu().eval()).eval()
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    program = torch.export.export(wrapped, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    metadata = json.dumps(export_metadata(config, class_names), indent=2)
    torch.export.save(program, path, extra_files={"metadata.json": metadata})
    with open(f"{path}.json", "w") as f:
        f.write(metadata)
    print(f"wrote {path} and {path}.json ({len(class_names)} classes, input {size} x {size})")


def get_args_parser():
    p = argparse.ArgumentParser("Predict with a trained run, or export it",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", help="a run folder of main.py (config.json, class_names.json, best.pt)")
    p.add_argument("images", nargs="*", help="image files, folders (recursive) or .txt lists of paths")
    p.add_argument("--out", default="predictions.csv", help="where the predictions go")
    p.add_argument("--format", default="csv", choices=("csv", "jsonl"))
    p.add_argument("--threshold", default="0.5",
                   help="a probability, or 'val_f1': per class, the threshold that maximised F1 on val "
                        "(saved by training in thresholds.json)")
    p.add_argument("--batch_size", type=int, default=64, help="images per forward pass")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes that read images")
    p.add_argument("--device", default=os.environ.get("LLM_DEVICE", "auto"), help="'auto', 'cpu', 'cuda', ...")
    p.add_argument("--on_error", default="skip", choices=("skip", "stop"),
                   help="an unreadable image: reported by path and left out, or stop the run")
    p.add_argument("--export", default=None, metavar="FILE.pt2",
                   help="instead of predicting, write the model with torch.export (metadata in FILE.pt2.json)")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        device = train.resolve_device(args.device)
        config, class_names, model = load_run(args.run_dir, device)
        if args.export:
            export(model, config, class_names, args.export)
            return 0
        if not args.images:
            raise UserError("give images to predict (files, folders or lists), or --export FILE")
        thresholds = load_thresholds(args.run_dir, args.threshold, class_names)
        paths = list_images(args.images)
        indices, logits, failures = predict_images(model, paths, config["image_size"], device, args.batch_size,
                                                   args.num_workers, args.on_error)
        write_predictions(args.out, args.format, [paths[i] for i in indices],
                          metrics.probabilities(logits), class_names, thresholds)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(indices)} images, {len(class_names)} classes"
          + (f"; {len(failures)} unreadable, skipped" if failures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
