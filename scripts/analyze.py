"""The paper's analyses from finished run folders (SPEC section 8; the math is in analysis.py).

    python scripts/analyze.py memorization RUN       # Table 1 + Fig. 1 (needs --record_losses)
    python scripts/analyze.py precision RUN [RUN...]  # Fig. 4 (from log.jsonl)
    python scripts/analyze.py trajectories RUN        # Fig. 3 (needs --record_labels_for N)
    python scripts/analyze.py pointing RUN [RUN...]   # Table 4 + CAM overlays (best.pt, test boxes)

Tables are printed as Markdown; figures are written as PNG into --out_dir (default: the run folder,
or for several runs their common parent folder), except the pointing game's CAM overlays, which go
into each run's folder as pointing_cams.png.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import analysis  # noqa: E402  (after the repository is on the path)
import curves  # noqa: E402
import datasets  # noqa: E402
import methods  # noqa: E402
from errors import UserError  # noqa: E402
import models  # noqa: E402
import run_files  # noqa: E402

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_json(run_dir, name):
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: is {run_dir} a run folder (runs/<exp_name>)?")
    return run_files.read_json(run_dir, name)


def read_record(run_dir, name, flag):
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: train the run with {flag} to record it")
    return np.load(path, mmap_mode="r")


def train_labels(run_dir, need_truth=True):
    labels = read_record(run_dir, run_files.TRAIN_LABELS, "--record_losses or --record_labels_for")
    if need_truth and "labels_true" not in labels:
        raise UserError(f"{run_dir}: the training set has no ground truth, which this analysis needs")
    return labels


def method_name(config):
    """'Naive AN', 'LL-R (0.2)' (an LL scheme with its delta_rel), 'Full label', with ' LinearInit'
    where it applies: the registry's names (methods/)."""
    method = methods.get(config["mod_scheme"])
    if config["train_set_variant"] == "clean":
        name = "Full label"
    elif method.rate_scheme:
        name = f"{config['mod_scheme']} ({config['delta_rel']:g})"
    else:
        name = methods.display_name(config["mod_scheme"])
    return name + (" LinearInit" if config.get("train_mode") == "linear_init" else "")


def memorization(run_dir, out_dir):
    losses = read_record(run_dir, run_files.LOSS_HISTORY, "--record_losses")
    labels = train_labels(run_dir)
    table = analysis.memorization_table(analysis.highest_loss_epoch(losses), labels["labels_obs"],
                                        labels["labels_true"])
    print(f"Table 1 ({method_name(read_json(run_dir, run_files.CONFIG))}, {losses.shape[0]} epochs, "
          f"{run_dir}): in which epoch each training entry's loss is highest")
    print(analysis.format_memorization_table(table))
    path = os.path.join(out_dir, "loss_curves.png")
    analysis.plot_loss_curves(losses, labels["labels_obs"], labels["labels_true"], path)
    print(f"Fig. 1-style loss curves: {path}")


def precision(run_dirs, out_dir):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run_dir in run_dirs:
        records = run_files.read_log(run_dir)
        name = method_name(read_json(run_dir, run_files.CONFIG))
        print(f"{name} ({run_dir}): {analysis.modification_counts(records)}")
        drawn = curves.plot_precision(ax, records, name)
        if not drawn:
            print("  nothing was modified, or the truth is unknown; skipped")
        for label, (epochs, values) in drawn.items():
            print(f"  precision, {label} (%): " + ", ".join(f"{e}: {100 * v:.1f}" for e, v in zip(epochs, values)))
    ax.set(xlabel="epoch", title="Precision of modification")
    fig.tight_layout()
    path = os.path.join(out_dir, "modification_precision.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"Fig. 4-style plot: {path}")


def trajectories(run_dir, out_dir, max_images=6):
    states = read_record(run_dir, run_files.TRAJECTORIES, "--record_labels_for N")
    labels = train_labels(run_dir, need_truth=False)
    config = read_json(run_dir, run_files.CONFIG)
    names = datasets.load_class_names(config["data_dir"], states.shape[2])
    num_images = min(max_images, states.shape[1])
    colours = ["white", "tab:blue", "tab:orange", "lightgrey"]       # in the order of the state codes
    cmap = matplotlib.colors.ListedColormap(colours)
    fig, axes = plt.subplots(num_images, 2, figsize=(8, 2.6 * num_images), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2]})
    for i in range(num_images):
        truth = labels["labels_true"][i].astype(bool) if "labels_true" in labels else None
        # Only the classes that matter for this image: truly present, or ever positive or rejected.
        shown = np.nonzero((states[:, i] > 0).any(axis=0) | (truth if truth is not None else False))[0]
        image_ax, matrix_ax = axes[i]
        image_ax.imshow(plt.imread(labels["images"][i]))
        image_ax.set_title(f"training image {i}", fontsize=9)
        image_ax.axis("off")
        matrix = np.where(states[:, i, shown].T < 0, 0, states[:, i, shown].T)     # not run: blank
        matrix_ax.imshow(matrix, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, aspect="auto")
        matrix_ax.set_yticks(range(len(shown)), [names[c] + (" *" if truth is not None and truth[c] else "")
                                                 for c in shown], fontsize=8)
        matrix_ax.set_xticks(range(states.shape[0]), range(1, states.shape[0] + 1), fontsize=8)
        matrix_ax.set_xlabel("epoch (* = truly present)", fontsize=8)
    handles = [matplotlib.patches.Patch(facecolor=c, edgecolor="black", label=analysis.STATE_NAMES[s])
               for s, c in enumerate(colours)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"Label trajectories, {method_name(config)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    path = os.path.join(out_dir, "label_trajectories.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"Fig. 3-style label trajectories of {num_images} training images: {path}")


def test_set_with_boxes(config):
    data_dir = config["data_dir"]
    path = os.path.join(data_dir, "formatted_val_boxes.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: the pointing game needs the test boxes (VOC, COCO, demo)")
    with open(path) as f:
        boxes = json.load(f)
    images = datasets.load_formatted(data_dir, "val")[0]
    if len(boxes["boxes"]) != len(images) or len(boxes["sizes"]) != len(images):
        raise UserError(f"{path} has {len(boxes['boxes'])} images, the test set {len(images)}")
    root = os.path.join(data_dir, datasets.IMAGE_ROOTS[config["dataset"]])
    return np.array([os.path.join(root, p) for p in images]), boxes["boxes"], boxes["sizes"]


def pointing_one_run(run_dir, device, num_overlays):
    config = read_json(run_dir, run_files.CONFIG)
    paths, boxes, sizes = test_set_with_boxes(config)
    best = os.path.join(run_dir, run_files.BEST)
    if not os.path.isfile(best):
        raise UserError(f"{best} is missing: the run has not finished an epoch")
    state = torch.load(best, map_location="cpu", weights_only=True)["model"]
    model = models.build_from_config(config, state["head.weight"].shape[0], source=os.path.join(run_dir, run_files.CONFIG))
    if not model.has_feature_map:
        raise UserError(f"{run_dir}: {config['arch']} has no spatial feature map, so no class activation map "
                        f"and no pointing game (use a ResNet or convnext_tiny run)")
    models.load_weights(model, state, best)
    model.to(device).eval()
    size = config["image_size"]
    loader = torch.utils.data.DataLoader(
        datasets.ImageDataset(paths, datasets.image_transform(size)), batch_size=32)
    image_hits, overlays = [], []
    with torch.no_grad():
        for images, idx in loader:
            # The model's own CAM: under BoostLU the boosted one, whose average is the logit.
            for cam, i in zip(model.class_activation_map(datasets.normalize(images.to(device))), idx.tolist()):
                # Only the image's own classes are upsampled: all 80 of COCO at 448 px would take
                # 64 MB per image.
                classes = sorted({int(box[0]) for box in boxes[i]})
                maps = analysis.upsample_maps(cam[classes][None], size)[0]
                cams = dict(zip(classes, maps.cpu().numpy()))
                image_hits.append(analysis.pointing_game_image(cams, boxes[i], sizes[i]))
                if len(overlays) < num_overlays:
                    overlays.append((i, cams))
    num_classes = model.head.out_features
    per_class, mean = analysis.pointing_game_score(image_hits, num_classes)
    if overlays:
        save_overlays(overlays, paths, boxes, sizes, size, config, num_classes,
                      os.path.join(run_dir, "pointing_cams.png"))
    return method_name(config), per_class, mean


def save_overlays(overlays, paths, boxes, sizes, size, config, num_classes, path):
    """Each test image with the CAM of each class it contains, that class's boxes and the peak."""
    names = datasets.load_class_names(config["data_dir"], num_classes)
    panels = [(i, cam, c) for i, cam in overlays for c in sorted(cam)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6), squeeze=False)
    for ax, (i, cam, c) in zip(axes[0], panels):
        with Image.open(paths[i]) as image:
            ax.imshow(image.convert("RGB").resize((size, size)))
        ax.imshow(cam[c], cmap="jet", alpha=0.45)
        sx, sy = size / sizes[i][0], size / sizes[i][1]
        for k, x0, y0, x1, y1 in boxes[i]:
            if int(k) == c:
                ax.add_patch(matplotlib.patches.Rectangle((x0 * sx, y0 * sy), (x1 - x0) * sx, (y1 - y0) * sy,
                                                          fill=False, edgecolor="white", lw=1.5))
        row, col = analysis.peak_location(cam[c])
        hit = analysis.pointing_hit((row, col), [b[1:] for b in boxes[i] if int(b[0]) == c], sizes[i], size)
        ax.plot(col + 0.5, row + 0.5, marker="x", color="lime" if hit else "red", ms=9, mew=2)
        ax.set_title(f"test {i}: {names[c]}\n{'hit' if hit else 'miss'}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"CAM overlays: {path}")


def pointing(run_dirs, device, num_overlays):
    rows = []
    for run_dir in run_dirs:
        name, per_class, mean = pointing_one_run(run_dir, device, num_overlays)
        rows.append((name, run_dir, mean, per_class))
    print("Table 4: pointing game on the test set (hit rate per class, averaged over classes)")
    print("| method | run | pointing game (%) |\n|---|---|---|")
    for name, run_dir, mean, _ in rows:
        print(f"| {name} | {run_dir} | {100 * mean:.1f} |")
    config = read_json(run_dirs[0], run_files.CONFIG)
    names = datasets.load_class_names(config["data_dir"], len(rows[0][3]))
    print("\nPer class (%; '-' where the class is not in the test set)")
    print("| class | " + " | ".join(name for name, *_ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for c, class_name in enumerate(names):
        cells = ["-" if np.isnan(r[3][c]) else f"{100 * r[3][c]:.1f}" for r in rows]
        print(f"| {class_name} | " + " | ".join(cells) + " |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("analysis", choices=("memorization", "precision", "trajectories", "pointing"))
    p.add_argument("run_dirs", nargs="+", help="run folders (runs/<exp_name>)")
    p.add_argument("--out_dir", default=None,
                   help="where PNGs go; default the run folder, or the common parent of several")
    p.add_argument("--device", default=os.environ.get("LLM_DEVICE", "cpu"), help="pointing game: 'cpu', 'cuda'")
    p.add_argument("--overlays", type=int, default=3, help="pointing game: test images drawn with their CAMs")
    args = p.parse_args(argv)
    out_dir = args.out_dir or (args.run_dirs[0] if len(args.run_dirs) == 1
                               else os.path.commonpath([os.path.abspath(d) for d in args.run_dirs]))
    try:
        os.makedirs(out_dir, exist_ok=True)
        if args.analysis in ("memorization", "trajectories") and len(args.run_dirs) > 1:
            raise UserError(f"{args.analysis} takes one run folder")
        if args.analysis == "memorization":
            memorization(args.run_dirs[0], out_dir)
        elif args.analysis == "trajectories":
            trajectories(args.run_dirs[0], out_dir)
        elif args.analysis == "precision":
            precision(args.run_dirs, out_dir)
        else:
            pointing(args.run_dirs, torch.device(args.device), args.overlays)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
