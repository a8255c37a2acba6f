"""predict.py, evaluate.py and the export on a run trained for one epoch on the tiny demo."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

import datasets
import evaluate
import main
import predict
import train
from config import Config


@pytest.fixture(scope="module")
def run_dir(demo_dir, tiny, tmp_path_factory):
    save = tmp_path_factory.mktemp("runs")
    assert main.main(["--dataset", "demo", "--data_dir", demo_dir, "--save_path", str(save), "--exp_name", "r",
                      "--num_epochs", "1", *tiny]) == 0
    return os.path.join(save, "r")


@pytest.fixture(scope="module")
def test_split_logits(run_dir):
    """What training's evaluation computes for the test images: train.predict on its loader."""
    config, _, model = predict.load_run(run_dir)
    cfg = Config(**{f.name: config[f.name] for f in dataclasses.fields(Config)})
    split = datasets.load_splits(cfg)["test"]
    return split, train.predict(model, train.make_loader(split, cfg, train=False), "cpu")


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_results_hold_per_class_ap_and_metrics(run_dir):
    results = json.load(open(os.path.join(run_dir, "results.json")))
    names = json.load(open(os.path.join(run_dir, "class_names.json")))
    assert list(results["test_per_class_ap"]) == names and len(names) == 12
    assert np.mean(list(results["test_per_class_ap"].values())) == pytest.approx(results["test_map"], abs=1e-4)
    for key in ("test_at_0.5", "test_at_val_f1"):
        assert {"CP", "CR", "CF1", "OP", "OR", "OF1"} <= set(results[key])
        assert list(results[key]["per_class"]) == names
    thresholds = json.load(open(os.path.join(run_dir, "thresholds.json")))["val_f1"]
    assert results["test_at_val_f1"]["threshold"] == thresholds and list(thresholds) == names


def test_predict_matches_evaluation_scores(run_dir, test_split_logits, tmp_path, capsys):
    split, logits = test_split_logits
    listing = tmp_path / "list.txt"                          # a list file, relative to its folder
    listing.write_text("\n".join(os.path.relpath(p, tmp_path) for p in split.images[:5]) + "\n")
    out = tmp_path / "p.csv"
    assert predict.main([run_dir, str(listing), *split.images[5:], "--out", str(out), "--batch_size", "7"]) == 0
    header, rows = read_csv(out)
    names = json.load(open(os.path.join(run_dir, "class_names.json")))
    assert header == ["path", *names, "predicted"]
    assert [os.path.realpath(r[0]) for r in rows] == [os.path.realpath(p) for p in split.images]
    probs = np.array([[float(v) for v in r[1:-1]] for r in rows])
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits.astype(np.float64))), atol=2e-6)
    assert [r[-1] for r in rows] == [";".join(n for n, p in zip(names, row) if p >= 0.5) for row in probs]


def test_predict_val_f1_thresholds_jsonl_and_folders(run_dir, demo_dir, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    source = os.path.join(demo_dir, "images")
    for i, name in enumerate(sorted(os.listdir(source))[:4]):
        os.symlink(os.path.join(source, name), folder / ("sub" if i % 2 else "") / name)
    out = tmp_path / "p.jsonl"
    assert predict.main([run_dir, str(folder), "--out", str(out), "--format", "jsonl", "--threshold", "val_f1"]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 4
    thresholds = json.load(open(os.path.join(run_dir, "thresholds.json")))["val_f1"]
    for row in rows:
        assert row["predicted"] == [n for n, p in row["scores"].items() if p >= thresholds[n]]


def test_unreadable_image_is_skipped_or_stops(run_dir, demo_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = os.path.join(demo_dir, "images", "val_00000.png")
    out = tmp_path / "p.csv"
    assert predict.main([run_dir, good, str(broken), "--out", str(out)]) == 0
    assert f"skipped {broken}" in capsys.readouterr().err
    assert [r[0] for r in read_csv(out)[1]] == [good]
    assert predict.main([run_dir, good, str(broken), "--out", str(out), "--on_error", "stop"]) == 2
    assert f"cannot read image {broken}" in capsys.readouterr().err


def test_export_gives_the_run_model_scores(run_dir, test_split_logits, tmp_path):
    split, logits = test_split_logits
    path = str(tmp_path / "model.pt2")
    assert predict.main([run_dir, "--export", path]) == 0
    exported = torch.export.load(path).module()
    config = json.load(open(os.path.join(run_dir, "config.json")))
    transform = datasets.image_transform(config["image_size"])
    images = torch.stack([datasets.ImageDataset(split.images, transform)[i][0] for i in range(9)])   # (9, S, S, 3)
    with torch.no_grad():
        scores = exported(images).numpy()
    np.testing.assert_allclose(scores, torch.sigmoid(torch.from_numpy(logits[:9])).numpy(),
                               atol=1e-5)
    metadata = json.load(open(path + ".json"))
    assert metadata["class_names"] == json.load(open(os.path.join(run_dir, "class_names.json")))
    assert metadata["image_size"] == config["image_size"]


def test_evaluate_cli_recomputes_the_test_metrics(run_dir, demo_dir, capsys):
    results = json.load(open(os.path.join(run_dir, "results.json")))
    result = evaluate.evaluate_run(run_dir, "test", data_dir=demo_dir)
    assert result["map"] == pytest.approx(results["test_map"], abs=1e-4)
    assert result["OF1"] == pytest.approx(results["test_at_0.5"]["OF1"], abs=1e-6)
    assert evaluate.main([run_dir, "--split", "val", "--threshold", "val_f1"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| val | mAP | CP | CR | CF1 | OP | OR | OF1 |") and "| red circle |" in table
