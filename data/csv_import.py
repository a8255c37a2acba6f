"""Your own images and a CSV of their labels (data/README.md, "Your own data"), read by
``main.py --dataset custom --data_dir OUT``."""
import csv
import os
import sys
from typing import NamedTuple

import numpy as np

from data.formatted import PreparationError, formatted_path, require_file, write_class_names
from datasets import generate_observed_labels, split_indices

# The values of the CSV's optional split column, and the formatted split each goes to.
CSV_SPLITS = {"train": "train", "test": "val"}
# Cells of the wide layout: observed positive, unknown (0 or empty), observed negative.
WIDE_VALUES = {"1": 1, "0": 0, "": 0, "-1": -1}


class _Columns(NamedTuple):
    """What the header says about the rows: its names, the layout, the class columns of the wide
    layout, and the classes of --classes (None: any)."""
    header: list
    layout: str
    wide_classes: list
    known: set


def _csv_error(path, line_no, message):
    return PreparationError(f"{path}, line {line_no}: {message}")


def _class_list(cell):
    """';'-separated class names of a long-layout cell, stripped, empty ones left out."""
    return [name.strip() for name in cell.split(";") if name.strip()]


def _read_columns(reader, path, layout, class_names):
    """The header line, checked: the layout's columns are there and wide class columns are known."""
    header = [name.strip() for name in next(reader, [])]
    if not any(header):
        raise PreparationError(f"{path} is empty: expected a header line (data/README.md, 'Your own data')")
    if layout == "auto":
        layout = "long" if "positives" in header else "wide"
    needed = ("path", "positives") if layout == "long" else ("path",)
    absent = [name for name in needed if name not in header]
    if absent:
        raise _csv_error(path, 1, f"no {' or '.join(repr(a) for a in absent)} column in the "
                                  f"{layout} layout; header {header}")
    known = None if class_names is None else set(class_names)
    wide_classes = [] if layout == "long" else [h for h in header if h not in ("path", "split")]
    for name in wide_classes:
        if known is not None and name not in known:
            raise _csv_error(path, 1, f"column {name!r} is not a class of --classes")
    return _Columns(header, layout, wide_classes, known)


def _row_labels(path, line_no, cells, columns):
    """{class name: +1 or -1 (0 too in the wide layout)} of one row."""
    if columns.layout == "long":
        positives = _class_list(cells["positives"])
        negatives = _class_list(cells.get("negatives", ""))
        both = sorted(set(positives) & set(negatives))
        if both:
            raise _csv_error(path, line_no, f"{both} both positive and negative")
        return {**{n: -1 for n in negatives}, **{n: 1 for n in positives}}
    labels = {}
    for name in columns.wide_classes:
        if cells[name] not in WIDE_VALUES:
            raise _csv_error(path, line_no, f"column {name!r} holds {cells[name]!r}; "
                                            f"expected 1, 0, -1 or empty")
        labels[name] = WIDE_VALUES[cells[name]]
    return labels


def _parse_row(path, line_no, fields, columns, first_line):
    """(image, labels, split) of one non-blank row; ``first_line`` records where each image was."""
    header = columns.header
    if len(fields) != len(header):
        raise _csv_error(path, line_no, f"{len(fields)} fields, expected {len(header)} ({header})")
    cells = dict(zip(header, (cell.strip() for cell in fields)))
    image = cells["path"]
    if not image:
        raise _csv_error(path, line_no, "empty path")
    if image in first_line:
        raise _csv_error(path, line_no, f"{image} is listed twice (first on line {first_line[image]})")
    first_line[image] = line_no
    labels = _row_labels(path, line_no, cells, columns)
    unknown = sorted(n for n in labels if columns.known is not None and n not in columns.known)
    if unknown:
        raise _csv_error(path, line_no, f"class {unknown[0]!r} is not in --classes")
    split = cells.get("split")
    if split is not None and split not in CSV_SPLITS:
        raise _csv_error(path, line_no, f"split {split!r}; expected one of {tuple(CSV_SPLITS)}")
    return image, labels, split


def _image_present(path, line_no, root, image, drop_missing_images):
    """Whether the row's image exists; a missing one stops, or with ``drop_missing_images`` warns."""
    if os.path.isfile(os.path.join(root, image)):
        return True
    if not drop_missing_images:
        raise _csv_error(path, line_no, f"image {os.path.join(root, image)} does not exist "
                                        f"(--drop_missing_images leaves such rows out)")
    print(f"warning: {path}, line {line_no}: image {os.path.join(root, image)} does not exist; "
          f"dropped", file=sys.stderr)
    return False


def _read_rows(reader, path, root, columns, drop_missing_images):
    """[(image, labels, split)] of the rows after the header, blank ones skipped."""
    rows, first_line = [], {}
    for fields in reader:
        line_no = reader.line_num
        if not any(cell.strip() for cell in fields):
            continue
        image, labels, split = _parse_row(path, line_no, fields, columns, first_line)
        if _image_present(path, line_no, root, image, drop_missing_images):
            rows.append((image, labels, split))
    if not rows:
        raise PreparationError(f"{path}: no image rows (with an existing image) after the header")
    return rows


def _observed_matrix(rows, class_names):
    """(N, K) int8 labels of the rows, columns in ``class_names`` order."""
    column = {name: k for k, name in enumerate(class_names)}
    observed = np.zeros((len(rows), len(class_names)), dtype=np.int8)
    for row, (_, labels, _) in enumerate(rows):
        for name, value in labels.items():
            observed[row, column[name]] = value
    return observed


def read_label_csv(path, root, class_names=None, layout="auto", drop_missing_images=False):
    """Image paths and partial labels from a CSV (data/README.md, "Your own data").

    Layouts: "long", columns ``path,positives[,negatives][,split]`` with ';'-separated class names;
    "wide", columns ``path[,split]`` and one per class holding 1 (positive), -1 (negative), 0 or
    empty (unknown). "auto" is long when the header has a ``positives`` column.

    Args:
        path: the CSV file; root: the folder its image paths are relative to.
        class_names: the classes in column order, or None for every class the CSV names, sorted.
        drop_missing_images: leave out rows whose image does not exist (with a warning) instead
            of stopping.
    Returns:
        dict: "class_names"; "images" (N,) str paths relative to ``root``; "observed" (N, K) int8
        in {-1, 0, +1}; "split" (N,) str from the split column ("train" or "test"), or None.
    Raises:
        PreparationError naming the CSV line: an empty file, a missing column, an empty or
        missing or repeated path, a class both positive and negative, a class not in
        ``class_names``, a cell or split value not allowed.
    """
    with open(require_file(path, "csv"), newline="") as f:
        reader = csv.reader(f)
        columns = _read_columns(reader, path, layout, class_names)
        rows = _read_rows(reader, path, root, columns, drop_missing_images)
    if class_names is None:
        class_names = sorted({n for _, labels, _ in rows for n in labels} | set(columns.wide_classes))
    has_split = "split" in columns.header
    return {"class_names": list(class_names), "images": np.array([r[0] for r in rows], dtype=str),
            "observed": _observed_matrix(rows, class_names),
            "split": np.array([r[2] for r in rows], dtype=str) if has_split else None}


def read_class_file(path):
    """Class names, one per line (blank lines skipped); repeated names are an error."""
    seen = {}
    with open(require_file(path, "csv")) as f:
        for line_no, line in enumerate(f, start=1):
            name = line.strip()
            if name in seen:
                raise PreparationError(f"{path}, line {line_no}: class {name!r} repeated (line {seen[name]})")
            if name:
                seen[name] = line_no
    if not seen:
        raise PreparationError(f"{path} is empty: expected one class name per line")
    return list(seen)


def format_csv(table, simulate=None, test_frac=0.2, split_seed=1200):
    """The formatted splits of a ``read_label_csv`` table.

    The split column decides each row's split ("train": the official train set, which training
    splits into train and val; "test": the test set, written as formatted_val_*); without one, a
    seeded ``test_frac`` of the rows is the test set (``datasets.split_indices``).

    Labels: with ``simulate="single_positive"`` the CSV's positives are taken as complete (every
    other class negative) and become the full 0/1 labels, from which ``prepare_csv`` draws the
    observed ones. Otherwise the labels are real partial labels, kept as they are; the full labels
    are written too only when every entry is known (+1 or -1).
    Returns:
        {"train": {"images", "observed" or "labels"}, "val": ...}.
    """
    images, observed = table["images"], table["observed"]
    if table["split"] is not None:
        parts = {CSV_SPLITS[name]: np.flatnonzero(table["split"] == name) for name in CSV_SPLITS}
    else:
        train_idx, test_idx = split_indices(len(images), test_frac, split_seed)
        parts = {"train": train_idx, "val": test_idx}
    splits = {}
    for phase, idx in parts.items():
        split = {"images": images[idx]}
        if simulate == "single_positive":
            split["labels"] = (observed[idx] == 1).astype(np.float32)
        else:
            split["observed"] = observed[idx]
            if (observed[idx] != 0).all():
                split["labels"] = (observed[idx] == 1).astype(np.float32)
        splits[phase] = split
    return splits


def _check_nonempty(csv_path, table, splits):
    """Stop on an empty train or test set, saying what would fill it."""
    fix = ("its split column needs both train and test rows" if table["split"] is not None
           else "add rows or change --test_frac")
    for phase, split in splits.items():
        if len(split["images"]) == 0:
            raise PreparationError(f"{csv_path}: no {'test' if phase == 'val' else 'train'} image; {fix}")


def _image_prefix(root, out):
    """The prefix that makes the CSV's paths (relative to ``root``) relative to ``out``: the path
    from ``out`` to ``root`` when it lies inside, else "images", a link to ``root`` made here."""
    inside = os.path.relpath(os.path.realpath(root), os.path.realpath(out))
    if inside.split(os.sep)[0] != os.pardir:
        return "" if inside == os.curdir else inside
    link = os.path.join(out, "images")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(root), link)
        print(f"linked {link} -> {os.path.abspath(root)}")
    elif not (os.path.exists(link) and os.path.samefile(link, root)):
        raise PreparationError(f"{link} exists and is not {root}; choose another --out")
    return "images"


def _write_csv_split(out, phase, split, prefix, observed, num_classes):
    """The formatted_<phase>_* files of one split, replacing a previous preparation's labels."""
    for stale in ("labels.npy", "labels_obs.npy"):
        if os.path.exists(formatted_path(out, phase, stale)):
            os.remove(formatted_path(out, phase, stale))
    np.save(formatted_path(out, phase, "images.npy"),
            np.array([os.path.join(prefix, p) for p in split["images"]], dtype=str))
    if "labels" in split:
        np.save(formatted_path(out, phase, "labels.npy"), split["labels"])
    np.save(formatted_path(out, phase, "labels_obs.npy"), observed)
    name = "test" if phase == "val" else "train"
    print(f"{name} (formatted_{phase}_*): {len(split['images'])} images, {num_classes} classes, "
          f"{(observed == 1).sum() / len(observed):.2f} observed positives and "
          f"{(observed == -1).sum() / len(observed):.2f} negatives per image"
          + ("" if "labels" in split else "; no full labels (real partial labels)"))


def prepare_csv(csv_path, root, out, classes=None, layout="auto", simulate=None, test_frac=0.2,
                split_seed=1200, num_pos=1, num_neg=0, seed=1200, drop_missing_images=False):
    """Format your own images and CSV of labels into ``out`` (data/README.md, "Your own data"),
    read by ``main.py --dataset custom --data_dir OUT``.

    Image paths are written relative to ``out``: as they are when ``root`` lies inside ``out``,
    else under ``out/images``, a link to ``root``. With ``simulate="single_positive"`` the observed
    labels are drawn from the full ones with ``datasets.generate_observed_labels`` (``num_pos``,
    ``num_neg``, ``seed``; SPEC 2), float32 as for the simulated datasets; else they are the
    CSV's, int8 (OpenImages-style).
    """
    if not os.path.isdir(root):
        raise PreparationError(f"--root {root} is not a folder (the folder the CSV's image paths are relative to)")
    table = read_label_csv(csv_path, root, None if classes is None else read_class_file(classes), layout,
                           drop_missing_images)
    splits = format_csv(table, simulate, test_frac, split_seed)
    _check_nonempty(csv_path, table, splits)
    class_names = table["class_names"]
    os.makedirs(out, exist_ok=True)
    prefix = _image_prefix(root, out)
    write_class_names(out, class_names)
    for phase, split in splits.items():
        if simulate == "single_positive":
            observed = generate_observed_labels(split["labels"], num_pos=num_pos, num_neg=num_neg,
                                                seed=seed).astype(np.float32)
        else:
            observed = split["observed"]
        _write_csv_split(out, phase, split, prefix, observed, len(class_names))
    print(f"wrote {out}; train with: python main.py --dataset custom --data_dir {out}")
