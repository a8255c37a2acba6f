"""The benchmark runs end to end on tiny settings and writes what it printed."""
import json
import subprocess
import sys


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


def test_bench_loader_rows(tmp_path, demo_dir):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--arch", "resnet18", "--image_size", "32",
                           "--bsize", "4", "--device", "cpu", "--steps", "1", "--warmup", "1", "--map_sizes", "50x3",
                           "--dataset", "demo", "--data_dir", demo_dir, "--num_workers", "0", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert min(results["loader_images_per_s"].values()) > 0
    assert set(results["loader_stage_ms_per_image"]) == {"decode", "resize", "normalise"}
    assert "loader, 0 workers (images/s)" in done.stdout
