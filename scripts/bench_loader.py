"""Images/s of the training loader on one core, from the original JPEGs or from the pre-resized copy.

    python scripts/bench_loader.py --jpegs 1024x768 --image_size 224 --source originals
    python scripts/bench_loader.py --jpegs 1024x768 --image_size 224 --source png    # data/resize_images.py's copy

Generates ``--images`` JPEGs of the given size once (scripts/bench.py's generator: as costly to decode
as photographs of that size) and, for ``--source png`` or ``jpeg``, their pre-resized copy
(data/resize_images.py, made once, not timed); then reads every image through the training
pipeline (decode, the square resize, the sampler's flip: ``datasets.ImageDataset``) in this one
process with one thread, twice, and prints the images/s of the second pass (``--compare``: and how
the copy's pixels differ from the originals'). Time the whole command with /usr/bin/time to compare
sources as processes.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (needs the paths above)
import datasets  # noqa: E402
from config import build_config, get_args_parser  # noqa: E402
from data import resize_images  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jpegs", default="1024x768", metavar="WxH", help="size of the generated JPEGs")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--source", default="originals", choices=("originals", *resize_images.FORMATS))
    p.add_argument("--compare", action="store_true",
                   help="also measure how the copy's pixels differ from resizing the originals (not timed)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data_dir = bench.write_jpeg_dataset(tuple(int(v) for v in args.jpegs.split("x")), args.images)
    marker = os.path.join(data_dir, f"resized_{args.image_size}", "complete.json")
    if os.path.isfile(marker):                  # the copy is made once per format; moved aside when not read
        os.remove(marker)
    if args.source != "originals":
        resize_images.make_copy(data_dir, "custom", args.image_size, args.source, num_workers=1)
    cfg = build_config(get_args_parser().parse_args(["--dataset", "custom", "--data_dir", data_dir,
                                                     "--image_size", str(args.image_size)]))
    split = datasets.load_splits(cfg)["test"]
    dataset = datasets.ImageDataset(split.paths, datasets.image_transform(args.image_size))
    for _ in range(2):                          # the first pass warms the page cache
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[(i, i % 2 == 0)]
        seconds = time.perf_counter() - start
    print(f"{args.source}: {len(dataset) / seconds:.1f} images/s on one core ({len(dataset)} images of "
          f"{args.jpegs} to {args.image_size} px; {split.paths[0]})")
    if args.compare and args.source != "originals":      # how the copy's pixels differ from the originals' resize
        originals = datasets.ImageDataset(datasets.ImagePaths(os.path.join(data_dir, ""), split.paths.names,
                                                              split.paths.rows), dataset.transform)
        differences = torch.cat([(dataset[i][0].int() - originals[i][0].int()).abs().flatten()
                                 for i in range(len(dataset))])
        print(f"pixels that differ from the originals' resize: {100 * (differences > 0).float().mean():.2f} %, "
              f"mean |difference| {differences.float().mean():.3f}, max {differences.max()} (of 255)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
