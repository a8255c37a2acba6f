"""Where a sweep stands: every task as done / running / queued / failed / interrupted / not started,
with its SLURM job id or process, and for a failed one the last lines of its launch.log.

The tasks come from the script itself (its --status flag) or from ``sweep.json``, which every
launch writes into the runs' parent folder (``python scripts/experiments.py status RUNS_DIR``).
"""
import json
import os

import claims
import run_process
import tasks
import run_files
from run_files import LAST, LOG

MANIFEST = "sweep.json"
ORDER = ("done", "running", "queued", "failed", "interrupted", "not started")


def write_manifest(sweep, save_path):
    """Add the tasks of this launch to <save_path>/sweep.json (the names and result files of every
    launch into that folder, in order)."""
    path = os.path.join(save_path, MANIFEST)
    known = read_manifest(save_path)
    known.update({task.name: task.result for task in sweep})
    os.makedirs(save_path, exist_ok=True)
    run_files.save({"tasks": [{"name": n, "result": r} for n, r in known.items()]}, path)


def read_manifest(save_path):
    """{task name: result file} from <save_path>/sweep.json ({} if there is none)."""
    try:
        with open(os.path.join(save_path, MANIFEST)) as f:
            return {entry["name"]: entry["result"] for entry in json.load(f)["tasks"]}
    except FileNotFoundError:
        return {}


def manifest_tasks(save_path):
    """The tasks of <save_path>/sweep.json, as much of them as the status needs."""
    return [tasks.Task(name, os.path.join(save_path, name), None, result)
            for name, result in read_manifest(save_path).items()]


def epochs_logged(folder):
    try:
        with open(os.path.join(folder, LOG)) as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def task_status(task, held):
    """(state, detail) of one task; ``held``: claims.survey of the sweep's folders."""
    if task.done():
        return "done", task.outcome()
    claim = held.get(task.folder)
    logged = os.path.exists(os.path.join(task.folder, LOG))
    progress = f"{epochs_logged(task.folder)} epochs logged" if logged else ""
    if claim is not None and claim.alive:
        return claim.state, ", ".join(filter(None, [claim.owner, progress]))
    if claim is not None:
        return "failed", ", ".join(filter(None, [claim.state, claim.owner, progress]))
    if os.path.exists(os.path.join(task.folder, LAST)):
        return "interrupted", ", ".join(filter(None, ["resumes at the next launch", progress]))
    return "not started", ""


def report(sweep, save_path):
    """Print the status of every task of ``sweep`` (``tasks.Task``); returns 0."""
    held = claims.survey([task.folder for task in sweep])
    rows = [(task, *task_status(task, held)) for task in sweep]
    counts = [f"{sum(state == s for _, state, _ in rows)} {s}" for s in ORDER]
    print(f"{len(rows)} tasks in {save_path}: {', '.join(counts)}")
    for task, state, detail in rows:
        print(f"{state:12} {task.name}" + (f"  ({detail})" if detail else ""))
        if state == "failed":
            print("\n".join(f"    | {line}" for line in run_process.tail(task.folder).splitlines()))
    return 0
