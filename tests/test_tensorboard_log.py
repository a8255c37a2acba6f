"""tensorboard_log.py: every numeric field of a run's per-epoch records as TensorBoard scalars, read
back from the events file and compared with log.jsonl, once per epoch even after a resume."""
import json
import shutil

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tensorboard_log
from helpers import interrupt_then_resume


def read_events(run_dir):
    """{tag: [(step, value), ...]} of the run folder's scalar events."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_every_numeric_field_becomes_a_scalar(tmp_path):
    """A field no code knows of (LL-Cp's num_written, say) flows through; flags, texts and None do not."""
    records = [{"epoch": 1, "train_loss": 0.5, "num_written": 3, "phase": "linear", "early_stop": False,
                "modification_precision": None},
               {"epoch": 2, "train_loss": 0.25, "num_written": 7, "phase": "fine_tune", "early_stop": True,
                "modification_precision": 0.75}]
    events = tensorboard_log.EpochEvents(str(tmp_path), records[:1])    # the history of a resumed run
    events.add(records[1])
    events.close()
    assert read_events(tmp_path) == {"train_loss": [(1, 0.5), (2, 0.25)], "num_written": [(1, 3.0), (2, 7.0)],
                                     "modification_precision": [(2, 0.75)]}


def test_a_resumed_run_has_the_numbers_of_its_log_once_per_epoch(demo_dir, demo_args, tmp_path, monkeypatch):
    data = tmp_path / "demo"
    shutil.copytree(demo_dir, data)
    np.save(data / "class_groups.npy", np.array([0] * 4 + [1] * 8))      # 12 classes in 2 groups
    args = [*demo_args("--mod_scheme", "LL-R", "--delta_rel", "5", "--num_epochs", "3"), "--data_dir", str(data)]
    interrupt_then_resume(monkeypatch, args, "run", lambda calls, a: calls == 3)     # Ctrl-C in epoch 3
    run_dir = tmp_path / "run"
    log = [json.loads(line) for line in open(run_dir / "log.jsonl")]
    events = read_events(run_dir)
    numeric = {k for r in log for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(events) == numeric - {"epoch"}
    for tag, points in events.items():                                 # float32 in the events file
        assert points == [(r["epoch"], np.float32(r[tag])) for r in log if r.get(tag) is not None], tag
    assert [step for step, _ in events["val_map"]] == [1, 2, 3]
    # The tiny flags' --lr 1e-3, the head at 10x under the LL protocol; the groups' mAPs average to the mAP.
    assert all(r["lr_backbone"] == 1e-3 and r["lr_head"] == 1e-2 for r in log)
    assert all(abs((4 * r["val_map_G1"] + 8 * r["val_map_G2"]) / 12 - r["val_map"]) < 1e-9 for r in log)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
