"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""
import datetime
import json
import os
import subprocess
import sys
import types

import pytest
import torch

import main
import methods
import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The demo Table 2's Naive AN and LL-R rows, seed 0, with tiny flags (passed on to main.py after the
# demo's): seconds per run.
SWEEP_FLAGS = ["--demo", "--methods", "AN", "LL-R", "--seeds", "1", "--weights", "none", "--image_size", "32",
               "--num_workers", "0", "--num_epochs", "3"]


def run_script(script, *args):
    """Run scripts/<script> as a user would; the finished process (its output in .stdout). With one
    torch thread, which its runs inherit (SLURM jobs too): a run's numbers depend on its thread count,
    so every launcher's runs must have the same, and two runs at once on a 2-core machine each with
    2 threads would spend their time waiting on each other's."""
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def read_log(run_dir):
    """A run's log.jsonl records without their wall-clock times, for comparing runs."""
    records = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
    for r in records:
        r.pop("time_s")
    return records


def script_evaluation(monkeypatch, val_maps, tested, test_map=42.0):
    """Scripts a run's evaluation: each epoch's val mAP from ``val_maps`` in turn (train.evaluate),
    ``test_map`` as the test mAP at the end (train.scores_metrics). The end's real test predictions
    (train.predict_split on "test") append the head's bias (the weights tested) to ``tested``."""
    val_maps = iter(val_maps)
    real_predict_split = train.predict_split

    def evaluate(model, loader, split, device, desc="eval", class_groups=None, amp="none",
                 skip_without_positive=False):
        return {"map": next(val_maps)}

    def predict_split(model, loader, split, device, desc="eval", amp="none"):
        if desc == "test":
            tested.append(model.head.bias.detach().clone())
        return real_predict_split(model, loader, split, device, desc, amp)

    def scores_metrics(scores, split, device, desc="eval", class_groups=None, skip_without_positive=False):
        assert desc == "test", "the val mAP of each epoch comes from train.evaluate"
        return {"map": test_map}

    monkeypatch.setattr(train, "evaluate", evaluate)
    monkeypatch.setattr(train, "predict_split", predict_split)
    monkeypatch.setattr(train, "scores_metrics", scores_metrics)


def interrupt(monkeypatch, args, exp_name, stop):
    """Runs main.main(args) as ``exp_name`` until ``stop(calls, a)`` (calls: how many epochs
    train.train_one_epoch has begun, a: its arguments) says to press Ctrl-C."""
    real_train_one_epoch = train.train_one_epoch
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if stop(len(calls), a):
            raise KeyboardInterrupt
        return real_train_one_epoch(*a, **kw)

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main.main([*args, "--exp_name", exp_name])
    monkeypatch.setattr(train, "train_one_epoch", real_train_one_epoch)


def interrupt_then_resume(monkeypatch, args, exp_name, stop):
    """``interrupt``, then resume the run to the end (which must exit 0)."""
    interrupt(monkeypatch, args, exp_name, stop)
    assert main.main([*args, "--exp_name", exp_name, "--resume"]) == 0


def method_loss(name, logits, labels, epoch, state=None, delta_rel=0.0, options=None, **cfg):
    """A registered method's loss (methods/) on a batch, as the training loop calls it: (loss, modified).
    The config holds what losses read: ``delta_rel``, ``R0``, ``delta_abs``, ``expected_num_pos`` and the
    method's flags (their defaults, updated by ``options``)."""
    method = methods.get(name)
    flags = {flag.name: flag.default_for("demo") for flag in method.flags}
    config = types.SimpleNamespace(**{"delta_rel": delta_rel, "R0": None, "delta_abs": None, "expected_num_pos": None,
                                      "method_options": {**flags, **(options or {})}, **cfg})
    return method.loss(torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(labels), methods.Batch(config, epoch, state))


def run_numbers(run_dir):
    """What a run computed, for comparing runs to the last digit: its log.jsonl records and its
    results.json, without wall-clock times."""
    results = json.loads(open(os.path.join(run_dir, "results.json")).read())
    results.pop("train_time_s")
    return read_log(run_dir), results


def frame_times(folder):
    """(start, end) of the last process that the folder's launch.log frames (its '=== <time> start'
    and '=== <time> exit' lines)."""
    lines = [line for line in open(os.path.join(folder, "launch.log")) if line.startswith("=== ")]
    start = [line for line in lines if " start on " in line][-1]
    end = [line for line in lines if " exit " in line][-1]
    return tuple(datetime.datetime.fromisoformat(line.split()[1]) for line in (start, end))
