"""The benchmark runs end to end on tiny settings and writes what it printed."""
import json
import subprocess
import sys

import pytest


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--arch", "resnet18", "--image_size", "32",
                           "--bsize", "4", "--device", "cpu", "--steps", "1", "--warmup", "1",
                           "--map_sizes", "300x7,50x3", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["model_step"]["baseline_images_per_s"] > 0 and results["model_step"]["ours_images_per_s"] > 0
    assert 0 < results["ll_loss_share_of_step"] < 1
    assert set(results) >= {"map_300x7", "map_50x3"}
    assert "model step (images/s)" in done.stdout


@pytest.mark.parametrize("images", [["--dataset", "demo"], ["--jpegs", "48x40"]])
def test_bench_loader_and_full_step_rows(tmp_path, demo_dir, images):
    out = tmp_path / "bench.json"
    if images[0] == "--dataset":
        images = [*images, "--data_dir", demo_dir]
    done = subprocess.run([sys.executable, "scripts/bench.py", "--arch", "resnet18", "--image_size", "32",
                           "--bsize", "4", "--device", "cpu", "--steps", "2", "--warmup", "1", "--map_sizes", "60x5",
                           "--sklearn_classes", "2", *images, "--num_workers", "0", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert min(results["loader_images_per_s"].values()) > 0
    assert set(results["loader_stage_ms_per_image"]) == {"decode", "resize", "normalise"}
    full = results["full_step_images_per_s"]
    assert min(full.values()) > 0
    assert results["epoch_minutes_COCO"]["ours"] == pytest.approx(65_665 / full["ours"] / 60)
    assert results["map_60x5"]["sklearn_classes_timed"] == 2
    assert "loader, 0 workers (images/s)" in done.stdout and "mAP 60x5 (s, sklearn x2.5)" in done.stdout
