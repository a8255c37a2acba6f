"""A small image folder and labels.csv made from the demo dataset, to try the "Your own data" path
(README) on a fresh clone:

    python data/demo_csv.py OUT [--num_train 300 --num_test 100]

writes OUT/images/{train,test}/*.png and OUT/labels.csv in the long layout of data/README.md
(``path,positives,split``, every positive of each image listed, no negatives). The images come
from ``data.demo.ensure_demo_dataset``, generated in a temporary folder and moved.
"""
import argparse
import csv
import os
import shutil
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from data.demo import ensure_demo_dataset  # noqa: E402  (needs the path above)
from datasets import read_class_names  # noqa: E402


def write_demo_csv(out, num_train=300, num_test=100):
    """Write the images and OUT/labels.csv; returns the CSV's path."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ensure_demo_dataset(tmp, num_images={"train": num_train, "val": num_test})
        class_names = read_class_names(tmp)
        for phase, split in (("train", "train"), ("val", "test")):
            os.makedirs(os.path.join(out, "images", split), exist_ok=True)
            names = np.load(os.path.join(tmp, f"formatted_{phase}_images.npy"))
            labels = np.load(os.path.join(tmp, f"formatted_{phase}_labels.npy"))
            for name, row in zip(names, labels):
                path = f"{split}/{name}"
                shutil.move(os.path.join(tmp, "images", name), os.path.join(out, "images", path))
                rows.append([path, ";".join(class_names[k] for k in np.flatnonzero(row)), split])
    csv_path = os.path.join(out, "labels.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "positives", "split"])
        writer.writerows(rows)
    print(f"wrote {csv_path}: {num_train} train and {num_test} test images under {os.path.join(out, 'images')}")
    return csv_path


def main(argv=None):
    p = argparse.ArgumentParser("Write demo images and a labels.csv", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", help="folder to write images/ and labels.csv into")
    p.add_argument("--num_train", type=int, default=300)
    p.add_argument("--num_test", type=int, default=100)
    args = p.parse_args(argv)
    write_demo_csv(args.out, args.num_train, args.num_test)


if __name__ == "__main__":
    main()
