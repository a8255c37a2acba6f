"""Memory that grows with what is known (issue 24): sparse and dense label storage give the same run
bit for bit, LL-Cp's corrections as a structure of their own, checkpoints without label matrices,
the refusal of per-image state that cannot fit, --max_steps_per_epoch, and the pre-resized copy."""
import json
import os
import sys

import numpy as np
import pytest
import torch

import datasets
import labels
import main
import methods.cole
import train
from config import build_config, get_args_parser
from helpers import interrupt, interrupt_then_resume, read_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "data"))
import prepare  # noqa: E402
import resize_images  # noqa: E402
import simulate_openimages  # noqa: E402


def copy_with_storage(source, target, sparse):
    """``source``'s formatted folder with every label file stored sparse (or dense), the rest linked."""
    os.makedirs(target)
    for name in os.listdir(source):
        path = os.path.join(source, name)
        kind = next((k for k in ("labels_obs", "labels") if name.endswith(f"_{k}.npy") or name.endswith(f"_{k}_csr")), None)
        if kind is None:
            os.symlink(path, os.path.join(target, name))
            continue
        phase = name[len("formatted_"):].split("_")[0]
        store = labels.load_store(source, phase, kind, (-1, 0, 1))
        if sparse:
            labels.save_sparse(labels.sparse_path(target, phase, kind), *store.entries(np.arange(store.shape[0])),
                               store.shape)
        else:
            np.save(labels.dense_path(target, phase, kind), store.rows(np.arange(store.shape[0])))
    return target


def run_and_read(data_dir, dataset, save_path, name, *extra):
    assert main.main(["--dataset", dataset, "--data_dir", data_dir, "--save_path", str(save_path), "--exp_name", name,
                      "--arch", "resnet18", "--weights", "none", "--image_size", "32", "--num_workers", "0",
                      "--bsize", "16", "--lr", "1e-3", "--mod_scheme", "LL-Cp", "--delta_rel", "5",
                      "--num_epochs", "3", *extra]) == 0
    run_dir = os.path.join(str(save_path), name)
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    for key in ("train_time_s",):
        results.pop(key)
    keys = torch.load(os.path.join(run_dir, "last.pt"), weights_only=True)["corrections"]["keys"]
    return read_log(run_dir), results, keys


@pytest.fixture(scope="module")
def openimages_dir(tmp_path_factory):
    """A small prepared OpenImages V3 (the simulation's release writer: 68 / 8 / 8 images, 20 classes)."""
    root = tmp_path_factory.mktemp("oi")
    simulate_openimages.write_release(str(root / "raw"), 2e-5, num_classes=20, progress=lambda *a: None)
    prepare.prepare("openimages", str(root / "raw"), str(root / "data"))
    return str(root / "data")


@pytest.mark.parametrize("dataset", ["demo", "openimages"])
def test_sparse_and_dense_label_files_give_the_same_run_bit_for_bit(demo_dir, openimages_dir, tmp_path, dataset):
    source = demo_dir if dataset == "demo" else openimages_dir
    runs = {storage: run_and_read(copy_with_storage(source, str(tmp_path / storage), storage == "sparse"), dataset,
                                  tmp_path / "runs", storage)
            for storage in ("sparse", "dense")}
    (log_sparse, results_sparse, keys_sparse), (log_dense, results_dense, keys_dense) = runs["sparse"], runs["dense"]
    assert log_sparse == log_dense and results_sparse == results_dense
    assert torch.equal(keys_sparse, keys_dense) and len(keys_sparse) == log_sparse[-1]["num_written_total"] > 0
    if dataset == "openimages":       # the paper's splits: all of the official train set, its validation, its test
        sizes = {split: len(np.load(os.path.join(source, f"formatted_{phase}_images.npy")))
                 for split, phase in (("train", "train"), ("val", "val"), ("test", "test"))}
        assert results_sparse["num_images"] == sizes
        assert any(key.startswith("test_map_G") for key in results_sparse)


def test_checkpoints_hold_what_the_run_changed_never_the_labels(demo_args, tmp_path):
    assert main.main(demo_args("--mod_scheme", "AN", "--num_epochs", "1", "--exp_name", "an")) == 0
    checkpoint = torch.load(tmp_path / "an" / "last.pt", weights_only=True)
    assert "labels_obs" not in checkpoint and checkpoint["corrections"] is None
    assert checkpoint["label_estimate"] is None
    assert main.main(demo_args("--mod_scheme", "LL-Cp", "--delta_rel", "5", "--num_epochs", "2", "--exp_name", "cp")) == 0
    checkpoint = torch.load(tmp_path / "cp" / "last.pt", weights_only=True)
    # LL-Cp: k = ceil(16 * 12 * 5 %) = 10 a full batch, the authors' rule writes 9; the last batch of 13:
    # k = ceil(7.8) = 8, 7 written. Only those entries' keys are saved.
    assert "labels_obs" not in checkpoint and len(checkpoint["corrections"]["keys"]) == 4 * 9 + 7


def test_per_image_state_that_cannot_fit_is_refused_before_it_is_made(demo_args, capsys, monkeypatch):
    monkeypatch.setattr(train, "available_memory", lambda device: 10_000)         # bytes
    monkeypatch.setattr(methods.cole, "LabelEstimate", lambda *a: pytest.fail("the estimate was allocated"))
    assert main.main(demo_args("--mod_scheme", "ROLE", "--num_epochs", "1")) == 2
    err = capsys.readouterr().err
    # 16 bytes a cell: 77 x 12 x 16 = 14,784 bytes.
    assert "ROLE keeps a state per training entry: 0.0 GiB (77 training images x 12 classes)" in err
    assert "--ss_frac_train" in err
    assert main.main(demo_args("--mod_scheme", "AN", "--train_mode", "linear_init", "--num_epochs", "2")) == 2
    assert "LinearInit caches the backbone's features" in capsys.readouterr().err
    assert main.main(demo_args("--mod_scheme", "AN", "--num_epochs", "1")) == 0     # nothing per image: runs


def test_max_steps_per_epoch_caps_each_epoch_and_holds_through_resume(demo_args, tmp_path, monkeypatch):
    args = demo_args("--mod_scheme", "LL-R", "--delta_rel", "5", "--num_epochs", "3", "--max_steps_per_epoch", "2")
    assert main.main([*args, "--exp_name", "whole"]) == 0
    log = read_log(tmp_path / "whole")
    # 2 batches of 16 an epoch: LL-R modifies k = ceil(16 * 12 * (t - 1) * 5 %) in each: 10, then 20.
    assert [r["num_modified"] for r in log] == [0, 2 * 10, 2 * 20]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["max_steps_per_epoch"] == 2
    interrupt_then_resume(monkeypatch, args, "resumed", lambda calls, a: calls == 3)       # in epoch 3
    assert read_log(tmp_path / "resumed") == log
    assert main.main(demo_args("--max_steps_per_epoch", "0")) == 2


def test_corrections_are_found_before_and_after_the_epoch_ends():
    corrections = labels.Corrections(4, 3)
    corrections.add(np.array([2, 0]), np.array([[0, 1, 0], [1, 0, 1]], dtype=bool))
    # Row 0 is read again in the same epoch (not with this repository's samplers): still corrected.
    np.testing.assert_array_equal(corrections.apply(np.array([0, 1]), np.zeros((2, 3), np.int8)), [[1, 0, 1], [0, 0, 0]])
    corrections.commit()
    assert corrections.keys.tolist() == [0, 2, 7] and len(corrections) == 3
    batch = corrections.apply(np.array([3, 2, 0]), np.array([[0, 0, -1], [-1, 0, 0], [0, 0, 0]], np.int8))
    np.testing.assert_array_equal(batch, [[0, 0, -1], [-1, 1, 0], [1, 0, 1]])
    restored = labels.Corrections(4, 3)
    restored.load_state_dict(corrections.state_dict())
    assert restored.keys.tolist() == [0, 2, 7]
    old = labels.Corrections.from_label_matrix(np.array([[0, 0, 1], [0, 0, 0]]), torch.tensor([[1, 0, 1], [0, 1, 0]]))
    assert old.keys.tolist() == [0, 4]                  # +1 where the observed label was 0; (0, 2) was observed
    with pytest.raises(train.UserError):
        labels.Corrections(5, 3).load_state_dict(corrections.state_dict())


def test_label_files_are_checked_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(labels, "CHUNK_BYTES", 24)      # 2 rows of 12 at a time
    array = np.zeros((9, 12), np.float32)
    array[7, 5] = 2
    np.save(tmp_path / "formatted_train_labels_obs.npy", array)
    with pytest.raises(train.UserError, match=r"value 2.0 at \[7, 5\]"):
        labels.load_store(str(tmp_path), "train", "labels_obs", (-1, 0, 1))
    labels.save_sparse(str(tmp_path / "formatted_val_labels_obs_csr"), [0, 1, 1], np.array([3]), [2], (2, 12))
    with pytest.raises(train.UserError, match="entry 0 holds value 2"):
        labels.load_store(str(tmp_path), "val", "labels_obs", (-1, 0, 1))
    labels.save_sparse(str(tmp_path / "formatted_test_labels_obs_csr"), [0, 1, 1], np.array([12]), [1], (2, 12))
    with pytest.raises(train.UserError, match=r"columns \[0, 12\)"):
        labels.load_store(str(tmp_path), "test", "labels_obs", (-1, 0, 1))


def test_the_pre_resized_copy_holds_the_loaders_own_pixels(demo_dir, tmp_path, capsys):
    """A PNG copy at the run's size gives the loader exactly its pixels from the originals (the same
    run to the last digit); the copy resumes; a JPEG copy differs by JPEG's rounding only."""
    data = copy_with_storage(demo_dir, str(tmp_path / "demo"), sparse=False)
    cfg = build_config(get_args_parser().parse_args(["--dataset", "demo", "--data_dir", data, "--image_size", "32"]))
    original = datasets.load_splits(cfg)["test"]
    assert resize_images.main(["--dataset", "demo", "--data_dir", data, "--image_size", "32", "--num_workers", "2"]) == 0
    copied = datasets.load_splits(cfg)["test"]
    first = str(np.load(os.path.join(data, "formatted_val_images.npy"))[0])
    assert copied.paths[0] == os.path.join(data, "resized_32", first + ".png") != original.paths[0]
    transform = datasets.image_transform(32)
    for i in (0, 7, len(copied) - 1):
        assert torch.equal(datasets.ImageDataset(copied.paths, transform)[i][0],
                           datasets.ImageDataset(original.paths, transform)[i][0])
    # Resumable: a removed image (and the missing completion mark) is all that is written again.
    os.remove(copied.paths[3])
    assert resize_images.main(["--dataset", "demo", "--data_dir", data, "--image_size", "32", "--num_workers", "1"]) == 0
    assert "47 of 48 images already" in capsys.readouterr().out and os.path.isfile(copied.paths[3])
    run = lambda name: run_and_read(data, "demo", tmp_path / "runs", name, "--num_epochs", "2")[:2]   # noqa: E731
    with_copy = run("copy")
    os.rename(os.path.join(data, "resized_32"), os.path.join(data, "moved"))
    assert with_copy == run("originals")
    assert resize_images.main(["--dataset", "demo", "--data_dir", data, "--image_size", "32", "--format", "jpeg"]) == 0
    jpeg = datasets.load_splits(cfg)["test"]
    a, b = (datasets.ImageDataset(s.paths, transform)[0][0].int() for s in (jpeg, original))
    assert 0 < (a - b).abs().max() < 64


def test_a_run_folder_of_0976ac2_resumes(demo_args, tmp_path, monkeypatch, capsys):
    """A last.pt of before the corrections had their own structure holds the run's whole label matrix,
    its config.json no --llcp_write (LL-Cp then wrote every corrected entry) and its epoch records no
    written counts, the cumulative ones under other names: it resumes, to the numbers and records of
    an uninterrupted run, with --llcp_write all, and says so when resumed otherwise."""
    args = demo_args("--mod_scheme", "LL-Cp", "--delta_rel", "5", "--num_epochs", "3", "--llcp_write", "all")
    assert main.main([*args, "--exp_name", "whole"]) == 0
    interrupt(monkeypatch, args, "old", lambda calls, a: calls == 3)
    old = tmp_path / "old"
    checkpoint = torch.load(old / "last.pt", weights_only=True)
    initial = datasets.load_splits(build_config(get_args_parser().parse_args(args)))["train"].labels_obs.dense()
    matrix = torch.as_tensor(initial).flatten()
    matrix[checkpoint.pop("corrections")["keys"]] = 1
    for record in checkpoint["state"]["history"]:
        del record["num_written"], record["num_written_true_pos"]
        record["num_corrected_total"] = record.pop("num_written_total")
        record["corrected_precision_total"] = record.pop("written_precision_total")
    torch.save({**checkpoint, "labels_obs": matrix.view(initial.shape)}, old / "last.pt")
    config = json.loads((old / "config.json").read_text())
    config.pop("max_steps_per_epoch")
    (old / "config.json").write_text(json.dumps({**config, "method_options": {}}))
    assert main.main([*demo_args("--mod_scheme", "LL-Cp", "--delta_rel", "5", "--num_epochs", "3"),
                      "--exp_name", "old", "--resume"]) == 2
    assert "--llcp_write: all then, authors now" in capsys.readouterr().err
    assert main.main([*args, "--exp_name", "old", "--resume"]) == 0
    assert read_log(old) == read_log(tmp_path / "whole")
