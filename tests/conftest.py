import pytest

from data.demo import ensure_demo_dataset


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
