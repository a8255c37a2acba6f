"""The registry's settings reach a plain main.py run (issue 18): the authors' batch size, lr, head
lr multiplier, epochs and stopping, unless the user passes them; and the schedules of APL and
GR-Loss count the fine-tuning epochs after Cole et al.'s linear phase."""
import math

import pytest
import torch

import train
from config import build_config, get_args_parser
from methods.gr_loss import epoch_schedule


def config(*argv):
    return build_config(get_args_parser().parse_args(list(argv)))


@pytest.mark.parametrize("argv, expected", [
    # Zhou et al.'s main.py: VOC batch 8, Adam 1e-5, one lr, stop at the first fall.
    (("--dataset", "pascal", "--mod_scheme", "EM-APL"), dict(bsize=8, lr=1e-5, lr_mult=1.0, early_stop_drop=0.0,
                                                            num_epochs=10, optimizer="adam")),
    (("--dataset", "cub", "--mod_scheme", "EM"), dict(bsize=8, lr=1e-4, lr_mult=1.0, early_stop_drop=0.0)),
    # yan4xi1/GRLoss config.py: batch 8, 8 epochs, early stop 2 points below the best, head at 10x.
    (("--dataset", "coco", "--mod_scheme", "GR-Loss"), dict(bsize=8, num_epochs=8, early_stop_drop=2.0, lr_mult=10.0)),
    # PartialLabelingCSL's train.py: Adam at 2e-4 for the whole model.
    (("--dataset", "pascal", "--mod_scheme", "CSL"), dict(optimizer="adam", lr=2e-4, lr_mult=1.0, bsize=16)),
    # BoostLU's train.py runs every epoch.
    (("--dataset", "coco", "--mod_scheme", "LL-R", "--boostlu"), dict(early_stop_drop=math.inf, lr=1e-5,
                                                                      delta_rel=0.5)),
    # The LL paper's (SPEC 6) for its own rows.
    (("--dataset", "pascal", "--mod_scheme", "LL-R"), dict(bsize=16, lr_mult=10.0, num_epochs=10, early_stop_drop=3.0,
                                                           optimizer="sgd", lr=5e-3)),
])
def test_defaults_of_a_plain_run(argv, expected):
    cfg = config(*argv)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_the_users_flags_win():
    cfg = config("--dataset", "pascal", "--mod_scheme", "EM-APL", "--bsize", "32", "--lr_mult", "10",
                 "--early_stop_drop", "3", "--num_epochs", "6", "--apl_warmup_epoch", "2")
    assert (cfg.bsize, cfg.lr_mult, cfg.early_stop_drop, cfg.num_epochs) == (32, 10.0, 3.0, 6)


def test_gr_schedule_starts_at_the_first_fine_tuning_epoch():
    """After a separate linear phase of 25 epochs, fine-tuning epoch t (cfg.phase_epoch) follows the
    schedule of a plain 8-epoch run: mu(t) = 0.5 + 0.3 (t / 8), w(t) = 2 (t - 1) / 8."""
    cole = config("--dataset", "coco", "--mod_scheme", "GR-Loss", "--train_mode", "linear_init",
                  "--linear_init_style", "cole", "--linear_init_lr", "1e-3")
    for t in (1, 2, 8):
        values = epoch_schedule(t, cole)
        assert values["mu"] == pytest.approx(0.5 + 0.3 * t / 8) and values["w"] == pytest.approx(2 * (t - 1) / 8)
    assert epoch_schedule(25, cole)["mu"] == pytest.approx(0.8)      # past T: the final values


def test_cole_linear_phase_trains_on_unflipped_features():
    """Cole et al.'s linear phase reads the unflipped features whatever flip the sampler drew."""
    features = torch.arange(12.0).reshape(1, 4, 3)                        # (1, N, C): unflipped only
    batches = [[(0, True), (1, False)], [(2, True), (3, True)]]
    got = list(train.CachedFeatureBatches(features, batches))
    assert torch.equal(got[0][0], features[0, [0, 1]]) and torch.equal(got[1][0], features[0, [2, 3]])
    both = torch.stack([features[0], -features[0]])                       # (2, N, C): style within flips
    assert torch.equal(next(iter(train.CachedFeatureBatches(both, batches)))[0], torch.stack([-features[0, 0],
                                                                                             features[0, 1]]))
