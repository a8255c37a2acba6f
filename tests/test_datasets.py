"""Observed-label simulation, splits and formatted-file checks."""
import numpy as np
import pytest
from PIL import Image

import datasets
from errors import UserError


def upstream_observe_uniform(label_matrix, num_pos, num_neg, seed):
    """Cole et al.'s generator as published (preproc/generate_observed_labels.py), restated."""
    label_matrix = np.where(label_matrix == 0, -1.0, 1.0)
    rng = np.random.RandomState(seed)
    observed = np.zeros_like(label_matrix)
    for i in range(label_matrix.shape[0]):
        for value, num_sel in ((1.0, num_pos), (-1.0, num_neg)):
            idx_all = np.nonzero(label_matrix[i, :] == value)[0]
            rng.shuffle(idx_all)
            observed[i, idx_all if num_sel == -1 else idx_all[:num_sel]] = value
    return observed


@pytest.mark.parametrize("num_pos,num_neg", [(1, 0), (2, 3), (-1, 0)])
def test_observed_labels_bit_identical_to_upstream(num_pos, num_neg):
    rng = np.random.RandomState(5)
    labels = (rng.rand(300, 20) < 0.15).astype(np.float32)
    labels[7] = 0                                      # a row without positives
    ours = datasets.generate_observed_labels(labels, num_pos, num_neg, seed=1200)
    np.testing.assert_array_equal(ours, upstream_observe_uniform(labels, num_pos, num_neg, 1200))


def test_observed_labels_invariants():
    labels = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    obs = datasets.generate_observed_labels(labels)
    assert obs.dtype == np.int8
    np.testing.assert_array_equal((obs == 1).sum(1), [1, 0, 1])      # one positive per row that has one
    assert (labels[obs == 1] == 1).all() and not (obs == -1).any()
    assert obs[2, 1] == 1 and not obs[1].any()
    # Row 0 keeps the first of a seeded shuffle of its positives.
    first = np.array([0, 1, 3])
    np.random.RandomState(1200).shuffle(first)
    assert obs[0, first[0]] == 1
    with pytest.raises(ValueError):
        datasets.generate_observed_labels(np.array([[0, 2]]))


def test_split_indices_match_the_seeded_permutation():
    perm = np.random.RandomState(1200).permutation(10)
    train, val = datasets.split_indices(10, 0.2, 1200)
    np.testing.assert_array_equal(val, np.sort(perm[8:]))
    np.testing.assert_array_equal(train, np.sort(perm[:8]))
    # round(0.4) = 0: no val, not everything (upstream's perm[-0:] would take all).
    train, val = datasets.split_indices(2, 0.2)
    assert len(val) == 0 and list(train) == [0, 1]
    # NumPy rounds halves to even: round(2.5) = 2.
    assert len(datasets.split_indices(5, 0.5)[1]) == 2


def test_subsample_indices():
    idx = np.arange(100, 120)
    kept = datasets.subsample_indices(idx, 0.25, seed=999)
    np.testing.assert_array_equal(kept, idx[np.sort(np.random.RandomState(999).permutation(20)[:5])])
    np.testing.assert_array_equal(datasets.subsample_indices(idx, 1.0), idx)


def write_formatted(folder, phase, images, labels, labels_obs):
    np.save(folder / f"formatted_{phase}_images.npy", np.array(images))
    if labels is not None:
        np.save(folder / f"formatted_{phase}_labels.npy", np.asarray(labels, np.float32))
    np.save(folder / f"formatted_{phase}_labels_obs.npy", np.asarray(labels_obs, np.float32))


@pytest.mark.parametrize("labels,labels_obs,message", [
    ([[1, 0], [0, 1]], [[1, 0], [0, 2]], "value 2.0 at [1, 1]"),
    ([[1, 0], [0, 0.5]], [[1, 0], [0, 0]], "value 0.5"),
    ([[1, 0, 0], [0, 1, 0]], [[1, 0], [0, 1]], "shape"),
    ([[1, 0], [0, 1]], [[1, 0], [1, 0]], "contradicts"),
])
def test_bad_formatted_files_are_clear_errors(tmp_path, labels, labels_obs, message):
    write_formatted(tmp_path, "train", ["a.png", "b.png"], labels, labels_obs)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        datasets.load_formatted(str(tmp_path), "train")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(UserError, match="formatted_val_images.npy"):
        datasets.load_formatted(str(tmp_path), "val")


def test_corrupt_image_names_its_path(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.jpg"
    Image.new("RGB", (8, 8), "red").save(good)
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    ds = datasets.ImageDataset([str(good), str(bad)], datasets.image_transform(4))
    image, idx = ds[0]
    assert image.shape == (4, 4, 3) and idx == 0
    with pytest.raises(UserError, match="bad.jpg"):
        ds[1]
