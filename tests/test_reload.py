"""A run reloads as it trained (issue 18): predict.py, evaluate.py and the analyses build the model
from the run's config.json (models.build_from_config), BoostLU's boosted CAM included; a config or
weights that do not describe the model are refused."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch

import datasets
import evaluate
import main
import models
import predict
import train
from config import build_config, get_args_parser


@pytest.fixture(scope="module")
def boostlu_run(demo_dir, tiny, tmp_path_factory):
    save = tmp_path_factory.mktemp("runs")
    argv = ["--dataset", "demo", "--data_dir", demo_dir, "--save_path", str(save), "--exp_name", "b",
            "--num_epochs", "1", "--boostlu_alpha", "5", *tiny, "--image_size", "64", "--lr", "1e-5"]   # a 2 x 2 CAM, logits near 0
    assert main.main(argv) == 0
    return os.path.join(save, "b"), build_config(get_args_parser().parse_args(argv))


def test_boostlu_run_reevaluates_to_its_test_map(boostlu_run):
    run_dir, _ = boostlu_run
    results = json.load(open(os.path.join(run_dir, "results.json")))
    assert evaluate.evaluate_run(run_dir, "test")["map"] == pytest.approx(results["test_map"], abs=1e-6)


def test_predict_gives_the_boosted_model_probabilities(boostlu_run, tmp_path):
    run_dir, cfg = boostlu_run
    split = datasets.load_splits(cfg)["test"]
    loader = train.make_loader(split, cfg, train=False)
    weights = torch.load(os.path.join(run_dir, "best.pt"), weights_only=True)["model"]
    boosted = models.MultiLabelNet("resnet18", 12, boostlu_alpha=5.0)    # built by hand, not from config.json
    boosted.load_state_dict(weights)
    boosted_logits = train.predict(boosted, loader, "cpu")
    expected = 1 / (1 + np.exp(-boosted_logits.astype(np.float64)))
    plain = models.MultiLabelNet("resnet18", 12)                          # what the old loader rebuilt
    plain.load_state_dict(weights)
    assert np.abs(train.predict(plain, loader, "cpu") - boosted_logits).max() > 1e-3

    out = tmp_path / "p.csv"
    assert predict.main([run_dir, *split.images, "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.reader(f))[1:]
    np.testing.assert_allclose([[float(v) for v in r[1:-1]] for r in rows], expected, atol=2e-6)


def test_a_config_without_a_model_field_is_refused(boostlu_run, tmp_path, capsys):
    run_dir, _ = boostlu_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["boostlu_alpha"]
    (copy / "config.json").write_text(json.dumps(config))
    assert predict.main([str(copy), "--export", str(tmp_path / "m.pt2")]) == 2
    assert "boostlu_alpha" in capsys.readouterr().err
    assert evaluate.main([str(copy)]) == 2


def test_weights_that_do_not_fit_the_config_are_refused(boostlu_run, tmp_path, capsys):
    run_dir, _ = boostlu_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    best = torch.load(copy / "best.pt", weights_only=True)
    best["model"]["head.weight"] = best["model"]["head.weight"][:, :5]    # another feature width
    del best["model"]["head.bias"]
    torch.save(best, copy / "best.pt")
    assert predict.main([str(copy), "--export", str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert "head.bias" in err and "head.weight" in err
