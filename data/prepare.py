"""One-time preparation of the real datasets into the formatted layout (data/README.md).

    python data/prepare.py --dataset pascal --root /path/to/raw [--out data/pascal]

Each ``format_<dataset>(root)`` (one module per format: data/voc.py, coco.py, nuswide.py, cub.py,
openimages.py) reads an official release and returns the class names and, per official split
("train", and "val" = the official val/test set, our test set), the image paths and labels;
``prepare()`` checks that every image exists, makes the observed labels and writes the files
(data/formatted.py). ``--dataset csv`` formats your own images and CSV instead (data/csv_import.py).
Facts about the releases follow Cole et al.'s formatting scripts
(elijahcole/single-positive-multi-label, preproc/) so that row orders, hence the simulated
single-positive labels, match theirs.
"""
import argparse
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
# Needs the path above; names the tests and callers use are re-exported here.
from data.coco import format_coco  # noqa: E402
from data.csv_import import prepare_csv  # noqa: E402
from data.cub import format_cub  # noqa: E402
from data.formatted import (PreparationError, check_images, hint, link_image_folders,  # noqa: E402,F401
                            simulate_observed, write_class_names, write_split)
from data.nuswide import format_nuswide  # noqa: E402
from data.openimages import (format_openimages, openimages_class_groups,  # noqa: E402,F401
                             resolve_openimages_labels)
from data.voc import format_pascal  # noqa: E402
from datasets import IMAGE_ROOTS, RELEASES  # noqa: E402

FORMATTERS = {"pascal": format_pascal, "coco": format_coco, "nuswide": format_nuswide,
              "cub": format_cub, "openimages": format_openimages}


def prepare(dataset, root, out, num_pos=1, num_neg=0, seed=1200, drop_missing_images=False):
    """Format ``dataset`` from the raw release in ``root`` into ``out`` (data/README.md)."""
    if not os.path.isdir(root):
        raise PreparationError(f"--root {root} is not a folder: {hint(dataset)}")
    formatted = FORMATTERS[dataset](root)
    class_names, splits = formatted["class_names"], formatted["splits"]

    # Every check passes before anything is written.
    check_images(dataset, root, splits, drop_missing_images)
    observed = simulate_observed(dataset, root, splits, num_pos, num_neg, seed)

    write_class_names(out, class_names)
    for phase, split in splits.items():
        write_split(out, root, phase, split, observed.get(phase), len(class_names))
    if dataset == "openimages":
        groups = openimages_class_groups(splits["train"]["entries"][1], len(class_names))
        np.save(os.path.join(out, "class_groups.npy"), groups)
    link_image_folders(dataset, root, out)
    print(f"wrote {dataset} to {out}; images under {os.path.join(out, IMAGE_ROOTS[dataset])}")


def get_args_parser():
    p = argparse.ArgumentParser(
        "Format a raw dataset release into the layout of data/README.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=(*RELEASES, "csv"),
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
                seed=args.seed, drop_missing_images=args.drop_missing_images)
    except PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
