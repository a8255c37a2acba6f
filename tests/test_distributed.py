"""Several processes (torchrun, DistributedDataParallel) train as one process with the whole batch:
checked on the CPU with the gloo backend and 2 processes."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

import datasets
import distributed
import main
import models
import train
from config import build_config, get_args_parser
from errors import UserError
from data.demo import ensure_demo_dataset
from helpers import read_log
from metrics import average_precision_per_class, mean_ap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shares_split_each_batch_as_evenly_as_possible():
    assert distributed.share_sizes(13, 2) == [7, 6]
    assert distributed.share_sizes(16, 4) == [4, 4, 4, 4]
    assert distributed.share_sizes(5, 3) == [2, 2, 1]
    items = list(range(13))
    assert distributed.share(items, 0, 2) + distributed.share(items, 1, 2) == items


def test_sharded_batches_cover_the_single_process_batches():
    """Each process's batches are contiguous shares of the batches one process would draw; a last
    batch with fewer items than processes is skipped."""
    order = datasets.ShuffleFlipSampler(37, torch.Generator().manual_seed(0))
    whole = list(datasets.ShardedBatches(order, 8))
    assert [len(b) for b in whole] == [8, 8, 8, 8, 5]
    order.generator.manual_seed(0)
    first = list(datasets.ShardedBatches(order, 8, part=0, parts=3))
    order.generator.manual_seed(0)
    second = list(datasets.ShardedBatches(order, 8, part=1, parts=3))
    order.generator.manual_seed(0)
    third = list(datasets.ShardedBatches(order, 8, part=2, parts=3))
    assert [a + b + c for a, b, c in zip(first, second, third)] == whole
    assert datasets.ShardedBatches(order, 8, part=0, parts=3).shares[-1] == [2, 2, 1]
    assert len(datasets.ShardedBatches(datasets.ShuffleFlipSampler(33, torch.Generator()), 8, 0, 2)) == 4  # 1 left


def toy_net():
    """A model without BatchNorm (whose per-process statistics would differ from the whole batch's)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 12))


def train_toy(cfg, epochs=2):
    """Two epochs of the real loop (``train.train_one_epoch``) on the demo images with the toy net,
    in this process or as one of torchrun's; returns what must match across process counts."""
    splits = datasets.load_splits(cfg)
    model = toy_net()
    net = train.training_net(model, cfg, torch.device("cpu"))
    train_split, val = splits["train"], splits["val"]
    method = train.methods.get(cfg.mod_scheme)
    estimate = method.make_state(train_split, cfg) if method.make_state else None          # ROLE's estimate
    optimizer = torch.optim.SGD([*model.parameters(), *([] if estimate is None else estimate.parameters())], lr=0.5)
    corrections = train.labels.Corrections(len(train_split), 12) if cfg.mod_scheme == "LL-Cp" else None
    train_labels = train.labels.TrainingLabels(train_split.labels_obs, None, corrections)
    shuffle = torch.Generator()
    loader = train.make_loader(train_split, cfg, train=True, generator=shuffle)
    stats = []
    for epoch in range(1, epochs + 1):
        shuffle.manual_seed(train.epoch_seed(cfg.seed, epoch))
        stats.append(train.train_one_epoch(net, loader, optimizer, train_labels, cfg, epoch, "cpu", estimate))
    val_loader = train.make_loader(val, cfg, train=False)
    scores = train.predict(model, val_loader, "cpu")
    params = [*model.parameters(), *([] if estimate is None else estimate.parameters())]
    # Evaluation on the main process (which sends the mAP to the others), with full labels and with a
    # partially known copy of them (the OpenImages path: only the known entries' scores are gathered).
    partial = datasets.Split(val.paths, None, train.labels.Labels(train.labels.DenseStore(partial_labels(val)), range(len(val))))
    return {"params": [p.detach() for p in params], "labels_obs": train_labels.batch(torch.arange(len(train_split)), "cpu")[0],
            "stats": stats, "val_scores": torch.as_tensor(scores),
            "val_map": train.evaluate(model, val_loader, val, "cpu")["map"],
            "partial_val": train.evaluate(model, val_loader, partial, "cpu", class_groups=np.arange(12) % 2)}


def partial_labels(split):
    """A split's full labels as -1/+1 where (row + 3 * class) % 4 is not 0, unknown (0) elsewhere."""
    truth = split.labels.dense()
    rows, cols = np.indices(truth.shape)
    return np.where((rows + 3 * cols) % 4 != 0, 2 * truth - 1, 0).astype(np.int8)


def _toy_worker(rank, world, port, argv, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = build_config(get_args_parser().parse_args(argv))
    distributed.init(torch.device("cpu"))
    try:
        result = train_toy(cfg)
    finally:
        distributed.close()
    torch.save(result, f"{out}.{rank}")


@pytest.mark.parametrize("scheme, scope", [("LL-Cp", "global"), ("LL-Cp", "per_process"), ("ROLE", "global")])
def test_two_processes_train_as_one_process_with_the_whole_batch(demo_args, tmp_path, scheme, scope, monkeypatch):
    """2 epochs, 2 gloo processes with batch shares of 8 (7 + 6 in the last batch) against one
    process with batches of 16: LL-Cp's corrections need the top-k and must reach both label
    matrices; ROLE's estimate must train alike in both. With --loss_scope per_process the
    single-process reference splits each batch's loss the same way (``train.batch_loss`` with the
    shares as parts)."""
    argv = demo_args("--mod_scheme", scheme, "--delta_rel", "20", "--loss_scope", scope, "--expected_num_pos", "2")
    out = str(tmp_path / "result")
    mp.start_processes(_toy_worker, args=(2, free_port(), argv, out), nprocs=2, start_method="spawn")
    per_rank = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]

    cfg = build_config(get_args_parser().parse_args(argv))
    if scope == "per_process":        # one process computing the loss per share, as 2 processes would
        real_batch_loss = train.batch_loss
        monkeypatch.setattr(train, "batch_loss", lambda logits, obs, cfg, epoch, parts, *a: real_batch_loss(
            logits, obs, cfg, epoch, distributed.share_sizes(len(logits), 2), *a))
    reference = train_toy(cfg)

    assert scheme == "ROLE" or reference["stats"][1]["num_modified"] > 0
    for result in per_rank:
        assert torch.equal(result["labels_obs"], reference["labels_obs"])      # same corrections everywhere
        for p, q in zip(result["params"], reference["params"]):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        for s, t in zip(result["stats"], reference["stats"]):
            assert s["num_modified"] == t["num_modified"]
            assert s["train_loss"] == pytest.approx(t["train_loss"], rel=1e-6)
        torch.testing.assert_close(result["val_scores"], reference["val_scores"], rtol=1e-5, atol=1e-5)
    # Each process's mAP is the one of the whole split's scores, computed as before evaluation moved to
    # the main process (every process gathered the (n, K) scores and masked the unknown entries).
    val = datasets.load_splits(cfg)["val"]
    truth, partial, scores = val.labels.dense(), partial_labels(val), reference["val_scores"].numpy()
    partial_ap = average_precision_per_class(partial == 1, scores, annotated=partial != 0)
    for result in per_rank:
        assert result["val_map"] == pytest.approx(mean_ap(average_precision_per_class(truth == 1, scores)), abs=1e-4)
        assert result["partial_val"]["map"] == pytest.approx(mean_ap(partial_ap), abs=1e-4)
        assert result["partial_val"]["map_G2"] == pytest.approx(mean_ap(partial_ap[1::2]), abs=1e-4)


def test_per_process_scope_selects_k_in_each_share(demo_args):
    """per_process takes ceil(b*K*r) entries in each share of b rows; global takes ceil(B*K*r) overall."""
    cfg = build_config(get_args_parser().parse_args(demo_args("--mod_scheme", "LL-R", "--delta_rel", "1")))
    logits = torch.randn(10, 12)
    obs = torch.zeros(10, 12, dtype=torch.int8)
    _, whole, _ = train.batch_loss(logits, obs, cfg, 2, [10])
    _, shares, _ = train.batch_loss(logits, obs, cfg, 2, [5, 5])
    assert whole.sum() == 2                                     # ceil(120 * 0.01)
    assert shares[:5].sum() == shares[5:].sum() == 1            # ceil(60 * 0.01) each


def test_torchrun_cli_linear_init(demo_args, tmp_path):
    """``torchrun --nproc_per_node=2 main.py`` end to end with LinearInit: the cached features are
    computed in shares and gathered; the frozen epochs (no BatchNorm in training) match one process;
    the gathered test evaluation equals one process's evaluation of the saved best weights."""
    args = demo_args("--mod_scheme", "LL-Cp", "--delta_rel", "20", "--num_epochs", "3",
                     "--train_mode", "linear_init", "--linear_init_epochs", "2", "--device", "cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "main.py", *args, "--exp_name", "one"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                            f"--master_port={free_port()}", "main.py", *args, "--exp_name", "two"],
                           cwd=REPO, env=env, capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr
    assert multi.stdout.count("Test mAP") == 1                  # one process speaks for both
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    for a, b in zip(one[:2], two[:2]):                          # the frozen epochs
        assert a["num_modified"] == b["num_modified"]
        assert a["num_written_total"] == b["num_written_total"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_map"] == pytest.approx(b["val_map"], abs=1e-3)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["num_processes"] == 2
    cfg = build_config(get_args_parser().parse_args(args))
    splits = datasets.load_splits(cfg)
    initial = torch.as_tensor(splits["train"].labels_obs.dense())
    for run, log in (("one", one), ("two", two)):       # the logged total is what the checkpoint holds
        corrections = torch.load(tmp_path / run / "last.pt", weights_only=True)["corrections"]
        assert len(corrections["keys"]) == log[-1]["num_written_total"] > 0
        assert (initial.flatten()[corrections["keys"]] == 0).all()              # only unobserved entries

    results = json.loads((tmp_path / "two" / "results.json").read_text())
    model = models.build_model(cfg.arch, 12, "none")
    model.load_state_dict(torch.load(tmp_path / "two" / "best.pt", weights_only=True)["model"])
    for split, reported in (("test", results["test_map"]), ("val", results["best_val_map"])):
        mine = train.evaluate(model, train.make_loader(splits[split], cfg, train=False), splits[split], "cpu")
        assert mine["map"] == pytest.approx(reported, abs=1e-9), split


def test_bsize_below_the_process_count_is_refused(demo_args, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(UserError, match="at least 4"):
        build_config(get_args_parser().parse_args(demo_args("--bsize", "2")))


def test_a_split_smaller_than_the_process_count_is_refused(tmp_path, tiny, monkeypatch, capsys):
    """Every process must hold a share of each split, or one would wait for the others forever."""
    ensure_demo_dataset(str(tmp_path / "data"), num_images={"train": 20, "val": 1})     # a 1-image test split
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert main.main(["--dataset", "demo", "--data_dir", str(tmp_path / "data"), "--save_path", str(tmp_path),
                      *tiny]) == 2
    assert "the test split has 1 images, fewer than the 2 processes" in capsys.readouterr().err
