"""The demo dataset and its pretrained backbone: deterministic, cached, and never stale."""
import json
import os

import numpy as np
import torch

from data import demo, demo_backbone

SMALL = {"train": 6, "val": 3}


def _labels(folder):
    return np.load(os.path.join(folder, "formatted_train_labels.npy"))


def test_generation_is_deterministic_and_cached(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert demo.ensure_demo_dataset(a, SMALL) and demo.ensure_demo_dataset(b, SMALL)
    np.testing.assert_array_equal(_labels(a), _labels(b))
    assert not demo.ensure_demo_dataset(a, SMALL)                       # complete: reused as is
    spec = json.loads((tmp_path / "a" / demo.VERSION_FILE).read_text())
    assert spec["generator_version"] == demo.GENERATOR_VERSION and spec["num_images"] == SMALL


def test_stale_half_written_or_damaged_folders_are_regenerated(tmp_path, capsys):
    folder = str(tmp_path / "d")
    demo.ensure_demo_dataset(folder, SMALL)
    reference = _labels(folder)
    version = os.path.join(folder, demo.VERSION_FILE)

    spec = json.load(open(version))
    json.dump({**spec, "generator_version": spec["generator_version"] - 1}, open(version, "w"))
    open(os.path.join(folder, "images", "stray.png"), "w").close()      # a file of the old version
    assert demo.ensure_demo_dataset(folder, SMALL)
    assert "another generator" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(folder, "images", "stray.png"))

    os.remove(version)                                                   # half-written: no version file
    assert demo.ensure_demo_dataset(folder, SMALL)
    os.remove(os.path.join(folder, "images", "train_00004.png"))         # a file removed
    assert demo.ensure_demo_dataset(folder, SMALL)
    assert "train_00004.png" in capsys.readouterr().out
    os.remove(os.path.join(folder, "formatted_val_labels.npy"))
    assert demo.ensure_demo_dataset(folder, SMALL)
    np.testing.assert_array_equal(_labels(folder), reference)
    assert demo.ensure_demo_dataset(folder, {"train": 7, "val": 3})      # other settings


def test_pretraining_images_show_one_object_of_their_class():
    images, targets = demo_backbone.make_pretraining_images(40, 32, seed=0)
    assert images.shape == (40, 32, 32, 3) and images.dtype == torch.uint8
    assert len(demo_backbone.COMBINATIONS) == 36 and int(targets.max()) < 36
    for image, target in zip(images.numpy(), targets.tolist()):
        colour = np.array(demo.COLOURS[demo_backbone.COMBINATIONS[target][1]])
        # The background is grey +- 12 per channel; the object's pixels have exactly its colour.
        assert (np.abs(image.astype(int) - colour).max(axis=-1) == 0).sum() >= 14 * 14 // 3


def test_backbone_cache_is_reused_and_rebuilt_for_another_spec(tmp_path, capsys):
    spec = {**demo_backbone.SPEC, "num_images": 64, "num_held_out": 16, "epochs": 1}
    path = demo_backbone.ensure_demo_backbone(str(tmp_path), spec)
    assert "Pretraining" in capsys.readouterr().out
    first = torch.load(path, weights_only=True)
    assert "conv1.weight" in first and not any(k.startswith("fc.") for k in first)
    assert demo_backbone.ensure_demo_backbone(str(tmp_path), spec) == path
    assert "Pretraining" not in capsys.readouterr().out                 # cached
    demo_backbone.ensure_demo_backbone(str(tmp_path), {**spec, "train_seed": 1})
    assert "Pretraining" in capsys.readouterr().out                      # another spec: rebuilt
    assert not torch.equal(torch.load(path, weights_only=True)["conv1.weight"], first["conv1.weight"])


def test_a_training_run_takes_a_complete_demo_of_any_size(tmp_path):
    folder = str(tmp_path / "d")
    demo.ensure_demo_dataset(folder, SMALL)
    assert not demo.ensure_demo_dataset(folder)                          # what main.py calls: kept
    assert len(_labels(folder)) == SMALL["train"]
    spec = json.load(open(os.path.join(folder, demo.VERSION_FILE)))
    json.dump({**spec, "generator_version": 1}, open(os.path.join(folder, demo.VERSION_FILE), "w"))
    assert demo.ensure_demo_dataset(folder)                              # another generator: replaced
    assert len(_labels(folder)) == demo.NUM_IMAGES["train"]
