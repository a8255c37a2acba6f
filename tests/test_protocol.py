"""The training protocols (LL paper vs Cole et al.), their optimizers, Cole et al.'s LinearInit and
the published settings, against values written out by hand from SPEC 5a/6 and Cole et al.'s train.py."""
import json
import os
import subprocess
import sys

import pytest
import torch

import config
import main
import train
from config import build_config, get_args_parser
from data.demo import ensure_demo_dataset
from helpers import interrupt_then_resume
from methods.cole import LabelEstimate
from models import build_model

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import table2_end_to_end  # noqa: E402
import table2_linear_init  # noqa: E402

TINY = ["--arch", "resnet18", "--weights", "none", "--image_size", "32", "--num_workers", "0", "--bsize", "8"]


def cfg_of(*argv):
    return build_config(get_args_parser().parse_args(["--arch", "resnet18", "--weights", "none", *argv]))


def groups_of(cfg):
    """(lr, momentum or None, weight decay) of each parameter group, and which module each holds."""
    model = build_model("resnet18", 20, "none")
    estimate = LabelEstimate(torch.zeros(10, 20, dtype=torch.int8)) if cfg.mod_scheme == "ROLE" else None
    optimizer = train.build_optimizer(model, cfg, estimate, linear_phase=cfg.linear_phase(1))
    owners = {id(p): name for name, module in (("backbone", model.backbone), ("head", model.head),
                                               ("estimate", estimate)) if module is not None
              for p in module.parameters()}
    return type(optimizer).__name__, [
        ({owners[id(p)] for p in g["params"]}, g["lr"], g.get("momentum"), g["weight_decay"])
        for g in optimizer.param_groups]


def test_optimizer_groups_of_each_protocol():
    # LL protocol on VOC (SPEC 6): SGD, momentum 0.9, weight decay 1e-3; head at 10 x 5e-3.
    kind, groups = groups_of(cfg_of("--dataset", "pascal", "--mod_scheme", "ROLE"))
    assert kind == "SGD"
    assert groups == [({"backbone"}, 5e-3, 0.9, 1e-3), ({"head"}, 5e-2, 0.9, 1e-3), ({"estimate"}, 5e-2, 0.9, 0.0)]
    # LL protocol on COCO: Adam at 1e-5, head 1e-4, no weight decay.
    kind, groups = groups_of(cfg_of("--dataset", "coco", "--mod_scheme", "LL-R"))
    assert kind == "Adam" and groups == [({"backbone"}, 1e-5, None, 0), ({"head"}, 1e-4, None, 0)]
    # Cole et al. (SPEC 5a): Adam always, the whole classifier at lr, the estimate at 10 x lr.
    kind, groups = groups_of(cfg_of("--dataset", "pascal", "--mod_scheme", "ROLE", "--protocol", "cole",
                                    "--lr", "1e-4"))
    assert kind == "Adam"
    assert groups == [({"backbone"}, 1e-4, None, 0), ({"head"}, 1e-4, None, 0), ({"estimate"}, 1e-3, None, 0.0)]
    # Cole et al.'s linear phase for ROLE on VOC: their lookup's lr 1e-3 (bsize 16), the estimate at 1e-2.
    cfg = cfg_of("--dataset", "pascal", "--mod_scheme", "ROLE", "--protocol", "cole", "--lr", "1e-4",
                 "--train_mode", "linear_init", "--linear_init_style", "cole")
    assert (cfg.linear_init_epochs, cfg.linear_init_lr, cfg.linear_init_bsize, cfg.total_epochs) == (25, 1e-3, 16, 35)
    kind, groups = groups_of(cfg)
    assert kind == "Adam" and groups == [({"head"}, 1e-3, None, 0), ({"estimate"}, 1e-2, None, 0.0)]


def test_cole_linear_init_lookup_and_protocol_switches():
    # Cole et al.'s train.py lookup: AN-LS 1e-4 with bsize 8 (16 on NUS-WIDE); ROLE 1e-3 with 16 (8 on CUB).
    for dataset, expected in (("pascal", (1e-4, 8)), ("nuswide", (1e-4, 16))):
        cfg = cfg_of("--dataset", dataset, "--mod_scheme", "LSAN", "--protocol", "cole", "--lr", "1e-3",
                     "--train_mode", "linear_init", "--linear_init_style", "cole")
        assert (cfg.linear_init_lr, cfg.linear_init_bsize) == expected
    cfg = cfg_of("--dataset", "cub", "--mod_scheme", "ROLE", "--protocol", "cole", "--lr", "1e-3",
                 "--train_mode", "linear_init", "--linear_init_style", "cole")
    assert (cfg.linear_init_lr, cfg.linear_init_bsize) == (1e-3, 8)
    # Unpublished (WAN): the protocol's head lr and --bsize.
    cfg = cfg_of("--dataset", "cub", "--mod_scheme", "WAN", "--protocol", "cole", "--lr", "1e-3", "--bsize", "8",
                 "--train_mode", "linear_init", "--linear_init_style", "cole")
    assert (cfg.linear_init_lr, cfg.linear_init_bsize) == (1e-3, 8)
    assert cfg_of("--dataset", "pascal", "--mod_scheme", "LL-R").early_stop
    assert not cfg_of("--dataset", "pascal", "--mod_scheme", "WAN", "--protocol", "cole", "--lr", "1e-3").early_stop
    # The LL paper's command line is unchanged: LL protocol, the VOC settings.
    cfg = cfg_of("--dataset", "pascal", "--mod_scheme", "LL-R")
    assert (cfg.protocol, cfg.optimizer, cfg.lr, cfg.head_lr, cfg.delta_rel) == ("ll", "sgd", 5e-3, 5e-2, 0.2)


def test_paper_settings_are_spec_section_6():
    # SPEC 6's table, written out by hand.
    expected = {
        "pascal": {"optimizer": "sgd", "lr": 5e-3, "delta_rel": {"LL-R": 0.2, "LL-Ct": 0.2, "LL-Cp": 0.1}},
        "coco": {"optimizer": "adam", "lr": 1e-5, "delta_rel": {"LL-R": 0.4, "LL-Ct": 0.2, "LL-Cp": 0.2}},
        "nuswide": {"optimizer": "adam", "lr": 1e-5, "delta_rel": {"LL-R": 0.4, "LL-Ct": 0.2, "LL-Cp": 0.2}},
        "cub": {"optimizer": "adam", "lr": 7.5e-5, "delta_rel": {"LL-R": 0.4, "LL-Ct": 0.4, "LL-Cp": 0.2}},
    }
    for dataset, settings in expected.items():        # what a plain run of each scheme gets
        for scheme, delta_rel in settings["delta_rel"].items():
            cfg = build_config(get_args_parser().parse_args(["--dataset", dataset, "--mod_scheme", scheme]))
            assert (cfg.optimizer, cfg.lr, cfg.delta_rel) == (settings["optimizer"], settings["lr"], delta_rel)
    assert config.COLE_SEARCH == {"bsize": (8, 16), "lr": (1e-2, 1e-3, 1e-4, 1e-5)}


@pytest.mark.parametrize("extra, message", [
    (["--protocol", "colee"], "no such protocol"),
    (["--protocol", "cole", "--mod_scheme", "WAN"], "no default --lr"),
    (["--protocol", "cole", "--lr", "1e-3", "--optimizer", "sgd"], "trains with adam"),
    (["--train_mode", "linear_init", "--linear_init_epochs", "10"], "leaves no fine-tuning epoch"),
    (["--train_mode", "linear_init", "--linear_init_style", "both"], "no such style"),
    (["--linear_init_lr", "1e-3"], "--linear_init_style cole"),
])
def test_bad_protocol_settings_exit_2(extra, message, capsys, tmp_path):
    assert main.main(["--dataset", "pascal", "--save_path", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not os.listdir(tmp_path)


def listed(capsys):
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]


def test_cole_search_dry_run_lists_every_pair(tmp_path, capsys):
    assert table2_end_to_end.main(["--dry_run", "--datasets", "pascal", "--methods", "WAN", "ROLE", "LL-R",
                                   "--save_path", str(tmp_path)]) == 0
    commands = listed(capsys)
    assert len(commands) == 2 * 8 + 1
    for method in ("WAN", "ROLE"):
        runs = [c for c in commands if f"--mod_scheme {method} " in c]
        pairs = {(c.split("--bsize ")[1].split()[0], c.split("--lr ")[1].split()[0]) for c in runs}
        assert pairs == {(b, lr) for b in ("8", "16") for lr in ("0.01", "0.001", "0.0001", "1e-05")}
        assert all("--protocol cole" in c for c in runs)
    ll = [c for c in commands if "--mod_scheme LL-R" in c]
    assert len(ll) == 1 and "--protocol ll" in ll[0] and "--lr" not in ll[0] and "--bsize" not in ll[0]
    assert "--exp_name pascal_WAN_cole_b8_lr0.01_s0 " in " ".join(commands) + " "
    # The cheaper choice: one (bsize, lr) per baseline row.
    assert table2_end_to_end.main(["--dry_run", "--datasets", "pascal", "--methods", "WAN", "--cole_bsizes", "16",
                                   "--cole_lrs", "1e-4", "--save_path", str(tmp_path)]) == 0
    commands = listed(capsys)
    assert len(commands) == 1 and "--bsize 16" in commands[0] and "--lr 0.0001" in commands[0]
    # LinearInit: Cole et al.'s rows in their style, the LL rows within the 10 epochs unless asked.
    assert table2_linear_init.main(["--dry_run", "--datasets", "cub", "--methods", "ROLE", "LL-Ct",
                                    "--save_path", str(tmp_path)]) == 0
    commands = listed(capsys)
    assert len(commands) == 9
    assert all("--linear_init_style cole" in c for c in commands if "ROLE" in c)
    assert "--linear_init_style within --linear_init_epochs 1" in [c for c in commands if "LL-Ct" in c][0]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("demo"))
    ensure_demo_dataset(folder, num_images={"train": 40, "val": 16})      # 32 train, 8 val, 16 test
    return folder


def test_cole_linear_init_runs_two_phases_and_resumes(demo_dir, tmp_path, monkeypatch):
    """2 linear epochs on cached features, then 2 fine-tuning epochs counted from 1 again: LL-R's
    warm-up (nothing rejected) comes back in the first fine-tuning epoch. A run interrupted at the
    start of fine-tuning resumes to the same log."""
    args = ["--dataset", "demo", "--data_dir", demo_dir, "--save_path", str(tmp_path), *TINY, "--lr", "1e-3",
            "--mod_scheme", "LL-R", "--delta_rel", "5", "--train_mode", "linear_init", "--linear_init_style",
            "cole", "--linear_init_epochs", "2", "--linear_init_bsize", "4", "--num_epochs", "2"]
    calls = []
    real_cache = train.cache_backbone_features

    def counting_cache(*a, **kw):
        calls.append(1)
        return real_cache(*a, **kw)

    monkeypatch.setattr(train, "cache_backbone_features", counting_cache)
    assert main.main([*args, "--exp_name", "full"]) == 0
    log = [json.loads(line) for line in open(tmp_path / "full" / "log.jsonl")]
    assert [(r["phase"], r["phase_epoch"], r["frozen_backbone"]) for r in log] == [
        ("linear", 1, True), ("linear", 2, True), ("fine_tune", 1, False), ("fine_tune", 2, False)]
    assert [r["num_modified"] > 0 for r in log] == [False, True, False, True]
    # LL-R at 5 %/epoch in phase epoch 2: k = ceil(b * 12 * 0.05) per batch of b, over 32 images.
    assert log[1]["num_modified"] == 8 * 3                      # 8 batches of 4: ceil(2.4) = 3
    assert log[3]["num_modified"] == 4 * 5                      # 4 batches of 8: ceil(4.8) = 5
    assert len(calls) == 1                                      # features cached once
    results = json.loads((tmp_path / "full" / "results.json").read_text())
    assert results["best_epoch"] in (3, 4) and results["linear_best_epoch"] in (1, 2)
    assert results["linear_init_style"] == "cole" and results["protocol"] == "ll"
    saved = json.loads((tmp_path / "full" / "config.json").read_text())
    assert (saved["linear_init_style"], saved["protocol"], saved["linear_init_bsize"]) == ("cole", "ll", 4)

    interrupt_then_resume(monkeypatch, args, "resumed", lambda calls, a: calls == 3)   # at fine-tuning
    resumed = [json.loads(line) for line in open(tmp_path / "resumed" / "log.jsonl")]
    strip = lambda records: [{k: v for k, v in r.items() if k != "time_s"} for r in records]  # noqa: E731
    assert strip(resumed) == strip(log)
    assert json.loads((tmp_path / "resumed" / "results.json").read_text())["test_map"] == results["test_map"]


def test_table2_scripts_run_from_the_command_line(tmp_path):
    """As a user starts them (scripts/ alone on the path): the repository's modules are found."""
    for script in ("table2_end_to_end.py", "table2_linear_init.py"):
        done = subprocess.run([sys.executable, os.path.join("scripts", script), "--dry_run", "--datasets", "cub",
                               "--methods", "EPR", "--save_path", str(tmp_path)],
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        # LinearInit: EPR has no published linear pair, so its 8 linear-only search runs come first.
        assert done.stdout.count("--protocol cole") == (16 if script == "table2_linear_init.py" else 8)
