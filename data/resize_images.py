"""A one-time pre-resized copy of a dataset's images, which the loader then reads instead of the originals.

    python data/resize_images.py --dataset openimages --image_size 224 [--data_dir DIR] [--num_workers 16]

At 224 px OpenImages' originals (typically 1024 x 768 JPEGs) cost far more to decode and resize than
the model costs to train on: an 8-GPU node would need more cores than it has. This writes, once,
every image of the dataset's formatted file sets exactly as the loader turns it into its square
input (``datasets.image_transform``: the same resize of the same decoded pixels), into
``<data_dir>/resized_<S>/<image path>.png``, and last ``complete.json``. From then on a run with
``--image_size S`` reads the copy (``datasets.load_splits``), whose pixels are **identical** to
resizing the originals: PNG is lossless and the loader's resize of an S x S image is the identity.
``--format jpeg`` trades that for a smaller copy (about a sixth of the PNG's bytes at 224 px) whose
pixels differ by JPEG's quantisation (docs/speed.md gives the measured difference).

Resumable: an image already in the copy is skipped, each file is written through a temporary file,
and ``complete.json`` is written only when every image is there.
"""
import argparse
import json
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait

import numpy as np
from PIL import Image
from tqdm import tqdm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
import config  # noqa: E402  (needs the path above)
import datasets  # noqa: E402
from errors import UserError  # noqa: E402

FORMATS = {"png": ".png", "jpeg": ".jpg"}


def image_names(data_dir):
    """{phase: image paths (memory-mapped)} of the dataset's formatted file sets."""
    names = {phase: np.load(datasets.images_path(data_dir, phase), mmap_mode="r")
             for phase in datasets.PHASES if os.path.isfile(datasets.images_path(data_dir, phase))}
    if not names:
        raise UserError(f"{data_dir} holds no formatted_*_images.npy: prepare the dataset first (data/README.md)")
    return names


def resize_one(source, target, image_size, file_format, quality):
    """The loader's (S, S, 3) input of ``source``, written to ``target`` (through a temporary file)."""
    try:
        with Image.open(source) as image:
            pixels = datasets.image_transform(image_size)(image.convert("RGB")).numpy()
    except (OSError, SyntaxError) as err:
        raise UserError(f"cannot read image {source}: {err}") from err
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = f"{target}.tmp{FORMATS[file_format]}"
    Image.fromarray(pixels).save(temporary, **({"quality": quality} if file_format == "jpeg" else {}))
    os.replace(temporary, target)


def _resize_chunk(args):
    sources, targets, image_size, file_format, quality = args
    for source, target in zip(sources, targets):
        resize_one(source, target, image_size, file_format, quality)
    return len(sources)


def run_bounded(fn, items, num_workers):
    """``fn`` of each item, on ``num_workers`` processes, with at most twice that many items taken from
    the iterator at once (``Executor.map`` would take them all: millions of paths)."""
    if num_workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(num_workers) as pool:
        pending = set()
        for item in items:
            pending.add(pool.submit(fn, item))
            if len(pending) >= 2 * num_workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        yield from (future.result() for future in as_completed(pending))


def make_copy(data_dir, dataset, image_size, file_format="png", quality=95, num_workers=1, chunk=256):
    """Write the copy (resumable) and its ``complete.json``; returns the copy's folder."""
    folder = os.path.join(data_dir, f"resized_{image_size}")
    root = os.path.join(data_dir, datasets.IMAGE_ROOTS[dataset])
    marker = os.path.join(folder, "complete.json")
    if os.path.isfile(marker):
        os.remove(marker)                   # rewritten below once every image is there again
    suffix, total = FORMATS[file_format], 0
    for phase, names in image_names(data_dir).items():
        # What is still to do, found by listing each folder of the copy once (millions of images).
        todo = np.flatnonzero(datasets.find_missing_images(datasets.ImagePaths(folder, names, np.arange(len(names)),
                                                                               suffix)))
        sources = datasets.ImagePaths(root, names, todo)
        targets = datasets.ImagePaths(folder, names, todo, suffix)
        print(f"{phase}: {len(names) - len(todo):,} of {len(names):,} images already in {folder}")

        def chunks():
            for start in range(0, len(todo), chunk):
                positions = range(start, min(start + chunk, len(todo)))
                yield [sources[j] for j in positions], [targets[j] for j in positions], image_size, file_format, quality
        with tqdm(total=len(todo), unit="img", desc=f"{phase}: resize to {image_size}", dynamic_ncols=True,
                  disable=None) as bar:
            for done in run_bounded(_resize_chunk, chunks(), num_workers):
                bar.update(done)
        total += len(names)
    with open(marker, "w") as f:
        json.dump({"image_size": image_size, "format": file_format, "suffix": suffix,
                   "quality": quality if file_format == "jpeg" else None, "num_images": total,
                   "source": os.path.abspath(root)}, f, indent=1)
    return folder


def main(argv=None):
    p = argparse.ArgumentParser("Write a pre-resized copy of a dataset's images, read by training instead of "
                                "the originals", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=tuple(datasets.IMAGE_ROOTS))
    p.add_argument("--data_dir", default=None, help="the formatted folder; default data/<dataset>")
    p.add_argument("--image_size", type=int, required=True, help="the --image_size of the runs that will read it")
    p.add_argument("--format", default="png", choices=tuple(FORMATS),
                   help="png: lossless, the loader's pixels exactly; jpeg: smaller, pixels off by JPEG's rounding")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (with --format jpeg)")
    p.add_argument("--num_workers", type=int, default=os.cpu_count(), help="processes that resize")
    args = p.parse_args(argv)
    try:
        if args.image_size <= 0:
            raise UserError("--image_size must be positive")
        folder = make_copy(config.dataset_dir(args.dataset, args.data_dir), args.dataset, args.image_size,
                           args.format, args.quality, args.num_workers)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}; runs with --image_size {args.image_size} read it instead of the originals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
