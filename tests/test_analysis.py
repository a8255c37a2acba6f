"""The paper's analyses (analysis.py, scripts/analyze.py) on cases whose answer is known by construction."""
import dataclasses
import importlib.util
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import analysis
import datasets
import main
import train
from config import build_config, get_args_parser
from data.demo import ensure_demo_dataset
from models import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("analyze", os.path.join(REPO, "scripts", "analyze.py"))
analyze = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(analyze)


def test_table1_shares_from_hand_placed_maxima():
    # Entries: (0,0) TP, (0,1) FN, (0,2) TN, (1,0) TN, (1,1) TP, (1,2) observed negative (no type).
    obs = np.array([[1, 0, 0], [0, 1, -1]])
    true = np.array([[1, 1, 0], [0, 1, 0]])
    history = np.full((4, 2, 3), 0.1, dtype=np.float16)
    history[3] = np.nan                   # epoch 4 never ran (early stop)
    history[0, 0, 0] = 1.0                # TP peaks in epoch 1
    history[2, 1, 1] = 1.0                # TP peaks in epoch 3
    history[1, 0, 1] = 1.0                # FN peaks in epoch 2
    history[0, 0, 2] = 1.0                # TN peaks in epoch 1
    history[:, 1, 0] = [0.5, 0.5, 0.2, np.nan]   # TN: a tie of epochs 1 and 2 goes to epoch 1
    history[1, 1, 2] = 9.0                # the observed negative: counted nowhere
    peaks = analysis.highest_loss_epoch(history, chunk_rows=1)
    np.testing.assert_array_equal(peaks, [[1, 2, 1], [1, 3, 2]])
    table = analysis.memorization_table(peaks, obs, true)
    assert table["TP"] == {"entries": 2, "warmup": 0.5, "later": 0.5}
    assert table["TN"] == {"entries": 2, "warmup": 1.0, "later": 0.0}
    assert table["FN"] == {"entries": 1, "warmup": 0.0, "later": 1.0}
    assert "| FN | 1 | 0.0 % | 100.0 % |" in analysis.format_memorization_table(table)
    means = analysis.mean_loss_curves(history, analysis.entry_types(obs, true))
    np.testing.assert_allclose(means["FN"][:3], [0.1, 1.0, 0.1], rtol=1e-3)
    assert np.isnan(means["FN"][3])


def test_label_states():
    initial = np.array([[1, 0, 0, 0]])
    batch = np.array([[1, 1, 0, 0]])            # (0,1) corrected permanently in an earlier epoch
    modified = np.array([[False, False, True, False]])
    np.testing.assert_array_equal(analysis.label_states(initial, batch, modified, rejects=False),
                                  [[analysis.OBSERVED, analysis.CORRECTED, analysis.CORRECTED, analysis.NEGATIVE]])
    np.testing.assert_array_equal(analysis.label_states(initial, initial, modified, rejects=True),
                                  [[analysis.OBSERVED, analysis.NEGATIVE, analysis.REJECTED, analysis.NEGATIVE]])


def test_precision_curves_per_epoch_and_written():
    """Fig. 4: each epoch's modified share, and LL-Cp's cumulative written share, as separate series;
    undefined points left out; a log written before the write rule names its cumulative share
    corrected_precision_total."""
    records = [{"epoch": 1, "num_modified": 0, "modification_precision": None},
               {"epoch": 2, "num_modified": 4, "modification_precision": 0.5},
               {"epoch": 3, "num_modified": 6, "modification_precision": 0.4}]
    assert analysis.precision_curves(records) == {"modified per epoch": ([2, 3], [0.5, 0.4])}
    assert analysis.modification_counts(records) == "10 modified"
    llcp = [{**r, "num_written_total": n, "written_precision_total": p}
            for r, (n, p) in zip(records, [(0, None), (0, None), (2, 1.0)])]
    assert analysis.precision_curves(llcp) == {"modified per epoch": ([2, 3], [0.5, 0.4]),
                                               "written, cumulative": ([3], [1.0])}
    assert analysis.modification_counts(llcp) == "10 modified, 2 written permanently"
    voc = [{**r, "num_written_total": 0, "written_precision_total": None} for r in records]      # k = 1
    assert list(analysis.precision_curves(voc)) == ["modified per epoch"]
    assert analysis.modification_counts(voc) == "10 modified, 0 written permanently"
    old = [*records[:2], {**records[2], "corrected_precision_total": 0.45}]
    assert analysis.precision_curves(old)["written, cumulative"] == ([3], [0.45])
    assert analysis.precision_curves([{"epoch": 1, "num_modified": 0}]) == {}


def test_cam_is_the_head_weighted_feature_sum():
    features = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]]])   # (1, C=2, 2, 2)
    weight = torch.tensor([[1.0, -1.0], [0.0, 3.0]])                                   # (K=2, C=2)
    cams = analysis.class_activation_maps(features, weight, size=2)
    np.testing.assert_allclose(cams[0, 0], [[1, 0], [0, -2]])
    np.testing.assert_allclose(cams[0, 1], [[0, 0], [0, 6]])
    big = analysis.class_activation_maps(features, weight, size=8)[0].numpy()
    assert analysis.peak_location(big[0])[0] < 4 and analysis.peak_location(big[0])[1] < 4   # top left
    assert min(analysis.peak_location(big[1])) >= 4                                            # bottom right


def test_peak_of_a_plateau_is_its_innermost_pixel():
    cam = np.zeros((8, 8))
    cam[5, 6] = 1.0
    assert analysis.peak_location(cam) == (5, 6)
    cam[:] = 0.0
    cam[:4, :4] = 2.0                  # upsampling a 2x2 map flattens a corner like this
    assert analysis.peak_location(cam) == (3, 3)    # the first maximum would be (0, 0)
    cam[0, 0] += 1e-6                  # flat up to rounding is flat
    assert analysis.peak_location(cam) == (3, 3)
    # Upsampled from 2x2 to 8x8, a map whose top-left cell is strongest is flat on rows and columns
    # 0..1 and peaks there at (1, 1): the pixel that holds that cell's centre (1.5, 1.5).
    up = analysis.class_activation_maps(torch.tensor([[[[3.0, 1.0], [1.0, 0.0]]]]), torch.ones(1, 1), 8)
    assert analysis.peak_location(up[0, 0].numpy()) == (1, 1)


def test_pointing_hit_scales_boxes_to_the_input():
    # Original image 16 wide, 32 high; an 8x8 map: x scales by 1/2, y by 1/4.
    size = (16, 32)
    inside = (3, 3)                    # pixel centre (3.5, 3.5) in the map
    assert analysis.pointing_hit(inside, [[4, 8, 8, 16]], size, 8)          # box -> x [2, 4], y [2, 4]
    assert not analysis.pointing_hit((5, 3), [[4, 8, 8, 16]], size, 8)      # y 5.5 is below it
    corner = (6, 1)                    # centre x 1.5, y 6.5
    assert not analysis.pointing_hit(corner, [[0, 0, 16, 8]], size, 8)      # y [0, 2]
    assert analysis.pointing_hit(corner, [[0, 0, 16, 8], [0, 24, 4, 32]], size, 8)   # 2nd box: y [6, 8]

    cams = np.zeros((3, 8, 8))
    cams[0, 3, 3] = 1                  # class 0 peaks inside its box
    cams[1, 6, 1] = 1                  # class 1 peaks inside its second box only
    cams[2, 0, 0] = 1                  # class 2 is not in the image: not scored
    boxes = [[0, 4, 8, 8, 16], [1, 0, 0, 16, 8], [1, 0, 24, 4, 32]]
    assert analysis.pointing_game_image(cams, boxes, size) == {0: True, 1: True}
    assert analysis.pointing_game_image(cams, boxes[:2], size) == {0: True, 1: False}


def test_pointing_score_averages_over_classes_not_instances():
    hits = [{0: True, 1: False}, {0: True}, {0: False}]
    per_class, mean = analysis.pointing_game_score(hits, num_classes=3)
    np.testing.assert_allclose(per_class[:2], [2 / 3, 0.0])
    assert np.isnan(per_class[2])                              # class 2 never occurs
    assert mean == pytest.approx(1 / 3)                        # not the pooled 2 / 4
    with pytest.raises(ValueError):
        analysis.pointing_game_score([{}], num_classes=3)


# A tiny LL-Ct run with lr 0, so the weights never change, and one batch holding the whole training
# set (32 images), so BatchNorm's batch statistics are those of the full set whatever the order:
# every recorded loss can be recomputed independently from best.pt.
NUM_TRACED = 5


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("demo"))
    ensure_demo_dataset(data, num_images={"train": 40, "val": 16})
    save = tmp_path_factory.mktemp("runs")
    class NoFlipSampler(datasets.ShuffleFlipSampler):
        def draw(self):
            order, flips = super().draw()
            return order, torch.zeros_like(flips)

    with pytest.MonkeyPatch.context() as mp:
        # Without the random flip the images the run saw can be rebuilt exactly.
        mp.setattr(datasets, "ShuffleFlipSampler", NoFlipSampler)
        assert main.main(["--dataset", "demo", "--data_dir", data, "--save_path", str(save),
                          "--exp_name", "rec", "--arch", "resnet18", "--weights", "none", "--image_size", "32",
                          "--num_workers", "0", "--bsize", "64", "--lr", "0", "--num_epochs", "2",
                          "--mod_scheme", "LL-Ct", "--delta_rel", "5", "--record_losses",
                          "--record_labels_for", str(NUM_TRACED)]) == 0
    return save / "rec", data


def test_recorded_losses_equal_bce_recomputed_from_the_weights(recorded_run):
    run_dir, _ = recorded_run
    history = np.load(run_dir / "loss_history.npy")
    labels = np.load(run_dir / "train_labels.npz")
    obs = labels["labels_obs"]
    assert history.shape == (2, 32, 12) and history.dtype == np.float16 and obs.shape == (32, 12)

    model = build_model("resnet18", 12, "none")
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True)["model"])
    model.train()                                   # as the batch was trained: batch statistics
    dataset = datasets.ImageDataset(labels["images"], datasets.image_transform(32))
    images = datasets.normalize(torch.stack([dataset[i][0] for i in range(32)]))
    with torch.no_grad():
        logits = model(images)
    expected = F.binary_cross_entropy_with_logits(logits, torch.as_tensor(obs == 1).float(), reduction="none")
    for epoch in range(2):                          # lr 0: the same losses in both epochs
        np.testing.assert_allclose(history[epoch], expected.numpy(), rtol=2e-3, atol=2e-4)

    # Label trajectories: epoch 1 is the warm-up; in epoch 2 LL-Ct corrects the k largest
    # unobserved losses, k = ceil(32 * 12 * 5 %) = 20, of which the first 5 images are traced.
    states = np.load(run_dir / "label_trajectories.npy")
    assert states.shape == (2, NUM_TRACED, 12)
    k = math.ceil(32 * 12 * 0.05)
    log = [json.loads(line) for line in open(run_dir / "log.jsonl")]
    assert [r["num_modified"] for r in log] == [0, k]
    unobserved_losses = expected.masked_fill(torch.as_tensor(obs != 0), -np.inf).flatten()
    corrected = np.zeros(32 * 12, dtype=bool)
    corrected[unobserved_losses.topk(k).indices.numpy()] = True
    corrected = corrected.reshape(32, 12)[:NUM_TRACED]
    observed = obs[:NUM_TRACED] == 1
    np.testing.assert_array_equal(states[0], np.where(observed, analysis.OBSERVED, analysis.NEGATIVE))
    np.testing.assert_array_equal(states[1], np.where(observed, analysis.OBSERVED,
                                                      np.where(corrected, analysis.CORRECTED, analysis.NEGATIVE)))


def test_analysis_commands_on_the_recorded_run(recorded_run, tmp_path, capsys):
    run_dir, _ = recorded_run
    run_dir = str(run_dir)
    assert analyze.main(["memorization", run_dir, "--out_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| TN |" in out and "| FN |" in out and (tmp_path / "loss_curves.png").stat().st_size > 0
    assert analyze.main(["trajectories", run_dir, "--out_dir", str(tmp_path)]) == 0
    assert (tmp_path / "label_trajectories.png").stat().st_size > 0
    assert analyze.main(["precision", run_dir, run_dir, "--out_dir", str(tmp_path)]) == 0
    assert (tmp_path / "modification_precision.png").stat().st_size > 0
    assert analyze.main(["pointing", run_dir, "--overlays", "2"]) == 0
    out = capsys.readouterr().out
    assert "| LL-Ct (5) |" in out and os.path.getsize(os.path.join(run_dir, "pointing_cams.png")) > 0
    # A run trained without --record_losses: a clear message and exit status 2.
    os.rename(os.path.join(run_dir, "loss_history.npy"), os.path.join(run_dir, "moved.npy"))
    try:
        assert analyze.main(["memorization", run_dir]) == 2
        assert "--record_losses" in capsys.readouterr().err
    finally:
        os.rename(os.path.join(run_dir, "moved.npy"), os.path.join(run_dir, "loss_history.npy"))


def test_record_is_the_loss_each_batch_was_trained_with(tmp_path, monkeypatch):
    """With a learning rate (weights change after every batch) and LL-Cp (targets change between
    epochs): each entry's record equals the BCE of the logits its batch was trained on, as a spy on
    LL-Cp's loss saw them; a resumed recorder keeps the finished epochs."""
    cfg = build_config(get_args_parser().parse_args(
        ["--dataset", "demo", "--arch", "resnet18", "--weights", "none", "--optimizer", "sgd", "--lr", "0.05",
         "--mod_scheme", "LL-Cp", "--delta_rel", "10", "--num_epochs", "2", "--llcp_write", "all",
         "--save_path", str(tmp_path)]))
    torch.manual_seed(0)
    model = build_model("resnet18", 4, "none")
    optimizer = train.build_optimizer(model, cfg)
    images = torch.randn(12, 3, 32, 32)
    labels_obs = torch.zeros(12, 4, dtype=torch.int8)
    labels_obs[torch.arange(12), torch.arange(12) % 4] = 1
    initial = labels_obs.clone()
    seen = []
    real_loss = train.methods.get("LL-Cp").loss

    def spy(logits, batch_obs, batch):
        seen.append((logits.detach().clone(), batch_obs.clone()))
        return real_loss(logits, batch_obs, batch)

    monkeypatch.setitem(train.methods.REGISTRY, "LL-Cp", dataclasses.replace(train.methods.get("LL-Cp"), loss=spy))
    paths = np.array([f"img{i}.png" for i in range(12)])
    train_labels = train.labels.TrainingLabels(train.labels.Labels(train.labels.DenseStore(initial.numpy()), range(12)),
                                               corrections=train.labels.Corrections(12, 4))
    for epoch in (1, 2):
        recorder = analysis.TrainingRecorder(str(tmp_path), 2, False, initial.numpy(), None, paths,
                                             record_losses=True, num_traced=12, resume=epoch == 2)
        batches = [(images[b], b) for b in torch.randperm(12).split(5)]        # batches of 5, 5, 2
        seen.clear()
        train.train_one_epoch(model, batches, optimizer, train_labels, cfg, epoch, "cpu", recorder=recorder)
        recorder.flush()
        history = np.load(tmp_path / "loss_history.npy")
        for (_, idx), (logits, batch_obs) in zip(batches, seen):
            expected = F.binary_cross_entropy_with_logits(logits, (batch_obs == 1).float(), reduction="none")
            np.testing.assert_allclose(history[epoch - 1, idx], expected.numpy(), rtol=2e-3, atol=2e-4)
        if epoch == 1:
            assert np.isnan(history[1]).all()
            epoch_one = history[0].copy()
    np.testing.assert_array_equal(history[0], epoch_one)               # kept by the resumed recorder
    # LL-Cp corrected k = ceil(5 * 4 * 10 %) = 2 entries of each full batch, 1 of the last, and with
    # --llcp_write all wrote them all: they, and nothing else, are CORRECTED in epoch 2's trajectory.
    states = np.load(tmp_path / "label_trajectories.npy")
    labels_obs, _ = train_labels.batch(torch.arange(12), "cpu")
    corrected = ((labels_obs == 1) & (initial == 0)).numpy()
    assert corrected.sum() == 2 + 2 + 1
    np.testing.assert_array_equal(states[0], np.where(initial == 1, analysis.OBSERVED, analysis.NEGATIVE))
    np.testing.assert_array_equal(states[1], np.where(initial == 1, analysis.OBSERVED,
                                                      np.where(corrected, analysis.CORRECTED, analysis.NEGATIVE)))
