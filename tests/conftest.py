import os

import pytest

import slurm_cluster
from data.demo import ensure_demo_dataset
from helpers import SWEEP_FLAGS, run_script


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """A tiny demo dataset: 96 official train images (77 train, 19 val) and 48 test images."""
    folder = str(tmp_path_factory.mktemp("demo"))
    ensure_demo_dataset(folder, num_images={"train": 96, "val": 48})
    return folder


@pytest.fixture(scope="session")
def tiny():
    """CLI flags of a small, fast model: seconds per run on a CPU."""
    return ["--arch", "resnet18", "--weights", "none", "--image_size", "32", "--num_workers", "0",
            "--bsize", "16", "--lr", "1e-3"]


@pytest.fixture
def demo_args(demo_dir, tiny, tmp_path):
    """Builds the CLI arguments of a tiny demo run saving under tmp_path, then ``extra``."""
    return lambda *extra: ["--dataset", "demo", "--data_dir", demo_dir, "--save_path", str(tmp_path), *tiny, *extra]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node SLURM cluster on this machine (tests/slurm_cluster.py), started once per session and
    stopped at its end. Skipped where SLURM is not installed, except under REQUIRE_SLURM=1 (.ci/run),
    where that fails."""
    why_not = slurm_cluster.missing()
    if why_not:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but {why_not}")
        pytest.skip(why_not)
    cluster = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sweep_data(demo_dir, tmp_path_factory):
    """A --data_dir for the scripts: the tiny demo dataset as <data_dir>/demo."""
    data = tmp_path_factory.mktemp("sweep_data")
    os.symlink(demo_dir, data / "demo")
    return str(data)


@pytest.fixture(scope="session")
def serial_sweep(sweep_data, tmp_path_factory):
    """SWEEP_FLAGS run by the serial launcher, the reference of the others: its runs folder."""
    runs = str(tmp_path_factory.mktemp("serial_sweep"))
    done = run_script("table2_end_to_end.py", *SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", runs)
    assert done.returncode == 0, done.stdout + done.stderr
    return runs
