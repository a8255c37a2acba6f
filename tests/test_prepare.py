"""data/prepare.py on tiny fake releases in each official format; expectations worked by hand."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import labels

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("prepare", REPO / "data" / "prepare.py")
prepare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare)

def write_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), (120, 30, 200)).save(path)


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def run(*args):
    prepare.main([str(a) for a in args])


def load(out, phase, kind):
    """A formatted file as an array: dense .npy, or a sparse label folder made dense (labels.py)."""
    if (out / f"formatted_{phase}_{kind}_csr").is_dir():
        store = labels.load_sparse(str(out / f"formatted_{phase}_{kind}_csr"))
        return store.rows(np.arange(store.shape[0]))
    return np.load(out / f"formatted_{phase}_{kind}.npy")


def fails_with(capsys, *args):
    """Run the CLI, expect exit status 2, return stderr."""
    with pytest.raises(SystemExit) as exit_info:
        run(*args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def one_hot_rows(width, positives):
    rows = np.zeros((len(positives), width), dtype=np.float32)
    for row, cols in enumerate(positives):
        rows[row, cols] = 1
    return rows


# ----------------------------------------------------------------------------- PASCAL VOC

VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
       "train", "tvmonitor"]
VOC_SETS = {  # per image, the labels that are not -1
    "train": {"2008_000003": {"cat": 0},                       # only difficult: dropped
              "2008_000001": {"aeroplane": 1, "bicycle": 0},
              "2008_000002": {"bicycle": 1, "person": 1},
              "2008_000004": {"tvmonitor": 1}},
    "val": {"2009_000002": {},                                 # no positive: dropped
            "2009_000001": {"dog": 1, "cat": 0}},
}
VOC_OBJECTS = {  # name: ((width, height), [(class, difficult, box)])
    "2008_000001": ((50, 60), [("aeroplane", 0, (10, 20, 30, 40)), ("bicycle", 1, (1, 2, 3, 4))]),
    "2008_000002": ((64, 48), [("bicycle", 0, (5, 5, 15, 15)), ("person", 0, (2, 3, 40, 45))]),
    "2008_000004": ((10, 12), [("tvmonitor", 0, (1, 1, 8, 9))]),
    "2009_000001": ((20, 20), [("dog", 0, (4, 5, 6, 7)), ("cat", 1, (1, 1, 2, 2))]),
}


def voc_xml(size, objects):
    parts = [f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height>"
             f"<depth>3</depth></size>"]
    for name, difficult, box in objects:
        bndbox = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        # A <part> with its own box, as on VOC person objects: must not be read as the object's.
        part = "<part><name>head</name><bndbox><xmin>99</xmin><ymin>99</ymin><xmax>99</xmax>" \
               "<ymax>99</ymax></bndbox></part>" if name == "person" else ""
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult>"
                     f"<bndbox>{bndbox}</bndbox>{part}</object>")
    return "".join(parts) + "</annotation>"


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "raw"
    devkit = root / "VOCdevkit" / "VOC2012"
    for phase, images in VOC_SETS.items():
        for cls in VOC:
            lines = "".join(f"{name} {labels.get(cls, -1):2d}\n" for name, labels in images.items())
            write_text(devkit / "ImageSets" / "Main" / f"{cls}_{phase}.txt", lines)
        for name in images:
            write_image(devkit / "JPEGImages" / f"{name}.jpg")
    for name, (size, objects) in VOC_OBJECTS.items():
        write_text(devkit / "Annotations" / f"{name}.xml", voc_xml(size, objects))
    return root


def test_pascal(voc_root, tmp_path):
    out = tmp_path / "out"
    run("--dataset", "pascal", "--root", voc_root, "--out", out)

    assert json.loads((out / "class_names.json").read_text()) == VOC
    assert load(out, "train", "images").tolist() == [
        "2008_000001.jpg", "2008_000002.jpg", "2008_000004.jpg"]
    train = load(out, "train", "labels")
    assert train.dtype == np.float32
    np.testing.assert_array_equal(train, np.array([
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # bicycle 0 = negative
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]))
    obs = load(out, "train", "labels_obs")
    assert obs.dtype == np.float32
    # Cole et al.'s generator (SPEC 2) by hand: RandomState(1200); row 0's one positive is kept (its
    # shuffle draws nothing), the shuffle of its 19 negatives draws 18 numbers; row 1's shuffle of
    # [1, 14] then puts 14 first, so person (14) is observed, not bicycle (1); row 2 keeps its one.
    # num_neg 0: no observed negative.
    np.testing.assert_array_equal(obs, one_hot_rows(20, [[0], [14], [19]]))

    # The val set has only a dog: every other column, cat (difficult) included, is 0.
    assert load(out, "val", "images").tolist() == ["2009_000001.jpg"]
    np.testing.assert_array_equal(load(out, "val", "labels"), one_hot_rows(20, [[11]]))
    np.testing.assert_array_equal(load(out, "val", "labels_obs"), one_hot_rows(20, [[11]]))

    boxes = json.loads((out / "formatted_train_boxes.json").read_text())
    assert boxes == {
        "boxes": [[[0, 10, 20, 30, 40], [1, 1, 2, 3, 4]],
                  [[1, 5, 5, 15, 15], [14, 2, 3, 40, 45]],
                  [[19, 1, 1, 8, 9]]],
        "sizes": [[50, 60], [64, 48], [10, 12]]}
    assert json.loads((out / "formatted_val_boxes.json").read_text()) == {
        "boxes": [[[11, 4, 5, 6, 7], [7, 1, 1, 2, 2]]], "sizes": [[20, 20]]}

    # The image root of the layout resolves through a link to the raw release.
    assert (out / "VOCdevkit").is_symlink()
    assert (out / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2008_000004.jpg").is_file()


def test_pascal_missing_file_names_it(voc_root, tmp_path, capsys):
    (voc_root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "cow_val.txt").unlink()
    err = fails_with(capsys, "--dataset", "pascal", "--root", voc_root, "--out", tmp_path / "out")
    assert "cow_val.txt" in err and "missing file" in err
    assert not (tmp_path / "out").exists()


def test_pascal_malformed_label_names_file_and_line(voc_root, tmp_path, capsys):
    write_text(voc_root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "dog_train.txt",
               "2008_000001 -1\n2008_000002  2\n")
    err = fails_with(capsys, "--dataset", "pascal", "--root", voc_root, "--out", tmp_path / "out")
    assert "dog_train.txt, line 2" in err


def test_missing_images_fail_or_are_dropped(voc_root, tmp_path, capsys):
    (voc_root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2008_000002.jpg").unlink()
    out = tmp_path / "out"
    err = fails_with(capsys, "--dataset", "pascal", "--root", voc_root, "--out", out)
    assert "1 of 3 train images are missing" in err and "2008_000002.jpg" in err
    assert not out.exists()   # nothing written before every check passed

    run("--dataset", "pascal", "--root", voc_root, "--out", out, "--drop_missing_images")
    assert load(out, "train", "images").tolist() == ["2008_000001.jpg", "2008_000004.jpg"]
    np.testing.assert_array_equal(load(out, "train", "labels"), one_hot_rows(20, [[0], [19]]))
    boxes = json.loads((out / "formatted_train_boxes.json").read_text())
    assert boxes["sizes"] == [[50, 60], [10, 12]]


# ----------------------------------------------------------------------------- COCO

COCO_CATEGORIES = [{"id": 5, "name": "airplane"}, {"id": 1, "name": "person"},
                   {"id": 3, "name": "car"}]


def coco_instances(image_ids, annotations, categories=COCO_CATEGORIES):
    return {"images": [{"id": i, "width": 10 * i, "height": 10 * i + 1} for i in image_ids],
            "annotations": [{"id": n, "image_id": i, "category_id": c, "bbox": bbox, "iscrowd": 0}
                            for n, (i, c, bbox) in enumerate(annotations)],
            "categories": categories}


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "raw"
    train = coco_instances([9, 10, 25, 100, 7], [   # image 7 has no annotation: dropped
        (100, 3, [1, 2, 3, 4]), (9, 1, [0.5, 1.5, 2, 2]), (100, 5, [10, 10, 5, 5]),
        (25, 1, [0, 0, 1, 1]), (25, 1, [2, 2, 1, 1]), (10, 3, [3, 3, 4, 4])])
    val = coco_instances([4, 3], [(4, 5, [1, 1, 1, 1]), (3, 1, [0, 0, 2, 2])])  # no car in val
    for phase, instances in (("train", train), ("val", val)):
        write_text(root / "annotations" / f"instances_{phase}2014.json", json.dumps(instances))
        for image in instances["images"]:
            write_image(root / f"{phase}2014" / f"COCO_{phase}2014_{image['id']:012d}.jpg")
    return root


def test_coco(coco_root, tmp_path):
    out = tmp_path / "out"
    run("--dataset", "coco", "--root", coco_root, "--out", out)

    assert json.loads((out / "class_names.json").read_text()) == ["airplane", "person", "car"]
    # Cole et al. sort the ids as strings: 10 < 100 < 25 < 9.
    assert load(out, "train", "images").tolist() == [
        "train2014/COCO_train2014_000000000010.jpg", "train2014/COCO_train2014_000000000100.jpg",
        "train2014/COCO_train2014_000000000025.jpg", "train2014/COCO_train2014_000000000009.jpg"]
    train = load(out, "train", "labels")
    np.testing.assert_array_equal(train, np.array([[0, 0, 1], [1, 0, 1], [0, 1, 0], [0, 1, 0]]))
    obs = load(out, "train", "labels_obs")
    np.testing.assert_array_equal(obs[[0, 2, 3]], train[[0, 2, 3]])
    assert obs[1].tolist() in ([1, 0, 0], [0, 0, 1])
    assert json.loads((out / "formatted_train_boxes.json").read_text()) == {
        "boxes": [[[2, 3, 3, 7, 7]],
                  [[2, 1, 2, 4, 6], [0, 10, 10, 15, 15]],
                  [[1, 0, 0, 1, 1], [1, 2, 2, 3, 3]],
                  [[1, 0.5, 1.5, 2.5, 3.5]]],
        "sizes": [[100, 101], [1000, 1001], [250, 251], [90, 91]]}

    assert load(out, "val", "images").tolist() == [
        "val2014/COCO_val2014_000000000003.jpg", "val2014/COCO_val2014_000000000004.jpg"]
    np.testing.assert_array_equal(load(out, "val", "labels"), np.array([[0, 1, 0], [1, 0, 0]]))
    np.testing.assert_array_equal(load(out, "val", "labels_obs"), np.array([[0, 1, 0], [1, 0, 0]]))

    # Image root '' of the layout: both image folders are linked into OUT.
    assert (out / "train2014").is_symlink() and (out / "val2014").is_symlink()
    assert (out / "val2014" / "COCO_val2014_000000000004.jpg").is_file()


def test_coco_category_mismatch(coco_root, tmp_path, capsys):
    val = coco_instances([3], [(3, 1, [0, 0, 2, 2])], categories=COCO_CATEGORIES[::-1])
    write_text(coco_root / "annotations" / "instances_val2014.json", json.dumps(val))
    err = fails_with(capsys, "--dataset", "coco", "--root", coco_root, "--out", tmp_path / "out")
    assert "instances_val2014.json" in err and "categories" in err


def test_coco_missing_annotations(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    err = fails_with(capsys, "--dataset", "coco", "--root", tmp_path / "raw",
                     "--out", tmp_path / "o")
    assert os.path.join("annotations", "instances_train2014.json") in err


# ----------------------------------------------------------------------------- NUS-WIDE

def nuswide_release(root, labels_train, images_train=("actor/1.jpg", "beach/2.jpg", "beach/3.jpg")):
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "formatted_train_images.npy", np.array(images_train))
    np.save(root / "formatted_train_labels.npy", labels_train)
    np.save(root / "formatted_val_images.npy", np.array(["zebra/4.jpg"]))
    np.save(root / "formatted_val_labels.npy", one_hot_rows(81, [[80]]).astype(np.float64))
    for path in list(images_train) + ["zebra/4.jpg"]:
        write_image(root / "Flickr" / path)


def test_nuswide_in_place(tmp_path):
    # Cole et al.'s files are downloaded into data/nuswide itself: ROOT == OUT.
    root = tmp_path / "nuswide"
    labels = one_hot_rows(81, [[0], [2, 5], []]).astype(np.float64)   # last row: no positive
    nuswide_release(root, labels)
    run("--dataset", "nuswide", "--root", root, "--out", root)

    assert load(root, "train", "images").tolist() == ["actor/1.jpg", "beach/2.jpg", "beach/3.jpg"]
    train = load(root, "train", "labels")
    assert train.dtype == np.float32
    np.testing.assert_array_equal(train, labels)
    obs = load(root, "train", "labels_obs")
    # Row 1 keeps 5 of [2, 5] (Cole et al.'s generator by hand: see the next test); row 2 is kept,
    # with no observed label.
    np.testing.assert_array_equal(obs, one_hot_rows(81, [[0], [5], []]))
    np.testing.assert_array_equal(load(root, "val", "labels_obs"), one_hot_rows(81, [[80]]))
    names = json.loads((root / "class_names.json").read_text())
    assert len(names) == 81 and names[:3] == ["airport", "animal", "beach"] and names[80] == "zebra"
    assert not (root / "Flickr").is_symlink()


def test_nuswide_shipped_observed_labels_are_checked_not_overwritten(tmp_path):
    """Cole et al.'s formatted_train_labels_obs.npy in ROOT == OUT: equal to the regenerated labels
    (row 1 keeps class 5: RandomState(1200), row 0's 80 negatives' shuffle draws 79 numbers, then the
    shuffle of [2, 5] puts 5 first), it is accepted and left byte for byte as it was."""
    root = tmp_path / "nuswide"
    labels = one_hot_rows(81, [[0], [2, 5], []]).astype(np.float64)
    nuswide_release(root, labels)
    np.save(root / "formatted_train_labels_obs.npy", one_hot_rows(81, [[0], [5], []]).astype(np.float64))
    before = (root / "formatted_train_labels_obs.npy").read_bytes()
    run("--dataset", "nuswide", "--root", root, "--out", root)
    assert (root / "formatted_train_labels_obs.npy").read_bytes() == before         # float64, not rewritten
    np.testing.assert_array_equal(load(root, "val", "labels_obs"), one_hot_rows(81, [[80]]))


def test_nuswide_shipped_observed_labels_that_differ_stop_preparation(tmp_path, capsys):
    root = tmp_path / "nuswide"
    nuswide_release(root, one_hot_rows(81, [[0], [2, 5], []]).astype(np.float64))
    shipped = one_hot_rows(81, [[0], [2], []])                    # class 2 where regeneration gives 5
    np.save(root / "formatted_train_labels_obs.npy", shipped)
    labels_before = (root / "formatted_train_labels.npy").read_bytes()
    err = fails_with(capsys, "--dataset", "nuswide", "--root", root, "--out", root)
    assert "formatted_train_labels_obs.npy" in err and "2 of 243 entries differ" in err and "nothing was written" in err
    np.testing.assert_array_equal(np.load(root / "formatted_train_labels_obs.npy"), shipped)
    assert (root / "formatted_train_labels.npy").read_bytes() == labels_before
    assert not (root / "class_names.json").exists()


@pytest.mark.parametrize("labels, message", [
    (one_hot_rows(81, [[0], [1]]), "(3, 81)"),                 # 2 rows for 3 images
    (one_hot_rows(80, [[0], [1], [2]]), "(3, 81)"),            # 80 classes
    (2 * one_hot_rows(81, [[0], [1], [2]]), "expected 0/1"),
])
def test_nuswide_rejects_bad_labels(tmp_path, capsys, labels, message):
    nuswide_release(tmp_path / "raw", labels)
    err = fails_with(capsys, "--dataset", "nuswide", "--root", tmp_path / "raw",
                     "--out", tmp_path / "o")
    assert "formatted_train_labels.npy" in err and message in err


# ----------------------------------------------------------------------------- CUB

CUB_ATTRIBUTES = "1 has_bill_shape::curved_(up_or_down)\n2 has_bill_shape::dagger\n" \
                 "3 has_wing_color::blue\n4 has_wing_color::brown\n"


@pytest.fixture
def cub_root(tmp_path):
    root = tmp_path / "raw"
    base = root / "CUB_200_2011"
    images = {1: "001.Albatross/a_1.jpg", 2: "001.Albatross/a_2.jpg", 3: "002.Auklet/b_3.jpg",
              4: "002.Auklet/b_4.jpg"}
    write_text(base / "images.txt", "".join(f"{i} {p}\n" for i, p in images.items()))
    write_text(base / "train_test_split.txt", "1 1\n2 0\n3 1\n4 0\n")
    write_text(root / "attributes.txt", CUB_ATTRIBUTES)
    present = {1: [1, 0, 0, 0], 2: [0, 1, 0, 0], 3: [0, 0, 1, 1], 4: [0, 0, 0, 0]}
    lines = [f"{i} {a + 1} {p} 3 {10 + a}.5"
             for i, row in present.items() for a, p in enumerate(row)]
    lines[10] = "3 3 1 4 0 12.5"   # an official-style line with an extra field
    write_text(base / "attributes" / "image_attribute_labels.txt", "\n".join(lines) + "\n")
    for path in images.values():
        write_image(base / "images" / path)
    return root


def test_cub(cub_root, tmp_path):
    out = tmp_path / "out"
    run("--dataset", "cub", "--root", cub_root, "--out", out)

    assert json.loads((out / "class_names.json").read_text()) == [
        "has_bill_shape::curved_(up_or_down)", "has_bill_shape::dagger", "has_wing_color::blue",
        "has_wing_color::brown"]
    assert load(out, "train", "images").tolist() == ["001.Albatross/a_1.jpg", "002.Auklet/b_3.jpg"]
    np.testing.assert_array_equal(load(out, "train", "labels"), np.array([[1, 0, 0, 0],
                                                                          [0, 0, 1, 1]]))
    obs = load(out, "train", "labels_obs")
    np.testing.assert_array_equal(obs[0], [1, 0, 0, 0])
    assert obs[1].tolist() in ([0, 0, 1, 0], [0, 0, 0, 1])
    assert load(out, "val", "images").tolist() == ["001.Albatross/a_2.jpg", "002.Auklet/b_4.jpg"]
    np.testing.assert_array_equal(load(out, "val", "labels"), np.array([[0, 1, 0, 0],
                                                                        [0, 0, 0, 0]]))
    np.testing.assert_array_equal(load(out, "val", "labels_obs"), np.array([[0, 1, 0, 0],
                                                                            [0, 0, 0, 0]]))
    assert not (out / "formatted_train_boxes.json").exists()
    assert (out / "CUB_200_2011" / "images" / "002.Auklet" / "b_4.jpg").is_file()


def test_cub_attribute_names_fallback_and_missing(cub_root, tmp_path, capsys):
    (cub_root / "attributes.txt").unlink()
    err = fails_with(capsys, "--dataset", "cub", "--root", cub_root, "--out", tmp_path / "o")
    assert str(cub_root / "attributes.txt") in err

    write_text(cub_root / "CUB_200_2011" / "attributes" / "attributes.txt", CUB_ATTRIBUTES)
    run("--dataset", "cub", "--root", cub_root, "--out", tmp_path / "o")
    assert len(json.loads((tmp_path / "o" / "class_names.json").read_text())) == 4


def test_cub_missing_attribute_label(cub_root, tmp_path, capsys):
    path = cub_root / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    err = fails_with(capsys, "--dataset", "cub", "--root", cub_root, "--out", tmp_path / "o")
    assert "image_attribute_labels.txt" in err and "image 4, attribute 4 appears 0 times" in err


# ----------------------------------------------------------------------------- OpenImages

OI_HEADER = "ImageID,Source,LabelName,Confidence\n"
OI_TRAIN = [  # (image, class, confidence); c0..c9 trainable, zz not
    ("ffff0001", "c3", 1), ("ffff0001", "c3", 0),      # conflict: the positive wins
    ("ffff0001", "c1", 0),
    ("00000002", "c3", 1), ("00000002", "c0", 1), ("00000002", "c7", 0), ("00000002", "c7", 0),
    ("0000000a", "c3", 1), ("0000000a", "c7", 1), ("0000000a", "zz", 1),
    ("00000003", "zz", 1),                              # no trainable class: dropped
    ("00000004", "c0", 0),
]
OI_VAL = [("00000005", "c9", 1), ("00000005", "c2", 0), ("00000006", "zz", 0)]
OI_TEST = [("00000007", "c9", 1), ("00000007", "c2", 0), ("00000008", "zz", 1)]
OI_SPLITS = {"train": OI_TRAIN, "validation": OI_VAL, "test": OI_TEST}


def oi_csv(rows):
    sources = ("verification", "crowdsource-verification")
    return OI_HEADER + "".join(f"{image},{sources[n % 2]},/m/{cls},{conf}\n"
                               for n, (image, cls, conf) in enumerate(rows))


@pytest.fixture
def oi_root(tmp_path):
    root = tmp_path / "raw"
    meta = root / "2017_11"
    write_text(meta / "classes-trainable.txt", "".join(f"/m/c{k}\n" for k in range(10)))
    names = [f"/m/c{k},Class {k}\n" for k in range(10)]
    names[1] = "/m/c1,\"Tulip, Sprenger's\"\n"
    write_text(meta / "class-descriptions.csv", "/m/zz,Not trainable\n" + "".join(names))
    for split, rows in OI_SPLITS.items():
        write_text(meta / split / "annotations-human.csv", oi_csv(rows))
        for image in {row[0] for row in rows}:
            write_image(root / "images" / split / f"{image}.jpg")
    return root


def test_openimages(oi_root, tmp_path):
    out = tmp_path / "out"
    run("--dataset", "openimages", "--root", oi_root, "--out", out)

    names = json.loads((out / "class_names.json").read_text())
    assert names[:3] == ["Class 0", "Tulip, Sprenger's", "Class 2"] and len(names) == 10
    assert load(out, "train", "images").tolist() == [
        "train/00000002.jpg", "train/00000004.jpg", "train/0000000a.jpg", "train/ffff0001.jpg"]
    obs = load(out, "train", "labels_obs")
    assert obs.dtype == np.int8
    np.testing.assert_array_equal(obs, np.array([
        [1, 0, 0, 1, 0, 0, 0, -1, 0, 0],
        [-1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 1, 0, 0],
        [0, -1, 0, 1, 0, 0, 0, 0, 0, 0]]))
    # The official validation set is "val", the official test set "test": three file sets.
    assert load(out, "val", "images").tolist() == ["validation/00000005.jpg"]
    np.testing.assert_array_equal(load(out, "val", "labels_obs"),
                                  np.array([[0, 0, -1, 0, 0, 0, 0, 0, 0, 1]]))
    assert load(out, "test", "images").tolist() == ["test/00000007.jpg"]
    assert not list(out.glob("formatted_*_labels.npy"))       # truth unknown: no such file
    # Known training labels per class: c3 3, c0 2, c7 2 (its duplicate line counts once), c1 1,
    # the rest 0. Sorted descending, ties in column order: c3 c0 | c7 c1 | c2 c4 | c5 c6 | c8 c9.
    np.testing.assert_array_equal(np.load(out / "class_groups.npy"), [0, 1, 2, 0, 2, 3, 3, 1, 4, 4])
    # Stored sparse: 9 known entries of the 40, by row (CSR), no N x K file.
    assert not list(out.glob("formatted_*_labels_obs.npy"))
    store = labels.load_sparse(str(out / "formatted_train_labels_obs_csr"))
    assert store.shape == (4, 10) and store.indptr.tolist() == [0, 3, 4, 6, 8]
    assert store.indices.dtype == np.int16 and store.values.dtype == np.int8
    assert (out / "images" / "validation" / "00000005.jpg").is_file()


def test_openimages_bad_confidence(oi_root, tmp_path, capsys):
    write_text(oi_root / "2017_11" / "validation" / "annotations-human.csv",
               OI_HEADER + "00000005,verification,/m/c9,1\n00000005,machine,/m/c2,0.7\n")
    err = fails_with(capsys, "--dataset", "openimages", "--root", oi_root, "--out", tmp_path / "o")
    assert "annotations-human.csv, line 3" in err and "'0.7'" in err


def test_openimages_class_without_name(oi_root, tmp_path, capsys):
    write_text(oi_root / "2017_11" / "class-descriptions.csv", "/m/c0,Class 0\n")
    err = fails_with(capsys, "--dataset", "openimages", "--root", oi_root, "--out", tmp_path / "o")
    assert "class-descriptions.csv has no name for 9 trainable classes" in err


def test_resolve_openimages_labels():
    rows, cols, values, conflicts = prepare.resolve_openimages_labels(
        np.array([1, 0, 1, 1, 0]), np.array([2, 1, 2, 0, 1]), np.array([-1, -1, 1, -1, -1]), 3)
    assert conflicts == 1
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [1, 0, 2]
    assert values.tolist() == [-1, -1, 1]


def test_sparse_labels_round_trip(tmp_path):
    # Rows 2 and 3 have no entry; row 1 two.
    entries = (np.array([0, 1, 1, 4]), np.array([2, 0, 1, 1]), np.array([1, -1, 1, -1], np.int8))
    labels.save_sparse(str(tmp_path / "m_csr"), *labels.sparse_from_entries(*entries, (5, 3)), (5, 3))
    store = labels.load_sparse(str(tmp_path / "m_csr"))
    dense = np.array([[0, 0, 1], [-1, 1, 0], [0, 0, 0], [0, 0, 0], [0, -1, 0]])
    np.testing.assert_array_equal(store.rows(np.arange(5)), dense)
    np.testing.assert_array_equal(store.rows([4, 1, 1]), dense[[4, 1, 1]])       # any rows, any order
    indptr, cols, values = store.entries([4, 2, 1])
    assert indptr.tolist() == [0, 1, 1, 3] and cols.tolist() == [1, 0, 1] and values.tolist() == [-1, -1, 1]
    with pytest.raises(ValueError):
        labels.sparse_from_entries(np.array([1, 0]), np.array([0, 0]), np.array([1, 1]), (2, 1))


# ----------------------------------------------------------------------------- CLI

def test_default_out_is_repo_data_folder(cub_root, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "REPO_ROOT", str(tmp_path / "repo"))
    run("--dataset", "cub", "--root", cub_root)
    assert (tmp_path / "repo" / "data" / "cub" / "formatted_val_labels_obs.npy").is_file()


def test_cli_exits_2_with_message(tmp_path):
    (tmp_path / "raw").mkdir()
    result = subprocess.run(
        [sys.executable, str(REPO / "data" / "prepare.py"), "--dataset", "cub",
         "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "missing file" in result.stderr and "images.txt" in result.stderr
    assert "Traceback" not in result.stderr


def test_prepared_openimages_trains_through_the_cli(oi_root, tmp_path):
    """prepare.py's output is what the trainer reads: partial labels, no truth, class groups."""
    import main
    out = tmp_path / "out"
    run("--dataset", "openimages", "--root", oi_root, "--out", out)
    assert main.main(["--dataset", "openimages", "--data_dir", str(out), "--save_path", str(tmp_path / "runs"),
                      "--exp_name", "oi", "--arch", "resnet18", "--weights", "none", "--image_size", "32",
                      "--num_workers", "0", "--num_epochs", "1", "--mod_scheme", "LL-R", "--delta_rel", "5"]) == 0
    results = json.loads((tmp_path / "runs" / "oi" / "results.json").read_text())
    # The single test image has one annotated positive (c9, group G5): its AP is 1 whatever the score;
    # and one annotated negative (c2, G3): AP 0, counted as upstream (SPEC 7). G1 has no annotated entry.
    assert results["test_map"] == 50.0 and results["test_map_G5"] == 100.0 and results["test_map_G3"] == 0.0
    assert results["test_map_G1"] is None
    # The paper's splits: all 4 official train images trained on, the official validation selects.
    assert results["num_images"] == {"train": 4, "val": 1, "test": 1}


def test_prepared_pascal_trains_through_the_cli(voc_root, tmp_path):
    import main
    out = tmp_path / "out"
    run("--dataset", "pascal", "--root", voc_root, "--out", out)
    assert main.main(["--dataset", "pascal", "--data_dir", str(out), "--save_path", str(tmp_path / "runs"),
                      "--exp_name", "voc", "--arch", "resnet18", "--weights", "none", "--image_size", "32",
                      "--num_workers", "0", "--num_epochs", "1", "--mod_scheme", "LL-Ct"]) == 0
    results = json.loads((tmp_path / "runs" / "voc" / "results.json").read_text())
    assert 0 <= results["test_map"] <= 100


def test_old_openimages_layout_stops_with_the_command_that_prepares_it_again(oi_root, tmp_path, capsys):
    """A folder of the old layout (dense int8 labels, the official validation set as the test set, no
    official test split) is refused with exit 2 and the command; a stale dense file is removed when
    the folder is prepared again, so the two storages are never both read."""
    import main
    out = tmp_path / "out"
    run("--dataset", "openimages", "--root", oi_root, "--out", out)
    old = tmp_path / "old"
    old.mkdir()
    for phase in ("train", "val"):
        np.save(old / f"formatted_{phase}_images.npy", load(out, phase, "images"))
        np.save(old / f"formatted_{phase}_labels_obs.npy", load(out, phase, "labels_obs").astype(np.int8))
    assert main.main(["--dataset", "openimages", "--data_dir", str(old), "--save_path", str(tmp_path / "runs"),
                      "--arch", "resnet18", "--weights", "none", "--mod_scheme", "AN"]) == 2
    err = capsys.readouterr().err
    assert "old layout" in err and f"python data/prepare.py --dataset openimages --root RAW_DIR --out {old}" in err
    run("--dataset", "openimages", "--root", oi_root, "--out", old)
    assert not list(old.glob("formatted_*_labels_obs.npy")) and (old / "formatted_test_images.npy").is_file()


def test_truncated_openimages_annotations_name_the_file_and_line(oi_root, tmp_path, capsys):
    path = oi_root / "2017_11" / "test" / "annotations-human.csv"
    write_text(path, OI_HEADER + "00000007,verification,/m/c9,1\n00000008,verifica")
    err = fails_with(capsys, "--dataset", "openimages", "--root", oi_root, "--out", tmp_path / "o")
    assert f"{path}, line 3: 2 fields, expected 4" in err
