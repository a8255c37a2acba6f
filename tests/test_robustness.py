"""Interrupted runs, bad inputs and partially labelled test sets."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import main
import models
import train
from data.demo import ensure_demo_dataset
from helpers import read_log, script_evaluation
from datasets import Split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "main.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_killed_run_resumes_to_the_same_result(tmp_path, tiny):
    data = str(tmp_path / "demo")
    ensure_demo_dataset(data, num_images={"train": 160, "val": 32})
    args = ["--dataset", "demo", "--data_dir", data, "--save_path", str(tmp_path), *tiny,
            "--mod_scheme", "LL-Cp", "--delta_rel", "3", "--num_epochs", "3"]
    reference = run_cli(args + ["--exp_name", "whole"])
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    killed_dir = tmp_path / "killed"
    victim = run_cli(args + ["--exp_name", "killed"])
    while not (killed_dir / "log.jsonl").exists() or len(read_log(killed_dir)) < 1:
        assert victim.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed_dir / "results.json").exists()

    again = run_cli(args + ["--exp_name", "killed"])              # refuses without --resume
    assert again.wait(timeout=60) == 2 and "--resume" in again.stderr.read()
    resumed = run_cli(args + ["--exp_name", "killed", "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert read_log(killed_dir) == read_log(tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    after = json.loads((killed_dir / "results.json").read_text())
    assert after["test_map"] == whole["test_map"] and after["best_epoch"] == whole["best_epoch"]
    # LL-Cp's written labels came through the kill: the same entries as the uninterrupted run's.
    written = [torch.load(tmp_path / name / "last.pt", weights_only=True)["corrections"]["keys"]
               for name in ("whole", "killed")]
    assert torch.equal(*written) and len(written[0]) == read_log(killed_dir)[-1]["num_written_total"] > 0




class Killed(Exception):
    """Stands for a kill at one moment of the run."""


def test_kill_between_last_and_best_checkpoint_resumes_consistently(demo_args, tmp_path, monkeypatch, capsys):
    """Epoch 2 improves (scripted val mAPs 50, 60, 55); the run dies after last.pt and before best.pt
    of epoch 2. On --resume, best.pt, last.pt and results.json agree on epoch 2, with its weights."""
    from config import build_config, get_args_parser
    tested = []
    script_evaluation(monkeypatch, [50.0, 60.0, 55.0], tested)

    real_save = train.save_atomic
    last_weights = {}

    def dying_save(obj, path):
        if path.endswith("best.pt") and obj["epoch"] == 2:
            raise Killed
        if path.endswith("last.pt"):
            last_weights[obj["state"]["epoch"]] = obj["model"]["head.bias"].clone()
        real_save(obj, path)

    monkeypatch.setattr(train, "save_atomic", dying_save)
    cfg = build_config(get_args_parser().parse_args(demo_args("--num_epochs", "3", "--exp_name", "k")))
    with pytest.raises(Killed):
        train.run(cfg)
    assert torch.load(tmp_path / "k" / "best.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train, "save_atomic", real_save)
    results = train.run(cfg, resume=True)
    assert "rewritten from last.pt" in capsys.readouterr().out
    best = torch.load(tmp_path / "k" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "k" / "last.pt", weights_only=True)
    assert results["best_epoch"] == best["epoch"] == last["state"]["best_epoch"] == 2
    assert json.loads((tmp_path / "k" / "results.json").read_text())["best_epoch"] == 2
    assert torch.equal(best["model"]["head.bias"], last_weights[2]) and torch.equal(tested[0], last_weights[2])


def test_best_checkpoint_of_another_epoch_is_refused(demo_args, tmp_path, capsys):
    assert main.main(demo_args("--num_epochs", "1", "--exp_name", "b")) == 0
    os.remove(tmp_path / "b" / "results.json")                   # pretend it was interrupted
    best = torch.load(tmp_path / "b" / "best.pt", weights_only=True)
    torch.save({**best, "epoch": 3}, tmp_path / "b" / "best.pt")  # not the epoch last.pt names
    assert main.main(demo_args("--num_epochs", "1", "--exp_name", "b", "--resume")) == 2
    assert "inconsistent" in capsys.readouterr().err
    assert not (tmp_path / "b" / "results.json").exists()


def test_resume_with_other_settings_is_refused(demo_args, tmp_path, capsys):
    assert main.main(demo_args("--num_epochs", "2", "--exp_name", "r", "--num_epochs", "1")) == 0
    os.remove(tmp_path / "r" / "results.json")                   # pretend it was interrupted
    assert main.main(demo_args("--num_epochs", "2", "--exp_name", "r", "--num_epochs", "1", "--lr", "0.1",
                         "--resume")) == 2
    assert "other settings" in capsys.readouterr().err


def test_weights_that_do_not_fit_the_arch(demo_args, tmp_path, capsys):
    path = tmp_path / "r18.pth"
    torch.save(models.build_model("resnet18", 3, "none").state_dict(), path)
    args = demo_args("--num_epochs", "2", "--weights", str(path), "--arch", "resnet50")
    assert main.main(args) == 2
    assert "do not fit the resnet50 backbone" in capsys.readouterr().err
    # The same file fits resnet18 (our checkpoint format, 'backbone.' keys).
    assert main.main(demo_args("--num_epochs", "2", "--weights", str(path), "--exp_name", "ok")) == 0


def test_non_finite_loss_stops_with_epoch_and_batch(demo_args, tmp_path, capsys):
    state = models.build_model("resnet18", 3, "none").state_dict()
    state["backbone.0.weight"].fill_(float("nan"))
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    assert main.main(demo_args("--num_epochs", "2", "--weights", str(path))) == 2
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "epoch 1, batch 1" in err


def test_unknown_dataset_or_scheme_exit_non_zero(demo_args, tmp_path):
    for bad in (["--dataset", "imagenet"], ["--mod_scheme", "LL-X"]):
        with pytest.raises(SystemExit) as exit_info:
            main.main(demo_args("--num_epochs", "2", *bad))
        assert exit_info.value.code == 2


def test_missing_image_is_named_before_training(tmp_path, tiny, capsys):
    # A custom dataset (the demo would regenerate itself): the demo's files with paths from the root.
    data = tmp_path / "broken"
    ensure_demo_dataset(str(data), num_images={"train": 20, "val": 8})
    for phase in ("train", "val"):
        path = data / f"formatted_{phase}_images.npy"
        np.save(path, np.array([f"images/{name}" for name in np.load(path)]))
    os.remove(data / "images" / "train_00003.png")
    assert main.main(["--dataset", "custom", "--data_dir", str(data), "--save_path", str(tmp_path),
                      *tiny, "--num_epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "train_00003.png" in err


def test_partial_test_labels_and_class_groups(monkeypatch):
    """OpenImages with --ap_without_positive skip: AP over annotated entries only, classes without an
    annotated positive skipped, mAP per group (the default rule: tests/test_metrics.py)."""
    rng = np.random.RandomState(0)
    obs = rng.choice([-1, 0, 1], size=(60, 4), p=[0.4, 0.4, 0.2]).astype(np.int8)
    obs[:, 3] = np.where(obs[:, 3] == 1, 0, obs[:, 3])            # class 3: no annotated positive
    scores = rng.randn(60, 4).astype(np.float32)
    # The scores of the known entries, in row-major order: what predict_split keeps of the (60, 4) scores.
    monkeypatch.setattr(train, "predict_split", lambda *args, **kwargs: scores[obs != 0])
    split = Split(np.array([""] * 60), None, train.labels.Labels(train.labels.DenseStore(obs), range(60)))
    result = train.evaluate(None, None, split, "cpu", class_groups=np.array([0, 0, 1, 1]), skip_without_positive=True)

    def ap(k):
        keep = obs[:, k] != 0
        return average_precision_score(obs[keep, k] == 1, scores[keep, k])
    assert result["map"] == pytest.approx(100 * np.mean([ap(0), ap(1), ap(2)]))
    assert result["map_G1"] == pytest.approx(100 * np.mean([ap(0), ap(1)]))
    assert result["map_G2"] == pytest.approx(100 * ap(2))


def test_missing_imagenet_weights_say_what_to_download(tmp_path, monkeypatch):
    import urllib.error
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))       # an empty cache

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(type(models.BACKBONES["resnet50"].weights["imagenet"]), "get_state_dict", offline)
    with pytest.raises(models.UserError) as err:
        models.build_model("resnet50", 20, "imagenet")
    message = str(err.value)
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert os.path.join(str(tmp_path / "hub"), "checkpoints", "resnet50-0676ba61.pth") in message
    assert "--weights" in message
