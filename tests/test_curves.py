"""curves.py and collect.py's curves command, on run folders written by hand."""
import json
import os
import sys

import pytest
from matplotlib.image import imread

import curves
import run_files

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import collect  # noqa: E402


def fake_run(folder, name, precision=False, best_epoch=2):
    """A run folder of 3 epochs; with ``precision``, an LL run on a split with ground truth (its
    warm-up epoch modifies nothing, so its precision is None)."""
    run_dir = folder / name
    run_dir.mkdir()
    records = [{"epoch": 1, "train_loss": 0.9, "val_map": 40.0},
               {"epoch": 2, "train_loss": 0.6, "val_map": 55.0},
               {"epoch": 3, "train_loss": 0.5, "val_map": 52.5}]
    if precision:
        for r, (n, p) in zip(records, [(0, None), (48, 0.25), (96, 0.3125)]):
            r.update(num_modified=n, modification_precision=p)
    (run_dir / "log.jsonl").write_text("".join(json.dumps({**r, "time_s": 1.0}) + "\n" for r in records))
    (run_dir / "results.json").write_text(json.dumps({"best_epoch": best_epoch, "best_val_map": 55.0}))
    return run_dir


def png_shape(path):
    """(height, width) of a PNG, after checking it is one and is not empty."""
    assert os.path.isfile(path) and os.path.getsize(path) > 0
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0
    assert image.std() > 0                                        # something is drawn
    return image.shape[:2]


def test_a_run_draws_two_panels_and_an_ll_run_with_truth_three(tmp_path):
    plain, ll = fake_run(tmp_path, "AN"), fake_run(tmp_path, "LL-R", precision=True)
    assert curves.panels(run_files.read_log(plain)) == ["val_map", "train_loss"]
    assert curves.panels(run_files.read_log(ll)) == ["val_map", "train_loss", "modification_precision"]
    assert curves.draw_run(plain) == os.path.join(plain, "curves.png")
    assert curves.draw_run(str(ll)) == os.path.join(ll, "curves.png")
    (h2, w2), (h3, w3) = png_shape(plain / "curves.png"), png_shape(ll / "curves.png")
    # One row of panels of one size each: the figure of three is half as wide again.
    assert h2 == h3 == round(curves.PANEL_HEIGHT * curves.DPI)
    assert (w2, w3) == (round(2 * curves.PANEL_WIDTH * curves.DPI), round(3 * curves.PANEL_WIDTH * curves.DPI))


def test_out_elsewhere_and_an_unfinished_run(tmp_path):
    run = fake_run(tmp_path, "running")
    os.remove(run / "results.json")                               # still training: no best epoch yet
    out = tmp_path / "figures" / "running.png"
    assert curves.draw_run(run, out=str(out)) == str(out)
    png_shape(out)
    assert not (run / "curves.png").exists()


def test_several_runs_on_one_figure(tmp_path):
    runs = [fake_run(tmp_path, "AN"), fake_run(tmp_path, "LL-Ct", precision=True, best_epoch=3)]
    out = tmp_path / "both.png"
    assert curves.draw_runs(runs, str(out)) == str(out)
    assert png_shape(out)[1] == round(2 * curves.PANEL_WIDTH * curves.DPI)


def test_collect_curves_command(tmp_path, capsys):
    runs = [fake_run(tmp_path, "AN"), fake_run(tmp_path, "LL-R", precision=True)]
    out = tmp_path / "curves_ab.png"
    assert collect.main(["curves", *map(str, runs), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    png_shape(out)
    assert collect.main(["curves", str(runs[1])]) == 0            # one run: its own curves.png, 3 panels
    assert png_shape(runs[1] / "curves.png")[1] == round(3 * curves.PANEL_WIDTH * curves.DPI)
    with pytest.raises(SystemExit):
        collect.main(["curves", *map(str, runs)])                 # several runs need --out
    with pytest.raises(SystemExit):
        collect.main(["curves", str(tmp_path / "nothing"), "--out", str(out)])
    with pytest.raises(SystemExit):
        collect.main(["table", str(tmp_path), str(tmp_path)])     # the tables take one folder
