"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""
import json
import os

import pytest

import main
import train


def read_log(run_dir):
    """A run's log.jsonl records without their wall-clock times, for comparing runs."""
    records = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
    for r in records:
        r.pop("time_s")
    return records


def scripted_evaluate(val_maps, tested, test_map=42.0):
    """A stand-in for train.evaluate: val mAPs from ``val_maps`` in turn, ``test_map`` on test,
    where it appends the head's bias (the weights tested) to ``tested``."""
    val_maps = iter(val_maps)

    def evaluate(model, loader, split, device, desc="eval", class_groups=None, amp="none",
                 skip_without_positive=False):
        if desc == "test":
            tested.append(model.head.bias.detach().clone())
            return {"map": test_map}
        return {"map": next(val_maps)}

    return evaluate


def interrupt_then_resume(monkeypatch, args, exp_name, stop):
    """Runs main.main(args) as ``exp_name`` until ``stop(calls, a)`` (calls: how many epochs
    train.train_one_epoch has begun, a: its arguments) says to press Ctrl-C, then resumes it to
    the end (which must exit 0)."""
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
    assert main.main([*args, "--exp_name", exp_name, "--resume"]) == 0
