"""LinearInit's cached-feature phase, ROLE's label estimate in the loop and the checkpoint, and the
new schemes through the CLI, on a tiny generated dataset."""
import copy
import json

import pytest
import torch

import main
import models
import train
from config import build_config, get_args_parser
from data.demo import ensure_demo_dataset
from helpers import interrupt_then_resume, read_log

TINY = ["--arch", "resnet18", "--weights", "none", "--image_size", "32", "--num_workers", "0",
        "--bsize", "8", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("demo"))
    ensure_demo_dataset(folder, num_images={"train": 40, "val": 16})      # 32 train, 8 val, 16 test
    return folder


def cli(demo_dir, save_path, *extra):
    return ["--dataset", "demo", "--data_dir", demo_dir, "--save_path", str(save_path), *TINY, *extra]


def test_cached_linear_phase_equals_running_the_frozen_backbone(demo_dir, tmp_path):
    """Same order, same flips, same head updates, same modifications, without the backbone."""
    cfg = build_config(get_args_parser().parse_args(cli(
        demo_dir, tmp_path, "--mod_scheme", "LL-Ct", "--delta_rel", "10", "--num_epochs", "3",
        "--train_mode", "linear_init", "--linear_init_epochs", "2", "--optimizer", "sgd")))
    splits = train.datasets.load_splits(cfg)
    torch.manual_seed(0)
    reference = models.build_model(cfg.arch, 12, "none")
    reference.backbone.train()                 # BatchNorm statistics must not move in the frozen phase
    results = {}
    for path in ("images", "cached"):
        model = copy.deepcopy(reference)
        model.freeze_backbone(True)
        optimizer = train.build_optimizer(model, cfg)
        train_labels = train.labels.TrainingLabels(splits["train"].labels_obs)
        loader = train.make_loader(splits["train"], cfg, train=True, generator=torch.Generator())
        batches = loader
        if path == "cached":
            features = train.cache_backbone_features(model, splits["train"], cfg, "cpu")
            assert features.shape == (2, 32, 512)
            batches = train.CachedFeatureBatches(features, loader.batch_sampler)
            model.backbone.forward = None      # the cached path must never run the backbone
        stats = []
        for epoch in (1, 2):
            loader.batch_sampler.sampler.generator.manual_seed(train.epoch_seed(cfg.seed, epoch))
            net = model.head if path == "cached" else model       # the head alone reads cached features
            stats.append(train.train_one_epoch(net, batches, optimizer, train_labels, cfg, epoch, "cpu"))
        results[path] = (model.head.state_dict(), stats)
    (head_images, stats_images), (head_cached, stats_cached) = results["images"], results["cached"]
    for name in head_images:
        assert torch.allclose(head_images[name], head_cached[name], atol=1e-6), name
    assert stats_images[1]["num_modified"] == stats_cached[1]["num_modified"] > 0
    assert stats_images[0]["train_loss"] == pytest.approx(stats_cached[0]["train_loss"], rel=1e-5)
    assert stats_images[1]["train_loss"] == pytest.approx(stats_cached[1]["train_loss"], rel=1e-5)
    # The flips really vary within an epoch, so equality tests the flipped features too.
    flips = [flip for _, flip in train.datasets.ShuffleFlipSampler(32, torch.Generator().manual_seed(1))]
    assert 0 < sum(flips) < 32


def test_role_estimate_trains_is_saved_and_resumes_across_linear_init(demo_dir, tmp_path, monkeypatch):
    """ROLE with LinearInit: the estimate trains in the frozen phase, is carried into fine-tuning,
    is saved in last.pt, and a run interrupted between the phases resumes to the same result."""
    args = cli(demo_dir, tmp_path, "--mod_scheme", "ROLE", "--num_epochs", "2",
               "--train_mode", "linear_init", "--linear_init_epochs", "1")
    assert main.main([*args, "--exp_name", "full"]) == 0
    full_dir = tmp_path / "full"
    results = json.loads((full_dir / "results.json").read_text())
    train_split = train.datasets.load_splits(build_config(get_args_parser().parse_args(args)))["train"]
    k_hat = float(train_split.labels.dense().sum(axis=1).mean())
    assert results["expected_num_pos"] == pytest.approx(k_hat, abs=1e-4)   # computed for the demo
    ckpt = torch.load(full_dir / "last.pt", weights_only=True)
    estimate = ckpt["label_estimate"]["logits"]
    assert estimate.shape == (32, 12)
    observed = torch.as_tensor(train_split.labels_obs.dense()) == 1
    # Observed positives start at probability 0.995: the estimate has been trained since.
    assert not torch.allclose(torch.sigmoid(estimate[observed]), torch.tensor(0.995))

    interrupt_then_resume(monkeypatch, args, "resumed", lambda calls, a: a[5] == 2)    # in epoch 2
    assert read_log(tmp_path / "resumed") == read_log(full_dir)
    resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert torch.equal(resumed["label_estimate"]["logits"], estimate)


@pytest.mark.parametrize("scheme,extra", [("WAN", []), ("LSAN", []), ("EPR", ["--expected_num_pos", "2.5"]),
                                          ("IU", []), ("LL-R-abs", ["--R0", "3", "--delta_abs", "0.5"])])
def test_each_new_scheme_runs_through_the_cli(demo_dir, tmp_path, scheme, extra):
    assert main.main(cli(demo_dir, tmp_path, "--mod_scheme", scheme, "--num_epochs", "2", *extra,
                         "--exp_name", "run")) == 0
    log = read_log(tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["mod_scheme"] == scheme and 0 < results["test_map"] <= 100
    if scheme == "LL-R-abs":
        assert log[1]["ll_threshold"] == 3 - 2 * 0.5
    else:
        assert all(r["num_modified"] == 0 for r in log)
    if scheme == "EPR":
        assert results["expected_num_pos"] == 2.5


@pytest.mark.parametrize("extra,message", [
    (["--mod_scheme", "LL-Ct-abs", "--R0", "2"], "needs --R0 and --delta_abs"),
    (["--mod_scheme", "EPR", "--expected_num_pos", "0"], "must be positive"),
])
def test_new_flags_are_checked(demo_dir, tmp_path, capsys, extra, message):
    assert main.main(cli(demo_dir, tmp_path, *extra)) == 2
    assert message in capsys.readouterr().err


def test_paper_k_hat_is_the_default_on_the_paper_datasets():
    cfg = build_config(get_args_parser().parse_args(["--dataset", "coco", "--mod_scheme", "EPR"]))
    assert cfg.expected_num_pos == 2.9 and cfg.delta_rel == 0 and cfg.exp_name == "coco_EPR_resnet50_s0"
