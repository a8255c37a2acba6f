"""VLPL's loss, AEVLP's GPR loss and DAMP pseudo-labels on hand-worked examples from the papers'
equations (methods/vision_language.py, V1-V5, A1-A4, P1-P5), their registry defaults, and both methods through
main.py on a score file made by a stand-in scorer."""
import json
import math
import os
import types

import numpy as np
import pytest
import torch
import torch.nn as nn

import datasets
import main
import methods
import zero_shot
from data import demo
from helpers import read_log
from methods.vision_language import FixedPseudoLabels, damp_pseudo_labels, gpr_loss, vlpl_loss, vlpl_pseudo_labels

L3 = math.log(3)          # logit of 0.75


def nl(x, eps):
    return -math.log(x + eps)


def test_vlpl_loss_terms_by_hand():
    """p = 0.75, 0.5, 0.75, 0.5 for an observed positive, a pseudo-positive, an unobserved entry
    without a pseudo-label and an observed negative; alpha 0.2, beta_pos 0.7."""
    logits = torch.tensor([[L3, 0.0, L3, 0.0]])
    labels = torch.tensor([[1, 0, 0, -1]])
    pseudo = torch.tensor([[True, True, False, True]])   # pseudo-labels on observed entries change nothing
    e = 1e-5
    entropy = 0.75 * nl(0.75, e) + 0.25 * nl(0.25, e)
    expected = (nl(0.75, e) + 0.7 * (0.9 * nl(0.5, e) + 0.1 * nl(0.5, e)) - 0.2 * entropy + nl(0.5, e)) / 4
    loss, modified = vlpl_loss(logits, labels, pseudo, alpha=0.2, beta_pos=0.7)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert modified.tolist() == [[False, True, False, False]]


def test_vlpl_pseudo_labels_are_scores_above_the_threshold():
    scores = torch.tensor([[0.31, 0.3, 0.29, 0.1]])
    assert vlpl_pseudo_labels(scores, 0.3).tolist() == [[True, False, False, False]]


def damp_case():
    """Class 0 is observed (global score 0.6, so eta_i = min(0.6, 0.3) = 0.3). Class 1's best crop
    (0.5) beats eta_i: s = (0.2 + 0.5) / 2 = 0.35. Class 2's best crop (0.29) does not, so its worst
    (0.0) counts: s = (0.4 + 0.0) / 2 = 0.2 (its best would have given 0.345). Class 3: (0.1 + 0.4) / 2."""
    global_scores = torch.tensor([[0.6, 0.2, 0.4, 0.1]])
    crop_max = torch.tensor([[0.7, 0.5, 0.29, 0.4]])
    crop_min = torch.tensor([[0.5, 0.1, 0.0, 0.05]])
    labels = torch.tensor([[1, 0, 0, 0]])
    return global_scores, crop_max, crop_min, labels        # s = 0.65, 0.35, 0.2, 0.25


def test_damp_pseudo_labels_on_a_constructed_case():
    g, hi, lo, y = damp_case()
    assert damp_pseudo_labels(g, hi, lo, y, eta=0.3, threshold=0.3, top_k=3).tolist() == [[True, True, False, False]]
    assert damp_pseudo_labels(g, hi, lo, y, eta=0.3, threshold=0.2, top_k=3).tolist() == [[True, True, False, True]]
    # top_k caps the count: the 2 highest of s (0.65, 0.35) although 0.25 and 0.2 pass the threshold.
    assert damp_pseudo_labels(g, hi, lo, y, eta=0.3, threshold=0.1, top_k=2).tolist() == [[True, True, False, False]]
    # eta 0: every best crop beats eta_i = 0, so class 2 gets (0.4 + 0.29) / 2 = 0.345 >= 0.3.
    assert damp_pseudo_labels(g, hi, lo, y, eta=0.0, threshold=0.3, top_k=3).tolist() == [[True, True, True, False]]


def test_damp_threshold_follows_the_observed_positive_score():
    """With the observed class's global score 0.1 < eta, eta_i = 0.1: class 2's best crop (0.29) now counts."""
    g, hi, lo, _ = damp_case()
    y = torch.tensor([[0, 0, 0, 1]])                          # class 3 observed, global score 0.1
    # s = (0.6 + 0.7)/2, (0.2 + 0.5)/2, (0.4 + 0.29)/2, (0.1 + 0.4)/2
    assert damp_pseudo_labels(g, hi, lo, y, eta=0.3, threshold=0.3, top_k=4).tolist() == [[True, True, True, False]]


def test_gpr_loss_terms_by_hand():
    """p = 0.5 everywhere; w = 2, b = -1 give k = sigmoid(0) = 0.5; mu = 0.5 gives v = 1, which the
    pseudo-positive's clamp to [1 - lam1, 1 - lam2] = [0.3, 0.5] lowers to 0.5 (weight 1 - 0.5)."""
    logits = torch.zeros(1, 4)
    labels = torch.tensor([[1, 0, 0, -1]])
    pseudo = torch.tensor([[False, True, False, False]])
    e, q2, q3 = 1e-7, 0.01, 1.0
    l_pos, l_neg = nl(0.5, e), nl(0.5, e)
    unobserved = 0.5 * (1 - 0.5 ** q2) / q2 + 0.5 * (1 - 0.5 ** q3) / q3
    terms = l_pos + 0.5 * (0.9 * l_pos + 0.1 * l_neg) + unobserved + 1.0 * l_neg
    regulariser = (4 * 0.5 - 1.5) ** 2 / 4 ** 2
    loss, modified = gpr_loss(logits, labels, pseudo, w=2.0, b=-1.0, mu=0.5, sigma=0.5, q2=q2, q3=q3,
                              lam=(0.7, 0.5), rho=0.9, reg=0.05, expected_num_pos=1.5)
    assert loss.item() == pytest.approx(terms / 4 + 0.05 * regulariser, rel=1e-6)
    assert modified.tolist() == [[False, True, False, False]]


def test_gpr_pseudo_weight_is_clamped_from_below():
    """mu = 0, sigma = 0.25: v(0.5) = exp(-2) = 0.135 < 1 - lam1 = 0.3, so the weight is 1 - 0.3."""
    logits, labels, pseudo = torch.zeros(1, 2), torch.tensor([[1, 0]]), torch.tensor([[False, True]])
    loss, _ = gpr_loss(logits, labels, pseudo, w=0.0, b=0.0, mu=0.0, sigma=0.25, q2=0.01, q3=1.0,
                       lam=(0.7, 0.5), rho=0.9, reg=0.0, expected_num_pos=1.0)
    assert loss.item() == pytest.approx((nl(0.5, 1e-7) + 0.7 * nl(0.5, 1e-7)) / 2, rel=1e-6)


def test_registry_defaults_are_the_authors():
    """VLPL's main_clip.py and AEVLP's configs/*.json, per dataset."""
    vlpl, aevlp = methods.get("VLPL"), methods.get("AEVLP")
    assert vlpl.settings("coco") == dict(optimizer="adam", lr=1e-5, bsize=8, lr_mult=1.0, num_epochs=10,
                                         early_stop_drop=math.inf)
    assert vlpl.settings("cub")["lr"] == 1e-4
    family = methods.vision_language
    assert family.VLPL_ALPHA.default_for("pascal") == 0.2 and family.VLPL_ALPHA.default_for("cub") == 0.01
    assert aevlp.settings("coco") == dict(optimizer="adam", lr=1e-5, lr_mult=10.0, bsize=16, num_epochs=8,
                                          early_stop_drop=2.0)
    assert aevlp.settings("cub")["bsize"] == 8 and aevlp.settings("nuswide")["num_epochs"] == 10
    assert family.AEVLP_K.default_for("pascal") == (0.0, 2.0, -2.0, -2.0)
    assert family.AEVLP_Q.default_for("cub") == (0.01, 1.5)
    assert family.DAMP_TOP_K.default_for("cub") == 32 and family.DAMP_THRESHOLD.default_for("nuswide") == 0.6


def stand_in_scores(demo_dir, tmp_path, mode):
    """A score file for the tiny demo from the demo scorer with a small random head in place of the
    pretrained one (seconds; the pipeline, not the scores' quality, is under test)."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 36))
    with torch.no_grad():
        head[2].weight.mul_(200)           # peaked scores, so that some pass the thresholds
    scorer = zero_shot.DemoHeadScorer(torch.device("cpu"), demo.CLASS_NAMES, model=head)
    out = str(tmp_path / f"scores_{mode}.npz")
    zero_shot.compute_scores(demo_dir, "demo", scorer, mode, grid_size=2, batch_size=32, out=out)
    with np.load(out) as z:
        return out, {name: z[name] for name in z.files}


def train_split(run_dir):
    """The training split (its rows of formatted_train_*.npy, its observed labels) of a run's config."""
    with open(os.path.join(run_dir, "config.json")) as f:
        return datasets.load_splits(types.SimpleNamespace(**json.load(f)))["train"]


@pytest.mark.parametrize("scheme, mode", [("VLPL", "vlpl"), ("AEVLP", "damp")])
def test_a_run_trains_on_the_pseudo_labels_of_its_score_file(demo_args, demo_dir, tmp_path, scheme, mode):
    """One epoch (77 training images, batch 7: no partial batch): the entries it counts as modified
    are the unobserved entries that the score file makes pseudo-positive, worked out here from the
    file, the run's split and the papers' rules (V1; A1-A4 with the defaults for datasets other than
    the four: COCO's eta 0.3, threshold 0.5, top 3)."""
    path, scores = stand_in_scores(demo_dir, tmp_path, mode)
    assert main.main(demo_args("--mod_scheme", scheme, "--zero_shot_scores", path, "--num_epochs", "1",
                               "--bsize", "7", "--exp_name", scheme)) == 0
    run_dir = os.path.join(str(tmp_path), scheme)
    split = train_split(run_dir)
    obs, g = split.labels_obs.dense().astype(np.float32), scores["global"][split.rows]
    if mode == "vlpl":
        pseudo = g > 0.3
    else:
        hi, lo = scores["crop_max"][split.rows], scores["crop_min"][split.rows]
        eta_i = np.minimum((g * obs).max(axis=1, keepdims=True), 0.3)
        s = (g + np.where(hi > eta_i, hi, lo)) / 2
        top3 = np.argsort(-s, axis=1, kind="stable")[:, :3]
        pseudo = np.zeros_like(s, dtype=bool)
        np.put_along_axis(pseudo, top3, np.take_along_axis(s, top3, axis=1) >= 0.5, axis=1)
    expected = int(((obs == 0) & pseudo).sum())
    assert 0 < expected < (obs == 0).sum(), "some pseudo-labels, not all, for the test to mean anything"
    assert read_log(run_dir)[-1]["num_modified"] == expected


def test_a_missing_score_file_stops_the_run_with_the_command_that_makes_it(demo_args, tmp_path, capsys):
    assert main.main(demo_args("--mod_scheme", "AEVLP", "--zero_shot_scores", str(tmp_path / "none.npz"),
                               "--num_epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "none.npz" in err and "zero_shot_scores.py" in err and "--mode damp" in err


def test_pseudo_labels_are_kept_row_sparse():
    """FixedPseudoLabels keeps each image's pseudo-positive classes (padded with -1), not an N x K mask,
    and gives back exactly the mask's rows; built from chunks, as from a memory-mapped score file."""
    mask = np.zeros((5, 6), dtype=bool)
    mask[0, [1, 4]] = mask[2, 5] = mask[4, [0, 2, 3]] = True          # rows 1 and 3: none
    state = FixedPseudoLabels.from_masks([mask[:2], mask[2:]], 6)
    assert state.classes.shape == (5, 3) and state.classes.dtype == torch.int32
    np.testing.assert_array_equal(state.classes[1].numpy(), [-1, -1, -1])
    idx = torch.tensor([4, 0, 3, 2])
    assert torch.equal(state(idx), torch.from_numpy(mask)[idx])
    assert state.state_dict() == {}                                   # made again from the file on resume
