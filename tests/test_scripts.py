"""The experiment scripts' dry runs and launcher, and the collector on fabricated run folders."""
import json
import os
import subprocess
import sys

import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
sys.path.insert(0, SCRIPTS)

import collect  # noqa: E402  (scripts/ is not a package: its scripts import each other by name)
import experiments  # noqa: E402
import figure5_delta_sweep  # noqa: E402
import figure6_fraction  # noqa: E402
import sweep_delta  # noqa: E402
import table2_end_to_end  # noqa: E402
import table2_linear_init  # noqa: E402
import table3_openimages  # noqa: E402


def listed_commands(capsys):
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]


def test_table2_dry_run_lists_every_method_dataset_and_seed(tmp_path, capsys):
    assert table2_end_to_end.main(["--dry_run", "--seeds", "2", "--save_path", str(tmp_path),
                                   "--data_dir", "/data"]) == 0
    commands = listed_commands(capsys)
    assert len(commands) == (5 + 4 * 8) * 4 * 2                      # 4 baseline rows searched over 8 pairs
    assert all(c.startswith("[new] ") for c in commands)
    full = [c for c in commands if "--exp_name coco_full_ll_s1 " in c]
    assert len(full) == 1 and "--train_set_variant clean" in full[0] and "--data_dir /data/coco" in full[0]
    assert sum("--exp_name coco_WAN_cole_b8_lr0.01_s0 " in c for c in commands) == 1
    assert not os.listdir(tmp_path)                                  # a dry run starts nothing


def test_linear_init_and_demo_presets(tmp_path, capsys):
    assert table2_linear_init.main(["--dry_run", "--demo", "--save_path", str(tmp_path),
                                    "--linear_init_epochs", "2", "--num_epochs", "7"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("[")]
    # 9 rows, and on the demo (no published linear-phase pair) the 4 Cole rows' linear search, 1 pair.
    assert len(commands) == 13 and all("--dataset demo" in c for c in commands)
    assert "13 runs in" in out and "9 new, 4 after linear search" in out
    ll_rows = [c for c in commands if "--protocol ll" in c]
    assert len(ll_rows) == 5 and all("_ll_li-within_s0 " in c for c in ll_rows)
    assert all("--train_mode linear_init --linear_init_style within --linear_init_epochs 2" in c for c in ll_rows)
    assert all("--linear_init_style cole" in c for c in commands if c not in ll_rows)
    linear = [c for c in commands if "_linear_b16_lr0.0001_s0 " in c]
    assert len(linear) == 4 and all(c.endswith("--num_epochs 7 --num_epochs 0") for c in linear)
    assert all(c.endswith("--num_epochs 7") for c in commands if c not in linear)   # unknown flags go to main.py
    assert all(("--delta_rel 3.0" in c) == ("--mod_scheme LL-" in c) for c in commands)


def test_linear_init_search_before_fine_tuning(tmp_path, capsys):
    """WAN and EPR have no published linear-phase pair: a linear-only run per (bsize, lr) first, and
    the fine-tuning runs wait for it, then take its best pair; LSAN and ROLE keep theirs."""
    argv = ["--dry_run", "--datasets", "pascal", "--save_path", str(tmp_path), "--methods", "WAN", "LSAN", "EPR", "ROLE"]
    assert table2_linear_init.main(argv) == 0
    commands = listed_commands(capsys)
    assert len(commands) == 8 * 6                                    # WAN, EPR: 8 linear + 8; LSAN, ROLE: 8
    wan = [c for c in commands if "--mod_scheme WAN " in c]
    assert [c.split("--exp_name ")[1].split()[0] for c in wan[:2]] == [
        "pascal_WAN_cole_li-cole_linear_b8_lr0.01_s0", "pascal_WAN_cole_li-cole_linear_b8_lr0.001_s0"]
    assert "--bsize 8 --lr 0.01 --linear_init_lr 0.01 --linear_init_bsize 8 --seed 0" in wan[0]
    assert wan[0].endswith("--num_epochs 0") and "--protocol cole" in wan[0]
    waiting = [c for c in commands if c.startswith("[after linear search] ")]
    assert len(waiting) == 16 and {c.split("--mod_scheme ")[1].split()[0] for c in waiting} == {"WAN", "EPR"}
    assert all("--linear_init_lr <best> --linear_init_bsize <best> " in c for c in waiting)
    assert not any("--linear_init_lr" in c for c in commands if "--mod_scheme LSAN " in c or "--mod_scheme ROLE " in c)

    for (bsize, lr), val in {(8, 1e-2): 40.0, (8, 1e-3): 55.0, (16, 1e-3): 61.0, (16, 1e-4): 60.0}.items():
        run_dir = tmp_path / f"pascal_WAN_cole_li-cole_linear_b{bsize}_lr{lr:g}_s0"
        run_dir.mkdir()
        (run_dir / "results.json").write_text(json.dumps({"best_val_map": val}))
    assert table2_linear_init.main(argv) == 0
    assert all(c.startswith("[after linear search] ") for c in listed_commands(capsys) if "pascal_WAN_cole_li-cole_b" in c)
    for bsize, lr in ((8, 1e-4), (8, 1e-5), (16, 1e-2), (16, 1e-5)):   # the rest of the linear search
        run_dir = tmp_path / f"pascal_WAN_cole_li-cole_linear_b{bsize}_lr{lr:g}_s0"
        run_dir.mkdir()
        (run_dir / "results.json").write_text(json.dumps({"best_val_map": 30.0}))
    assert table2_linear_init.main(argv) == 0
    commands = listed_commands(capsys)
    tuning = [c for c in commands if "pascal_WAN_cole_li-cole_b" in c]
    assert len(tuning) == 8 and all(c.startswith("[new] ") for c in tuning)
    assert all("--linear_init_lr 0.001 --linear_init_bsize 16 " in c for c in tuning)       # val 61
    assert "--bsize 8 --lr 0.01 --seed 0 --linear_init_lr 0.001" in tuning[0]
    assert sum(c.startswith("[after linear search] ") for c in commands) == 8               # EPR still waits


def test_launcher_runs_the_linear_search_first(tmp_path, monkeypatch, capsys):
    started = []

    def fake_run(cmd, cwd):
        started.append(cmd)
        name = cmd[cmd.index("--exp_name") + 1]
        if "_linear_" in name:                                       # main.py writes results.json
            lr = float(cmd[cmd.index("--linear_init_lr") + 1])
            (tmp_path / name).mkdir(exist_ok=True)                   # made by the launcher for its claim
            (tmp_path / name / "results.json").write_text(json.dumps({"best_val_map": 70.0 if lr == 1e-3 else 65.0}))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(experiments.subprocess, "run", fake_run)
    assert table2_linear_init.main(["--demo", "--save_path", str(tmp_path), "--methods", "WAN",
                                    "--cole_lrs", "1e-3", "1e-4"]) == 0
    names = [cmd[cmd.index("--exp_name") + 1] for cmd in started]
    assert names == ["demo_WAN_cole_li-cole_linear_b16_lr0.001_s0", "demo_WAN_cole_li-cole_linear_b16_lr0.0001_s0",
                     "demo_WAN_cole_li-cole_b16_lr0.001_s0", "demo_WAN_cole_li-cole_b16_lr0.0001_s0"]
    for cmd in started[2:]:
        assert cmd[cmd.index("--linear_init_lr") + 1] == "0.001" and cmd[cmd.index("--linear_init_bsize") + 1] == "16"
    assert "0 done, 0 to resume, 2 new, 2 after linear search" in capsys.readouterr().out

    # A failed linear run: the fine-tuning runs are not started, and the script says so.
    started.clear()
    other = tmp_path / "failed"
    monkeypatch.setattr(experiments.subprocess, "run", lambda cmd, cwd: started.append(cmd) or
                        subprocess.CompletedProcess(cmd, 1))
    assert table2_linear_init.main(["--demo", "--save_path", str(other), "--methods", "WAN"]) == 1
    assert len(started) == 1
    assert "2 runs failed: demo_WAN_cole_li-cole_linear_b16_lr0.0001_s0, demo_WAN_cole_li-cole_b16_lr0.0001_s0" \
        in capsys.readouterr().out


def test_ll_linear_init_style_cole_is_not_done_by_within_runs(tmp_path, capsys):
    (tmp_path / "demo_LL-R_ll_li-within_s0").mkdir()
    (tmp_path / "demo_LL-R_ll_li-within_s0" / "results.json").write_text("{}")
    assert table2_linear_init.main(["--dry_run", "--demo", "--save_path", str(tmp_path), "--methods", "LL-R"]) == 0
    assert listed_commands(capsys)[0].startswith("[done] ")
    assert table2_linear_init.main(["--dry_run", "--demo", "--save_path", str(tmp_path), "--methods", "LL-R",
                                    "--ll_linear_init_style", "cole"]) == 0
    (command,) = listed_commands(capsys)
    assert command.startswith("[new] ") and "--exp_name demo_LL-R_ll_li-cole_s0 " in command


def test_run_state_resumes_a_csl_run_killed_in_stage_1(tmp_path):
    opts = experiments.argparse.Namespace(save_path=str(tmp_path))
    run = experiments.Run("coco_CSL_ll_s0", "coco", [])
    assert experiments.run_state(run, opts) == "new"
    (tmp_path / "coco_CSL_ll_s0" / "csl_prior_ignore").mkdir(parents=True)
    assert experiments.run_state(run, opts) == "new"                 # a folder without a checkpoint
    (tmp_path / "coco_CSL_ll_s0" / "csl_prior_ignore" / "last.pt").write_text("")
    assert experiments.run_state(run, opts) == "resume"
    (tmp_path / "coco_CSL_ll_s0" / "results.json").write_text("{}")
    assert experiments.run_state(run, opts) == "done"


def test_table3_sweep_and_figure_dry_runs(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):                                  # no published delta_rel
        table3_openimages.main(["--dry_run", "--save_path", str(tmp_path)])
    assert "--delta_rel is required for the LL rows" in capsys.readouterr().err
    # Rows without an LL scheme need none.
    assert table3_openimages.main(["--dry_run", "--methods", "WAN", "LSAN", "--save_path", str(tmp_path)]) == 0
    assert len(listed_commands(capsys)) == 2
    assert table3_openimages.main(["--dry_run", "--delta_rel", "0.3", "--save_path", str(tmp_path)]) == 0
    commands = listed_commands(capsys)
    assert len(commands) == 7 and all("--protocol ll --arch resnet101 --image_size 224 --bsize 288" in c for c in commands)
    assert sum("--delta_rel 0.3" in c for c in commands) == 3 and sum("--mod_scheme IU" in c for c in commands) == 1
    assert any("--exp_name openimages_WAN_ll_s0 " in c and "--mod_scheme WAN " in c for c in commands)
    assert any("--exp_name openimages_LSAN_ll_s0 " in c and "--mod_scheme LSAN " in c for c in commands)
    assert not any("torch.distributed.run" in c for c in commands)
    assert table3_openimages.main(["--dry_run", "--delta_rel", "0.3", "--nproc_per_node", "4",
                                   "--save_path", str(tmp_path)]) == 0
    assert all("-m torch.distributed.run --standalone --nproc_per_node=4 " in c for c in listed_commands(capsys))

    assert figure5_delta_sweep.main(["--dry_run", "--seeds", "2", "--save_path", str(tmp_path)]) == 0
    commands = listed_commands(capsys)
    assert len(commands) == 10 and all("--dataset coco" in c and "--mod_scheme LL-Ct" in c for c in commands)
    assert {c.split("--delta_rel ")[1].split()[0] for c in commands} == {"0.1", "0.2", "0.3", "0.4", "0.5"}

    monkeypatch.chdir(tmp_path)
    assert sweep_delta.main(["--dry_run", "--dataset", "cub", "--scheme", "LL-R", "--deltas", "0.2", "0.4"]) == 0
    out = capsys.readouterr().out
    assert f"2 runs in {tmp_path}/runs/sweep_cub_LL-R:" in out and "--exp_name cub_LL-R_d0.4_s0 " in out
    with pytest.raises(SystemExit):                                  # which dataset?
        sweep_delta.main(["--dry_run"])

    assert figure6_fraction.main(["--dry_run", "--fractions", "0.1", "1.0", "--methods", "full", "LL-Ct",
                                  "--save_path", str(tmp_path)]) == 0
    commands = listed_commands(capsys)
    assert len(commands) == 4 and sum("--ss_frac_train 0.1" in c for c in commands) == 2
    assert any("--exp_name coco_full_f0.1_s0 " in c for c in commands)


def test_launcher_skips_finished_runs_and_resumes_interrupted_ones(tmp_path, monkeypatch, capsys):
    (tmp_path / "demo_AN_ll_s0").mkdir()
    (tmp_path / "demo_AN_ll_s0" / "results.json").write_text("{}")
    (tmp_path / "demo_WAN_cole_b16_lr0.0001_s0").mkdir()
    (tmp_path / "demo_WAN_cole_b16_lr0.0001_s0" / "last.pt").write_text("")
    started = []

    def fake_run(cmd, cwd):
        started.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if "demo_LSAN_cole_b16_lr0.0001_s0" in cmd else 0)

    monkeypatch.setattr(experiments.subprocess, "run", fake_run)
    status = table2_end_to_end.main(["--demo", "--save_path", str(tmp_path), "--methods", "AN", "WAN", "LSAN", "EPR"])
    assert status == 1                                                # LSAN failed; EPR still ran
    names = [cmd[cmd.index("--exp_name") + 1] for cmd in started]
    assert names == ["demo_WAN_cole_b16_lr0.0001_s0", "demo_LSAN_cole_b16_lr0.0001_s0", "demo_EPR_cole_b16_lr0.0001_s0"]
    assert started[0][-1] == "--resume" and "--resume" not in started[1]
    out = capsys.readouterr().out
    assert "1 done, 1 to resume, 2 new" in out and "1 runs failed: demo_LSAN_cole_b16_lr0.0001_s0" in out


def fabricate(folder, name, dataset, scheme, seed, test_map, val_map=50.0, clean=False, mode="end_to_end",
              delta=0.0, frac=1.0, groups=None, finished=True, extra=None):
    """A run folder as main.py leaves it (config.json, results.json), with made-up numbers; ``extra``:
    more config fields."""
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    config = {"dataset": dataset, "mod_scheme": scheme, "train_set_variant": "clean" if clean else "observed",
              "train_mode": mode, "delta_rel": delta, "ss_frac_train": frac, "seed": seed, **(extra or {})}
    (run_dir / "config.json").write_text(json.dumps(config))
    if finished:
        results = {"test_map": test_map, "best_val_map": val_map, **{f"test_map_G{g}": v for g, v in (groups or {}).items()}}
        (run_dir / "results.json").write_text(json.dumps(results))


def test_collector_table_beside_the_paper(tmp_path, capsys):
    runs = tmp_path / "table2_end_to_end"
    fabricate(runs, "coco_LL-R_s0", "coco", "LL-R", 0, 70.0, delta=0.4)
    fabricate(runs, "coco_LL-R_s1", "coco", "LL-R", 1, 72.0, delta=0.4)
    fabricate(runs, "coco_full_s0", "coco", "AN", 0, 77.5, clean=True)
    fabricate(runs, "pascal_WAN_s0", "pascal", "WAN", 0, 86.25)
    fabricate(runs, "pascal_AN_s0", "pascal", "AN", 0, 0.0, finished=False)
    assert collect.main(["table", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| method | protocol | VOC ours | VOC paper | COCO ours | COCO paper |"
    rows = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert list(rows) == ["Full label", "WAN", "LL-R"]                # paper order; unfinished left out
    # mean 71, sample std sqrt(2) = 1.41 over the two seeds, beside the paper's 71.0.
    assert rows["LL-R"] == "| LL-R | ll |  | 89.2 | 71.00 ± 1.41 (n=2) | 71.0 |"
    assert rows["WAN"] == "| WAN | ll | 86.25 | 86.5 |  | 64.8 |"
    assert rows["Full label"].endswith("| 77.50 | 78.0 |")


def test_collector_openimages_groups(tmp_path, capsys):
    runs = tmp_path / "table3_openimages"
    fabricate(runs, "openimages_AN_s0", "openimages", "AN", 0, 81.0, groups={g: 70.0 + g for g in range(1, 6)})
    assert collect.main(["table", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| method | protocol | OpenImages G1 ours | OpenImages G1 paper | OpenImages G2 ours |")
    assert lines[0].endswith("| OpenImages all ours | OpenImages all paper |")
    rows = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert list(rows) == ["Naive AN", "Curriculum", "IMCL"]          # the quoted rows with the paper's alone
    assert rows["Naive AN"] == ("| Naive AN | ll | 71.00 | 77.1 | 72.00 | 78.7 | 73.00 | 81.5 | 74.00 | 84.1 | "
                                "75.00 | 88.8 | 81.00 | 82.0 |")
    assert rows["IMCL"] == "| IMCL | quoted, no run of ours |  | 71.0 |  | 72.6 |  | 77.6 |  | 81.8 |  | 87.3 |  | 78.1 |"


def test_collector_keeps_the_search_run_best_on_val(tmp_path, capsys):
    """Cole et al.'s search: per seed the run with the best val mAP (not the best test mAP) is
    reported, with its bsize and lr and the protocol it ran under."""
    runs = tmp_path / "table2_end_to_end"
    for seed, picks in ((0, ((8, 1e-4, 60.0, 85.0), (16, 1e-4, 62.0, 84.0), (16, 1e-5, 58.0, 90.0))),
                        (1, ((8, 1e-4, 63.0, 86.0), (16, 1e-4, 61.0, 88.0)))):
        for bsize, lr, val, test in picks:
            fabricate(runs, f"pascal_ROLE_cole_b{bsize}_lr{lr:g}_s{seed}", "pascal", "ROLE", seed, test, val_map=val,
                      extra={"protocol": "cole", "bsize": bsize, "lr": lr})
    fabricate(runs, "pascal_LL-R_ll_s0", "pascal", "LL-R", 0, 89.0, delta=0.2, extra={"protocol": "ll"})
    assert collect.main(["table", str(runs)]) == 0
    rows = {line.split(" | ")[0][2:]: line for line in capsys.readouterr().out.splitlines()[2:]}
    # seed 0: b16 lr 1e-4 (val 62, test 84); seed 1: b8 lr 1e-4 (val 63, test 86): mean 85, std 1.41.
    assert rows["ROLE"] == "| ROLE | cole | 85.00 ± 1.41 (n=2) [b8 lr 0.0001, b16 lr 0.0001] | 87.9 |"
    assert rows["LL-R"] == "| LL-R | ll | 89.00 | 89.2 |"


def test_collector_keeps_protocols_and_styles_apart(tmp_path, capsys):
    """A row is a method under one protocol and LinearInit style, read from the runs' records: an
    old LL-protocol WAN run never joins the Cole search, within and cole LinearInit runs of LL-R
    stay two rows, and the linear-only search runs are no row at all."""
    runs = tmp_path / "table2_linear_init"
    cole = {"protocol": "cole", "linear_init_style": "cole", "num_epochs": 10}
    fabricate(runs, "pascal_WAN_s0", "pascal", "WAN", 0, 99.0, val_map=99.0, mode="linear_init",
              extra={"linear_init_style": "within"})                  # an old folder: protocol ll
    fabricate(runs, "pascal_WAN_cole_li-cole_b8_lr0.001_s0", "pascal", "WAN", 0, 80.0, val_map=60.0, mode="linear_init",
              extra={**cole, "bsize": 8, "lr": 1e-3})
    fabricate(runs, "pascal_WAN_cole_li-cole_b16_lr0.001_s0", "pascal", "WAN", 0, 82.0, val_map=59.0, mode="linear_init",
              extra={**cole, "bsize": 16, "lr": 1e-3})
    fabricate(runs, "pascal_WAN_cole_li-cole_linear_b8_lr0.001_s0", "pascal", "WAN", 0, 95.0, val_map=95.0,
              mode="linear_init", extra={**cole, "num_epochs": 0})
    fabricate(runs, "pascal_LL-R_ll_li-within_s0", "pascal", "LL-R", 0, 88.0, mode="linear_init",
              extra={"protocol": "ll", "linear_init_style": "within"})
    fabricate(runs, "pascal_LL-R_ll_li-cole_s0", "pascal", "LL-R", 0, 87.0, mode="linear_init",
              extra={"protocol": "ll", "linear_init_style": "cole"})
    assert collect.main(["table", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert lines == ["| WAN | cole, LinearInit cole | 80.00 [b8 lr 0.001] | 87.1 |",
                     "| WAN | ll, LinearInit within | 99.00 | 87.1 |",
                     "| LL-R | ll, LinearInit cole | 87.00 | 89.4 |",
                     "| LL-R | ll, LinearInit within | 88.00 | 89.4 |"]


def test_collector_table3_wan_and_lsan_beside_the_paper(tmp_path, capsys):
    runs = tmp_path / "table3_openimages"
    for scheme in ("WAN", "LSAN"):
        fabricate(runs, f"openimages_{scheme}_ll_s0", "openimages", scheme, 0, 76.0,
                  groups={g: 70.0 for g in range(1, 6)},
                  extra={"protocol": "ll", "num_images": {"train": 3400000, "val": 42000, "test": 125000}})
    assert collect.main(["table", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "OpenImages images, train / val / test: 3,400,000 / 42,000 / 125,000" in out      # the paper's splits
    rows = {line.split(" | ")[0][2:]: line for line in out.splitlines()[2:] if line.startswith("| ")}
    assert list(rows) == ["WAN", "LSAN (AN-LS)", "Curriculum", "IMCL"]
    assert rows["WAN"] == ("| WAN | ll | 70.00 | 71.8 | 70.00 | 72.8 | 70.00 | 76.3 | 70.00 | 79.7 | 70.00 | 84.7 | "
                           "76.00 | 77.0 |")
    assert rows["LSAN (AN-LS)"].endswith("| 70.00 | 85.6 | 76.00 | 75.0 |") and "| 68.4 | 70.00 | 69.3 |" in rows["LSAN (AN-LS)"]


def test_collector_sweep_picks_delta_on_val_and_draws_figures(tmp_path, capsys):
    sweep = tmp_path / "figure5"
    for delta, vals, tests in ((0.1, (60.0, 62.0), (70.0, 70.0)), (0.2, (64.0, 63.0), (69.0, 71.0)),
                               (0.3, (61.0, 61.0), (75.0, 75.0))):   # best test at 0.3, best val at 0.2
        for seed in (0, 1):
            fabricate(sweep, f"coco_LL-Ct_d{delta}_s{seed}", "coco", "LL-Ct", seed, tests[seed],
                      val_map=vals[seed], delta=delta)
    records = collect.load_runs(str(sweep))
    assert collect.best_delta(records) == {("coco", "LL-Ct"): 0.2}
    assert collect.main(["sweep", str(sweep), "--png", str(tmp_path / "fig5.png")]) == 0
    out = capsys.readouterr().out
    assert "| COCO | LL-Ct | 0.2 | 63.50 ± 0.71 (n=2) | 70.00 ± 1.41 (n=2) |" in out
    assert "Best delta_rel on val mAP for LL-Ct on COCO: 0.2" in out
    assert (tmp_path / "fig5.png").read_bytes()[:4] == b"\x89PNG"

    fraction = tmp_path / "figure6"
    for frac, weak, full in ((0.1, 50.0, 60.0), (1.0, 70.0, 78.0)):
        fabricate(fraction, f"coco_LL-Ct_f{frac}_s0", "coco", "LL-Ct", 0, weak, frac=frac, delta=0.2)
        fabricate(fraction, f"coco_full_f{frac}_s0", "coco", "AN", 0, full, frac=frac, clean=True)
    assert collect.main(["fraction", str(fraction), "--png", str(tmp_path / "fig6.png")]) == 0
    out = capsys.readouterr().out
    assert "| method | 10 % | 100 % |" in out and "| Full label | 60.00 | 78.00 |" in out
    assert "| LL-Ct | 50.00 | 70.00 |" in out
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG"
