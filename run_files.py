"""The files of a run folder (docs/run_folder.md): their names, in one place, the one atomic write
that every file which must never be seen half written goes through, and their readers."""
import json
import os

import torch

CONFIG = "config.json"          # the run's settings (config.Config)
GIT = "git.json"                # the commit that ran it, and whether the tree was dirty
CLASS_NAMES = "class_names.json"
LOG = "log.jsonl"               # one JSON line per epoch
LAST = "last.pt"                # everything to resume
BEST = "best.pt"                # the best epoch's weights
BEST_LINEAR = "best_linear.pt"  # the best epoch of Cole et al.'s separate linear phase
RESULTS = "results.json"        # written last: the run is finished
THRESHOLDS = "thresholds.json"  # the per-class thresholds best on val (predict.py --threshold val_f1)
CURVES = "curves.png"
# The launchers' (scripts/claims.py, scripts/run_process.py).
CLAIM = "claim.json"            # which launcher owns the run
LAUNCH_LOG = "launch.log"       # the stdout and stderr of every process that ran it
# The analyses' records (analysis.py).
TRAIN_LABELS, LOSS_HISTORY, TRAJECTORIES = "train_labels.npz", "loss_history.npy", "label_trajectories.npy"


def write_atomic(path, write):
    """Write ``path`` through a temporary file and a rename, so that a kill at any moment leaves the
    previous complete file or the new one, never a part: ``write`` gets the open binary file."""
    with open(f"{path}.tmp", "wb") as f:
        write(f)
    os.replace(f"{path}.tmp", path)


def save(obj, path):
    """``obj`` as JSON (a .json path) or as a torch file, atomically."""
    if path.endswith(".json"):
        write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))
    else:
        write_atomic(path, lambda f: torch.save(obj, f))


def read_json(run_dir, name):
    with open(os.path.join(run_dir, name)) as f:
        return json.load(f)


def read_log(run_dir):
    """The per-epoch records of the run's log.jsonl (blank lines skipped)."""
    with open(os.path.join(run_dir, LOG)) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished(run_dir):
    return os.path.exists(os.path.join(run_dir, RESULTS))
