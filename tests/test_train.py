"""The training loop and the CLI, end to end on a tiny generated dataset."""
import json
import os

import numpy as np
import pytest
import torch

import losses
import main
import models
import train
from config import build_config, get_args_parser
from helpers import script_evaluation

# 96 official train images: 77 train (batches of 16, 16, 16, 16 and 13) and 19 val; 48 test.
TRAIN_BATCHES = [16, 16, 16, 16, 13]




def test_cli_end_to_end_on_demo(demo_args, tmp_path, capsys):
    assert main.main(demo_args("--num_epochs", "2", "--mod_scheme", "LL-Ct",
                         "--delta_rel", "5", "--exp_name", "run")) == 0
    run_dir = tmp_path / "run"
    results = json.loads((run_dir / "results.json").read_text())
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert 0 < results["test_map"] <= 100 and results["best_epoch"] in (1, 2)
    assert results["best_val_map"] == max(r["val_map"] for r in log)
    # Epoch 1 is the warm-up; epoch 2 modifies k = ceil(B * K * 5 %) entries per batch:
    # ceil(9.6) = 10 in the full batches, ceil(7.8) = 8 in the last one.
    assert log[0]["num_modified"] == 0
    assert log[1]["num_modified"] == 4 * 10 + 8
    assert 0 <= log[1]["modification_precision"] <= 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["mod_scheme"] == "LL-Ct" and config["delta_rel"] == 5
    assert {"commit", "dirty"} <= set(json.loads((run_dir / "git.json").read_text()))
    assert "Test mAP" in capsys.readouterr().out
    # A finished run is not overwritten by accident.
    assert main.main(demo_args("--num_epochs", "2", "--mod_scheme", "LL-Ct",
                         "--delta_rel", "5", "--exp_name", "run")) == 2
    assert "finished run" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--mod_scheme", "LL-R", "--delta_rel", "-1"], "--delta_rel must be >= 0"),
    (["--mod_scheme", "LL-R", "--delta_rel", "12"], "below 100 %"),           # 9 * 12 % by epoch 10
    (["--mod_scheme", "LL-R", "--delta_rel", "0"], "is Naive AN"),
    (["--mod_scheme", "LL-R"], "no published delta_rel"),
    (["--weights", "/nonexistent.pth"], "no such file"),
])
def test_cli_rejects_bad_arguments(demo_args, tmp_path, capsys, extra, message):
    assert main.main(demo_args("--num_epochs", "10", *extra)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("rule, written_per_batch", [("authors", 3), ("all", 4)])
def test_ll_cp_corrections_persist_through_the_loop(demo_args, tmp_path, rule, written_per_batch):
    """The real train_one_epoch with worker processes: the loss corrects k entries per batch, of which
    the authors' rule writes the k - 1 strictly above the k-th loss (ties have probability 0 here) and
    --llcp_write all writes all k, as +1, each once, never selected again; observed entries never change."""
    cfg = build_config(get_args_parser().parse_args(
        demo_args("--mod_scheme", "LL-Cp", "--delta_rel", "2", "--num_epochs", "3", "--llcp_write", rule)
        + ["--num_workers", "2"]))
    splits = train.datasets.load_splits(cfg)
    torch.manual_seed(0)
    model = models.build_model(cfg.arch, 12, "none")
    optimizer = train.build_optimizer(model, cfg)
    train_split = splits["train"]
    initial = torch.as_tensor(train_split.labels_obs.dense())
    labels_true = torch.as_tensor(train_split.labels.dense()).bool()
    corrections = train.labels.Corrections(len(train_split), 12)
    train_labels = train.labels.TrainingLabels(train_split.labels_obs, train_split.labels, corrections)
    loader = train.make_loader(train_split, cfg, train=True, generator=torch.Generator().manual_seed(0))
    written_so_far = written_true_so_far = 0
    for epoch in (1, 2, 3):
        stats = train.train_one_epoch(model, loader, optimizer, train_labels, cfg, epoch, "cpu")
        # The labels the next epoch reads: every row, with the corrections written in.
        labels_obs, _ = train_labels.batch(torch.arange(len(train_split)), "cpu")
        written = (labels_obs == 1) & (initial == 0)
        assert len(corrections) == written.sum()
        # LL-Cp: k = ceil(B * K * 2 %) per batch from epoch 2: ceil(3.84) = ceil(3.12) = 4.
        assert stats["num_modified"] == (0 if epoch == 1 else 5 * 4)
        assert stats["num_written"] == (0 if epoch == 1 else 5 * written_per_batch)
        assert written.sum().item() == written_so_far + stats["num_written"]    # all new: none written twice
        assert stats["num_written_true_pos"] == (written & labels_true).sum().item() - (
            0 if epoch == 1 else written_true_so_far)
        written_so_far, written_true_so_far = written.sum().item(), (written & labels_true).sum().item()
        assert torch.equal(labels_obs[initial != 0], initial[initial != 0])
        assert set(labels_obs.unique().tolist()) <= {-1, 0, 1}


def test_ll_cp_write_rule_is_recorded_and_refused_elsewhere(demo_args, tmp_path, capsys):
    cfg = build_config(get_args_parser().parse_args(demo_args("--mod_scheme", "LL-Cp", "--delta_rel", "2")))
    assert cfg.method_options == {"llcp_write": "authors"}                # the default, into config.json
    assert main.main(demo_args("--mod_scheme", "LL-Ct", "--delta_rel", "2", "--llcp_write", "all")) == 2
    assert "--llcp_write is a flag of LL-Cp" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:                          # not a rule: argparse's exit 2
        get_args_parser().parse_args(demo_args("--mod_scheme", "LL-Cp", "--llcp_write", "some"))
    assert exit_info.value.code == 2


def test_model_selection_and_early_stop(demo_args, tmp_path, monkeypatch):
    """Best val epoch is kept; a drop of more than 3 points stops; test uses the best weights."""
    seen_test_weights = []
    script_evaluation(monkeypatch, [50.0, 60.0, 58.0, 56.9, 70.0], seen_test_weights)

    saved = {}
    real_save = train.save_atomic

    def recording_save(obj, path):
        if path.endswith("best.pt"):
            saved[obj["epoch"]] = obj["model"]["head.bias"].clone()
        real_save(obj, path)

    monkeypatch.setattr(train, "save_atomic", recording_save)
    cfg = build_config(get_args_parser().parse_args(
        demo_args("--mod_scheme", "AN", "--num_epochs", "5")))
    results = train.run(cfg)
    assert results["best_epoch"] == 2 and results["best_val_map"] == 60.0
    assert results["epochs_run"] == 4 and results["stopped_early"]         # 60 - 56.9 > 3
    assert results["test_map"] == 42.0
    assert sorted(saved) == [1, 2] and torch.equal(seen_test_weights[0], saved[2])


def test_one_prediction_pass_per_split_at_the_end(demo_args, tmp_path, monkeypatch):
    """After the last epoch the best model predicts val once and test once: those scores give the
    test mAP, the per-class AP and the val thresholds."""
    real_predict, real_predict_split, real_finish = train.predict, train.predict_split, train.Training.finish
    split_of, passes = {}, []

    def finish(self):
        split_of.update({id(loader): name for name, loader in self.loaders.items()})
        return real_finish(self)

    def predict(model, loader, device, desc="eval", amp="none"):
        if split_of:                                    # in finish, after the last epoch
            passes.append(split_of.get(id(loader), desc))
        return real_predict(model, loader, device, desc, amp)

    def predict_split(model, loader, split, device, desc="eval", amp="none"):
        if split_of:
            passes.append(split_of.get(id(loader), desc))
        return real_predict_split(model, loader, split, device, desc, amp)

    monkeypatch.setattr(train.Training, "finish", finish)
    monkeypatch.setattr(train, "predict", predict)
    monkeypatch.setattr(train, "predict_split", predict_split)
    results = train.run(build_config(get_args_parser().parse_args(demo_args("--num_epochs", "2"))))
    assert sorted(passes) == ["test", "val"]
    per_class = [ap for ap in results["test_per_class_ap"].values() if ap is not None]
    assert results["test_map"] == pytest.approx(np.mean(per_class))     # the same test scores


def test_same_seed_same_numbers(demo_args, tmp_path):
    def once(name):
        args = demo_args("--mod_scheme", "LL-R", "--delta_rel", "5", "--num_epochs", "2",
                   "--exp_name", name)
        assert main.main(args) == 0
        return [json.loads(l) for l in open(os.path.join(tmp_path, name, "log.jsonl"))]
    first, second = once("a"), once("b")
    for a, b in zip(first, second):
        a.pop("time_s"), b.pop("time_s")
    assert first == second


def test_bf16_autocast_keeps_the_loss_and_the_modified_entries():
    """--amp bf16 runs the model in bfloat16, but the LL selection and loss run in fp32: on a
    random batch the loss moves by under 1 % and at most 2 of the 24 selected entries swap."""
    torch.manual_seed(0)
    model = models.build_model("resnet18", 12, "none").eval()
    images = torch.randn(16, 3, 32, 32)
    obs = torch.zeros(16, 12, dtype=torch.int8)
    obs[torch.arange(16), torch.arange(16) % 12] = 1
    with torch.no_grad():
        # LL-Ct in epoch 5 at delta_rel 3: k = ceil(16 * 12 * 12 %) = 24.
        loss32, modified32 = losses.large_loss(model(images), obs, correct=True, k=24)
        with torch.autocast("cpu", dtype=train.autocast_dtype("bf16", "cpu")):
            logits16 = model(images)
        loss16, modified16 = losses.large_loss(logits16, obs, correct=True, k=24)
    assert logits16.dtype == torch.bfloat16 and int(modified32.sum()) == int(modified16.sum()) == 24
    assert abs(loss16.item() - loss32.item()) < 0.01 * loss32.item()
    assert int((modified32 ^ modified16).sum()) <= 4


def test_scores_under_bf16_autocast_are_fp32_not_quantised():
    """train.predict with --amp bf16: the backbone runs in bf16, but the scores are the fp32 head on
    its features: not on bf16's grid (8 significant bits), and equal to a float64 head on the same
    features within the fp32 rounding bound of a dot product of C terms, gamma_{C+1} * sum |w_i f_i| + |b|."""
    torch.manual_seed(0)
    model = models.build_model("resnet18", 3, "none")
    images = torch.randn(24, 3, 32, 32)
    loader = [(images[:16], torch.arange(16)), (images[16:], torch.arange(16, 24))]
    scores = torch.from_numpy(train.predict(model, loader, "cpu", amp="bf16"))       # (24, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = torch.cat([model.features(x) for x, _ in loader])
        bf16_logits = model(images)                     # what the whole model under autocast gives
    assert features.dtype == bf16_logits.dtype == torch.bfloat16 and scores.dtype == torch.float32
    # bf16 logits lie on bf16's grid; fp32 scores almost never do (2^-16 chance each).
    assert torch.equal(bf16_logits.float(), bf16_logits.float().bfloat16().float())
    assert (scores == scores.bfloat16().float()).sum() <= 1
    assert len(torch.unique(scores)) == scores.numel()
    w, b = model.head.weight.detach().double(), model.head.bias.detach().double()
    f = features.double()
    expected = f @ w.T + b
    u = 2.0 ** -24                                      # fp32 unit roundoff
    n = f.shape[1] + 1
    bound = n * u / (1 - n * u) * (f.abs() @ w.abs().T + b.abs())
    assert ((scores.double() - expected).abs() <= bound).all()


def test_amp_auto_is_bf16_on_cuda_and_off_on_the_cpu():
    assert train.autocast_dtype("auto", "cpu") is None
    assert train.autocast_dtype("auto", "cuda") == torch.bfloat16
    assert train.autocast_dtype("fp16", "cpu") == torch.float16


def test_boostlu_scores_under_bf16_autocast_are_the_boosted_fp32_head():
    """BoostLU's head reads the feature map, so its fp32 scores are the boosted CAM's mean computed
    in float64 from the bf16 feature map, not the plain head on pooled features."""
    torch.manual_seed(0)
    model = models.build_model("resnet18", 3, "none", boostlu_alpha=5.0)
    images = torch.randn(8, 3, 32, 32)
    scores = torch.from_numpy(train.predict(model, [(images, torch.arange(8))], "cpu", amp="bf16")).double()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fmap = model.feature_map(images)
    cam = torch.einsum("kc,bchw->bkhw", model.head.weight.detach().double(), fmap.double())
    cam = cam + model.head.bias.detach().double()[None, :, None, None]
    expected = torch.where(cam > 0, 5.0 * cam, cam).mean(dim=(2, 3))
    plain = fmap.double().mean(dim=(2, 3)) @ model.head.weight.detach().double().T + model.head.bias.detach().double()
    assert torch.allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores, plain, rtol=1e-3, atol=1e-3)
