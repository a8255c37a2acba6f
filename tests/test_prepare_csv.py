"""data/prepare.py --dataset csv: both layouts, the split, --classes, --simulate, every bad row
(with its line number), and training on the result; expectations written by hand."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import main
from data import demo_csv
from test_prepare import fails_with, load, run

LONG = """path,positives,negatives,split
a.png,cat;dog,,train
b.png,dog,cat,train
c.png, bird ,,test
d.png,,dog;bird,train
e.png,cat,bird,test
"""


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in "abcde":
        Image.new("RGB", (8, 8)).save(folder / f"{name}.png")
    return folder


def prepared(tmp_path, root, text, *flags):
    (tmp_path / "labels.csv").write_text(text)
    out = tmp_path / "out"
    run("--dataset", "csv", "--csv", tmp_path / "labels.csv", "--root", root, "--out", out, *flags)
    return out


def test_long_layout_keeps_real_partial_labels(tmp_path, root):
    out = prepared(tmp_path, root, LONG)
    assert json.loads((out / "class_names.json").read_text()) == ["bird", "cat", "dog"]
    assert list(load(out, "train", "images")) == ["images/a.png", "images/b.png", "images/d.png"]
    assert list(load(out, "val", "images")) == ["images/c.png", "images/e.png"]     # split "test"
    np.testing.assert_array_equal(load(out, "train", "labels_obs"), [[0, 1, 1], [0, -1, 1], [-1, 0, -1]])
    np.testing.assert_array_equal(load(out, "val", "labels_obs"), [[1, 0, 0], [-1, 1, 0]])
    assert load(out, "train", "labels_obs").dtype == np.int8
    assert not (out / "formatted_train_labels.npy").exists()                 # unknown entries: no truth
    assert os.path.samefile(out / "images", root)


def test_wide_layout_and_full_labels(tmp_path, root):
    out = prepared(tmp_path, root, "path,split,dog,cat\na.png,train,1,-1\nb.png,train,,1\nc.png,test,-1,0\n")
    assert json.loads((out / "class_names.json").read_text()) == ["cat", "dog"]
    np.testing.assert_array_equal(load(out, "train", "labels_obs"), [[-1, 1], [1, 0]])
    np.testing.assert_array_equal(load(out, "val", "labels_obs"), [[0, -1]])
    out = prepared(tmp_path, root, "path,split,dog,cat\na.png,train,1,-1\nb.png,train,-1,1\nc.png,test,-1,-1\n")
    np.testing.assert_array_equal(load(out, "train", "labels"), [[0, 1], [1, 0]])   # every entry known
    np.testing.assert_array_equal(load(out, "val", "labels"), [[0, 0]])


def test_classes_file_order_and_seeded_split(tmp_path, root):
    (tmp_path / "classes.txt").write_text("dog\ncat\n\nbird\nfish\n")
    text = "".join(line.rsplit(",", 1)[0] + "\n" for line in LONG.splitlines())  # no split column
    out = prepared(tmp_path, root, text, "--classes", tmp_path / "classes.txt")
    assert json.loads((out / "class_names.json").read_text()) == ["dog", "cat", "bird", "fish"]
    test_row = np.random.RandomState(1200).permutation(5)[4:]               # round(0.2 * 5) = 1 row
    assert list(load(out, "val", "images")) == [f"images/{'abcde'[test_row[0]]}.png"]
    rows = {"a": [1, 1, 0, 0], "b": [1, -1, 0, 0], "c": [0, 0, 1, 0], "d": [-1, 0, -1, 0], "e": [0, 1, -1, 0]}
    expected = [rows[p[len("images/")]] for p in load(out, "train", "images")]
    np.testing.assert_array_equal(load(out, "train", "labels_obs"), expected)


def test_simulate_single_positive(tmp_path, root):
    out = prepared(tmp_path, root, LONG, "--simulate", "single_positive")
    full = [[0, 1, 1], [0, 0, 1], [0, 0, 0]]                                  # positives taken as complete
    np.testing.assert_array_equal(load(out, "train", "labels"), full)
    observed = load(out, "train", "labels_obs")
    assert observed.dtype == np.float32 and set(np.unique(observed)) <= {0, 1}
    assert observed.sum(axis=1).tolist() == [1, 1, 0] and observed[1, 2] == 1      # one positive each
    assert (observed <= np.array(full)).all()
    np.testing.assert_array_equal(load(out, "val", "labels_obs"), [[1, 0, 0], [0, 1, 0]])   # one positive


@pytest.mark.parametrize("text, flags, message", [
    ("", (), "is empty"),
    ("path,negatives\na.png,cat\n", ("--csv_layout", "long"), "line 1: no 'positives' column"),
    ("file,cat\na.png,1\n", (), "line 1: no 'path' column"),
    ("path,positives\na.png,cat\nzz.png,dog\n", (), "line 3: image"),
    ("path,positives,negatives\na.png,cat;dog,\nb.png,cat,dog;cat\n", (), "line 3: ['cat'] both positive and negative"),
    ("path,positives\na.png,cat\nb.png,dog\nc.png,cat\nd.png,cow\n", ("--classes", "CLASSES"), "line 5: class 'cow' is not in --classes"),
    ("path,cow\na.png,1\n", ("--classes", "CLASSES"), "line 1: column 'cow' is not a class of --classes"),
    ("path,cat\na.png,1\nb.png,2\n", (), "line 3: column 'cat' holds '2'"),
    ("path,positives,split\na.png,cat,train\nb.png,cat,val\n", (), "line 3: split 'val'"),
    ("path,positives\na.png,cat\nb.png,dog\na.png,dog\n", (), "line 4: a.png is listed twice (first on line 2)"),
    ("path,positives\n", (), "no image rows"),
    ("path,positives,split\na.png,cat,train\n", (), "no test image"),
])
def test_bad_rows_stop_with_their_line(tmp_path, root, capsys, text, flags, message):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "labels.csv").write_text(text)
    flags = [str(tmp_path / "classes.txt") if f == "CLASSES" else f for f in flags]
    err = fails_with(capsys, "--dataset", "csv", "--csv", tmp_path / "labels.csv", "--root", root,
                     "--out", tmp_path / "out", *flags)
    assert f"labels.csv{', ' if 'line' in message else ''}" in err and message in err
    assert not (tmp_path / "out").exists()                                   # nothing written


def test_drop_missing_images(tmp_path, root, capsys):
    out = prepared(tmp_path, root, LONG.replace("d.png", "zz.png"), "--drop_missing_images")
    assert "line 5: image" in capsys.readouterr().err
    assert list(load(out, "train", "images")) == ["images/a.png", "images/b.png"]


def test_demo_csv_trains_end_to_end(tmp_path, tiny):
    csv_path = demo_csv.write_demo_csv(str(tmp_path / "own"), num_train=30, num_test=10)
    out = tmp_path / "formatted"
    run("--dataset", "csv", "--csv", csv_path, "--root", tmp_path / "own" / "images", "--out", out,
        "--simulate", "single_positive")
    assert len(load(out, "train", "images")) == 30 and len(load(out, "val", "images")) == 10
    assert main.main(["--dataset", "custom", "--data_dir", str(out), "--save_path", str(tmp_path / "runs"),
                      "--exp_name", "own", "--num_epochs", "1", *tiny]) == 0
    results = json.loads((tmp_path / "runs" / "own" / "results.json").read_text())
    assert len(results["test_per_class_ap"]) == 12
