"""Label matrices at any size: stored dense or sparse, read a batch of rows at a time, and LL-Cp's
written corrections.

A dataset's (N, K) label matrices (SPEC 1: observed labels in {-1, 0, +1}, full labels in {0, 1})
are files of the formatted layout (data/README.md), in one of two storages:
  - dense, ``formatted_<phase>_<kind>.npy``: Cole et al.'s files (float32 values), memory-mapped;
  - sparse, ``formatted_<phase>_<kind>_csr/``: the nonzero entries by row (CSR: ``indptr.npy``
    (N + 1,) int64, ``indices.npy`` (nnz,) int16 or int32 class columns, ``values.npy`` (nnz,) int8,
    and ``shape.json``), memory-mapped: 11 bytes a known entry plus 8 an image, so OpenImages V3's
    train split (3.4 M images, 20.9 M known of its 1.7e10 cells) takes about 0.2 GB, not 17.
Both read the same (``Labels``): a batch of rows is made dense when the training step needs it, and
the processes of a run share the files' pages instead of holding copies.
"""
import json
import os

import numpy as np
import torch

from errors import UserError

CHUNK_BYTES = 64 << 20          # dense files are read and checked in row chunks of about this size


class DenseStore:
    """An (N, K) matrix held as an array (a ``np.load(..., mmap_mode="r")`` memmap for files)."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape

    def rows(self, rows):
        """(len(rows), K) int8 of the given rows."""
        return np.asarray(self.array[np.asarray(rows)]).astype(np.int8)

    def entries(self, rows):
        """The nonzero entries of ``rows`` as CSR over them: (indptr, cols, values)."""
        rows = np.asarray(rows)
        counts, cols, values = [], [], []
        for start in range(0, len(rows), chunk_rows(self.shape[1])):
            block = self.rows(rows[start:start + chunk_rows(self.shape[1])])
            r, c = np.nonzero(block)
            counts.append(np.bincount(r, minlength=len(block)))
            cols.append(c.astype(np.int32))
            values.append(block[r, c])
        return _csr(counts, cols, values)


class SparseStore:
    """An (N, K) matrix held as CSR arrays of its nonzero entries (memmaps for files)."""

    def __init__(self, indptr, indices, values, shape):
        self.indptr, self.indices, self.values, self.shape = indptr, indices, values, tuple(shape)

    def _gather(self, rows):
        """(row of each entry within ``rows``, its position in indices/values) for the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == self.shape[0] and (len(rows) == 0 or (rows[0] == 0 and np.all(np.diff(rows) == 1))):
            lengths = np.diff(self.indptr)            # every row in order: no index arithmetic needed
            return np.repeat(np.arange(len(rows)), lengths), slice(None), lengths
        starts, lengths = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        owner = np.repeat(np.arange(len(rows)), lengths)
        first = np.cumsum(lengths) - lengths
        return owner, np.repeat(starts - first, lengths) + np.arange(lengths.sum()), lengths

    def rows(self, rows):
        owner, at, _ = self._gather(rows)
        block = np.zeros((len(np.asarray(rows)), self.shape[1]), dtype=np.int8)
        block[owner, self.indices[at]] = self.values[at]
        return block

    def entries(self, rows):
        _, at, lengths = self._gather(rows)
        return _csr([lengths], [np.asarray(self.indices[at], dtype=np.int32)], [np.asarray(self.values[at])])


def _csr(counts, cols, values):
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return (indptr, np.concatenate(cols) if cols else np.zeros(0, np.int32),
            np.concatenate(values).astype(np.int8) if values else np.zeros(0, np.int8))


def chunk_rows(num_classes):
    return max(1, CHUNK_BYTES // max(num_classes, 1))


class Labels:
    """The rows of a split in a label store: position i of the split is row ``rows[i]`` of the file.

    Nothing of size N x K is made unless asked for (``dense``): a training step reads its batch's
    rows (``batch``), evaluation the split's known entries (``entries``).
    """

    def __init__(self, store, rows):
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self):
        return len(self.rows)

    @property
    def shape(self):
        return len(self.rows), self.store.shape[1]

    @property
    def num_classes(self):
        return self.store.shape[1]

    def batch(self, positions):
        """(B, K) int8 numpy of the split's ``positions`` (a sequence, numpy array or CPU tensor)."""
        return self.store.rows(self.rows[np.asarray(positions)])

    def entries(self):
        """The split's nonzero entries as CSR over its positions: (indptr (n + 1,), cols, values)."""
        return self.store.entries(self.rows)

    def dense(self):
        """The split as one (n, K) int8 array: for small datasets and the analyses."""
        return self.store.rows(self.rows)

    def subset(self, positions):
        return Labels(self.store, self.rows[np.asarray(positions)])

    def column_counts(self, value):
        """(K,) how many of the split's images have ``value`` (+1 or -1) in each class."""
        _, cols, values = self.entries()
        return np.bincount(cols[values == value], minlength=self.num_classes)

    def row_counts(self, value):
        """(n,) how many entries of each of the split's images hold ``value``."""
        indptr, _, values = self.entries()
        hits = np.concatenate([[0], np.cumsum(values == value)])
        return hits[indptr[1:]] - hits[indptr[:-1]]


# ------------------------------------------------------------------ files

def dense_path(data_dir, phase, kind):
    return os.path.join(data_dir, f"formatted_{phase}_{kind}.npy")


def sparse_path(data_dir, phase, kind):
    return os.path.join(data_dir, f"formatted_{phase}_{kind}_csr")


def exists(data_dir, phase, kind):
    return os.path.isfile(dense_path(data_dir, phase, kind)) or os.path.isdir(sparse_path(data_dir, phase, kind))


def load_store(data_dir, phase, kind, allowed):
    """The (N, K) label file of a phase and kind ("labels", "labels_obs"), dense or sparse, memory-mapped
    and checked (values in ``allowed``, in chunks); None where neither exists."""
    dense, sparse = dense_path(data_dir, phase, kind), sparse_path(data_dir, phase, kind)
    if os.path.isdir(sparse):
        store = load_sparse(sparse)
        check_sparse(store, allowed, sparse)
        return store
    if os.path.isfile(dense):
        array = np.load(dense, mmap_mode="r")
        if array.ndim != 2:
            raise UserError(f"{dense} has shape {array.shape}; expected (N, K)")
        check_dense(array, allowed, dense)
        return DenseStore(array)
    return None


def load_sparse(folder):
    try:
        with open(os.path.join(folder, "shape.json")) as f:
            shape = tuple(json.load(f)["shape"])
        arrays = [np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r") for name in ("indptr", "indices", "values")]
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{folder}: not a complete sparse label folder (indptr.npy, indices.npy, values.npy, "
                        f"shape.json): {err}; prepare the dataset again (data/README.md)") from err
    return SparseStore(*arrays, shape)


def save_sparse(folder, indptr, indices, values, shape):
    """Write CSR arrays as a sparse label folder (``SparseStore``); class columns as int16 where K allows."""
    os.makedirs(folder, exist_ok=True)
    index_dtype = np.int16 if shape[1] <= np.iinfo(np.int16).max else np.int32
    for name, array in (("indptr", np.asarray(indptr, np.int64)), ("indices", np.asarray(indices, index_dtype)),
                        ("values", np.asarray(values, np.int8))):
        np.save(os.path.join(folder, f"{name}.npy"), array)
    with open(os.path.join(folder, "shape.json"), "w") as f:
        json.dump({"shape": [int(shape[0]), int(shape[1])]}, f)


def sparse_from_entries(rows, cols, values, shape):
    """CSR arrays (indptr, indices, values) of entries sorted by row (as data/openimages.py makes them)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and np.any(np.diff(rows) < 0):
        raise ValueError("entries must be sorted by row")
    indptr = np.searchsorted(rows, np.arange(shape[0] + 1), side="left").astype(np.int64)
    return indptr, np.asarray(cols), np.asarray(values, np.int8)


def check_dense(array, allowed, name):
    """Every value of a dense (N, K) matrix is in ``allowed``; checked in row chunks, so memory stays
    at one chunk whatever N x K."""
    step = chunk_rows(array.shape[1])
    for start in range(0, array.shape[0], step):
        chunk = np.asarray(array[start:start + step])
        bad = ~np.isin(chunk, allowed)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise UserError(f"{name}: value {chunk[row, col]} at [{start + row}, {col}]; allowed {allowed}")


def check_sparse(store, allowed, name):
    """A sparse label folder is consistent: indptr rises from 0 to nnz, columns lie in [0, K), and
    the stored (nonzero) values are in ``allowed``."""
    indptr, n, k, nnz = store.indptr, store.shape[0], store.shape[1], len(store.values)
    if (len(indptr) != n + 1 or indptr[0] != 0 or indptr[-1] != nnz or len(store.indices) != nnz
            or np.any(np.diff(indptr) < 0)):
        raise UserError(f"{name}: indptr ({len(indptr)} values) does not index {len(store.indices)} entries of "
                        f"{n} rows; prepare the dataset again")
    step = CHUNK_BYTES // 4
    for start in range(0, len(store.values), step):
        cols, values = np.asarray(store.indices[start:start + step]), np.asarray(store.values[start:start + step])
        bad = (cols < 0) | (cols >= k) | ~np.isin(values, [v for v in allowed if v != 0])
        if bad.any():
            at = start + int(np.argmax(bad))
            raise UserError(f"{name}: entry {at} holds value {store.values[at]} in column {store.indices[at]}; "
                            f"allowed {allowed} in columns [0, {k})")


# ------------------------------------------------------------------ LL-Cp's written corrections

class Corrections:
    """LL-Cp's permanent corrections: the training entries written as +1 (``methods`` LL-Cp's
    ``corrections``), as sorted flat keys position * K + class.

    Memory grows with the corrections, 8 bytes each (a batch of B images writes about B * K * r - 1),
    never with N x K; every process holds the same keys, since each computes the whole batch's loss.
    A batch's entries join the sorted keys at the end of its epoch (``commit``): an image is seen
    once an epoch, so no later batch of the epoch reads them. Should a sampler show an image twice
    in one epoch, its pending corrections are read too (``apply``), so the result never depends on that.
    """

    def __init__(self, num_rows, num_classes, keys=None):
        self.num_rows, self.num_classes = num_rows, num_classes
        self.keys = np.zeros(0, np.int64) if keys is None else np.asarray(keys, np.int64)
        self.pending = []                                  # this epoch's written keys, one array a batch
        self.pending_rows = np.zeros(num_rows, dtype=bool)  # rows that may have pending keys
        self.in_flight = None                              # the last batch's mask, on its way from the GPU

    def __len__(self):
        self._receive()
        return len(self.keys) + sum(len(p) for p in self.pending)

    def apply(self, positions, batch):
        """``batch`` ((B, K) int8 numpy of the rows ``positions``) with every correction written as +1."""
        positions = np.asarray(positions, dtype=np.int64)
        keys = self.keys
        if self.pending_rows[positions].any():
            self._receive()
            keys = np.union1d(keys, np.concatenate(self.pending)) if self.pending else keys
        lo = np.searchsorted(keys, positions * self.num_classes)
        hi = np.searchsorted(keys, (positions + 1) * self.num_classes)
        lengths = hi - lo
        if lengths.any():
            owner = np.repeat(np.arange(len(positions)), lengths)
            at = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
            batch[owner, keys[at] % self.num_classes] = 1
        return batch

    def add(self, positions, written):
        """Record a batch's written entries: ``written`` (B, K) bool, numpy or a tensor. From a GPU the
        copy to the host starts here and is read at the next call, so the step does not wait for the
        GPU to finish (the keys are needed only when these images come again)."""
        positions = np.asarray(positions, dtype=np.int64)
        self._receive()
        self.pending_rows[positions] = True
        if isinstance(written, torch.Tensor) and written.is_cuda:
            host = written.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.in_flight = (positions, host, event)
        else:
            self._record(positions, written.numpy() if isinstance(written, torch.Tensor) else written)

    def _receive(self):
        if self.in_flight is not None:
            positions, host, event = self.in_flight
            event.synchronize()
            self.in_flight = None
            self._record(positions, host.numpy())

    def _record(self, positions, written):
        rows, cols = np.nonzero(written)
        if len(rows):
            self.pending.append(positions[rows] * self.num_classes + cols)

    def commit(self):
        """Merge the epoch's corrections into the sorted keys."""
        self._receive()
        if self.pending:
            self.keys = np.union1d(self.keys, np.concatenate(self.pending))
        self.pending = []
        self.pending_rows[:] = False

    def state_dict(self):
        self.commit()
        return {"keys": torch.from_numpy(self.keys), "num_rows": self.num_rows, "num_classes": self.num_classes}

    def load_state_dict(self, state):
        if (state["num_rows"], state["num_classes"]) != (self.num_rows, self.num_classes):
            raise UserError(f"the checkpoint's corrections are of {state['num_rows']} x {state['num_classes']} "
                            f"training entries, this run's split {self.num_rows} x {self.num_classes}")
        self.keys = state["keys"].numpy().astype(np.int64)
        self.pending, self.in_flight = [], None
        self.pending_rows[:] = False

    @classmethod
    def from_label_matrix(cls, initial, written):
        """From a checkpoint of before this structure, which held the run's whole (N, K) label matrix:
        the corrections are its +1 entries that were 0 in the split's observed labels."""
        initial, written = np.asarray(initial), np.asarray(written)
        rows, cols = np.nonzero((written == 1) & (initial == 0))
        return cls(*initial.shape, rows.astype(np.int64) * initial.shape[1] + cols)


class TrainingLabels:
    """What the training loop reads of its split's labels, a batch at a time: the observed rows with
    LL-Cp's corrections written in, and the true rows where known (they only count how many modified
    entries are truly positive, the precision of modification of the paper's Fig. 4)."""

    def __init__(self, observed, truth=None, corrections=None):
        self.observed, self.truth, self.corrections = observed, truth, corrections

    def batch(self, positions, device):
        """((B, K) int8 observed labels, (B, K) bool truth or None) of the training ``positions``
        (a CPU tensor or array), on ``device``."""
        positions = np.asarray(positions)
        observed = self.observed.batch(positions)
        if self.corrections is not None:
            observed = self.corrections.apply(positions, observed)
        truth = None if self.truth is None else torch.from_numpy(self.truth.batch(positions) == 1).to(device)
        return torch.from_numpy(observed).to(device), truth

    def write(self, positions, written):
        """LL-Cp: the batch's ``written`` (B, K) entries are +1 from now on."""
        self.corrections.add(positions, written)

    def end_epoch(self):
        if self.corrections is not None:
            self.corrections.commit()
