"""Evaluate a run's best.pt again: mAP, per-class AP and the multi-label metrics, as Markdown.

    python evaluate.py RUN_DIR [--split val|test] [--data_dir DIR] [--threshold 0.5 | val_f1]

``--data_dir`` evaluates on another prepared dataset with the same classes (same number; the
names are checked where both folders have them). The split is the run's own (its --val_frac and
--split_seed); scores are fp32. Definitions of the metrics: metrics.py.
"""
import argparse
import dataclasses
import os
import sys

import datasets
import metrics
import predict
import train
from config import Config
from errors import UserError


def evaluate_run(run_dir, split="test", data_dir=None, threshold="0.5", device="cpu", dataset=None):
    """``metrics.report`` of the run's best model on one split of its dataset, or of
    ``data_dir`` (whose layout is that of ``dataset``, by default the run's)."""
    config, class_names, model = predict.load_run(run_dir, device)
    fields = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(**{k: v for k, v in config.items() if k in fields})
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data_dir=data_dir, dataset=dataset or cfg.dataset)
    splits = datasets.load_splits(cfg)
    chosen = splits[split]
    if chosen.labels_obs.num_classes != len(class_names):
        raise UserError(f"{cfg.data_dir} has {chosen.labels_obs.num_classes} classes, the run {len(class_names)}")
    names = datasets.read_class_names(cfg.data_dir)
    if names is not None and names != class_names:
        raise UserError(f"{cfg.data_dir} names other classes (or another order) in its {datasets.CLASS_NAMES_FILE} "
                        f"than the run's")
    logits = train.predict_split(model, train.make_loader(chosen, cfg, train=False), chosen, device, f"{split}")
    return metrics.split_report(chosen, logits, class_names,
                                           predict.load_thresholds(run_dir, threshold, class_names))


def markdown(result, split):
    """The overall metrics, then one row per class."""
    overall = ["mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"]
    values = [result["map"], *(result[k] for k in overall[1:])]
    lines = [f"| {split} | " + " | ".join(overall) + " |", "|---" * (len(overall) + 1) + "|",
             "| all | " + " | ".join(f"{v:.2f}" for v in values) + " |", "",
             "| class | AP | precision | recall | F1 | threshold |", "|---|---|---|---|---|---|"]
    for name, ap in result["per_class_ap"].items():
        m = result["per_class"][name]
        t = result["threshold"] if isinstance(result["threshold"], float) else result["threshold"][name]
        lines.append(f"| {name} | {'-' if ap is None else f'{ap:.2f}'} | {m['precision']:.2f} | "
                     f"{m['recall']:.2f} | {m['f1']:.2f} | {t:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser("Evaluate a run's best model", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--data_dir", default=None, help="another prepared dataset with the run's classes")
    p.add_argument("--dataset", default=None, choices=tuple(datasets.IMAGE_ROOTS),
                   help="with --data_dir: the layout of that folder (where its images lie); default the run's")
    p.add_argument("--threshold", default="0.5", help="a probability, or 'val_f1' (the run's thresholds.json)")
    p.add_argument("--device", default=os.environ.get("LLM_DEVICE", "auto"))
    args = p.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.split, args.data_dir, args.threshold,
                              train.resolve_device(args.device), args.dataset)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(result, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
