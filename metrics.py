"""Evaluation metrics: average precision per class and mAP, vectorised over classes (sorted and
searched in torch on the evaluation device, with numpy's sort on the CPU), from a dense score matrix
or from the known entries of a partially labelled split; and the multi-label metrics at a decision
threshold (CP, CR, CF1, OP, OR, OF1), the per-class thresholds best on val and a split's report."""
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.special import expit
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support


def average_precision_per_class(y_true, y_score, annotated=None, chunk_size=32, device="cpu",
                                skip_without_positive=False):
    """AP of every column, equal to ``sklearn.metrics.average_precision_score`` column by column.

    sklearn's AP is sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, so tied scores
    form one step. Summed over the positives instead, each positive p of score s_p adds
        #(positives scoring >= s_p) / #(entries scoring >= s_p) / #positives,
    which needs each class's scores sorted (values only: no argsort, no gather of the labels), its
    positives' scores sorted, and one binary search per positive. Ties are exact: scores are
    compared in their own dtype (float32 as a model gives them), never converted to another.

    Args:
        y_true: (N, K) 0/1 ground truth.
        y_score: (N, K) scores (any monotone transform of the logits gives the same AP). NaN raises
            ValueError, as in sklearn.
        annotated: optional (N, K) bool, for partially labelled test sets (OpenImages): each class's
            AP then uses only its annotated entries.
        chunk_size: most classes processed at once by one thread (on the CPU, one chunk per torch
            thread at a time). Memory beyond the inputs is about (2 * itemsize + 2) * N *
            chunk_size bytes per chunk, plus 64 bytes per entry of the (chunk_size, most positives
            of a class) matrix of positive scores: about 50 MB at N = 125,000 with float32 scores
            and 5 % positives (one thread's RSS rose 120 MB). 32 and 64 ran equally fast on a
            2-core CPU at that N.
        device: where to sort and search; the per-positive sums then run in numpy.
        skip_without_positive: with ``annotated``, a class with annotated entries but no annotated
            positive is skipped (NaN) instead of scoring 0.
    Returns:
        (K,) float64 AP in [0, 1]. A class without a positive scores 0 (upstream convention, SPEC 7:
        the LL code's compute_metrics_openimages too, for a class with annotated entries but no
        annotated positive). With ``annotated``, a class without an annotated entry is NaN (skipped
        by ``mean_ap``), and so is one without an annotated positive if ``skip_without_positive``.
    """
    y_true = np.asarray(y_true, dtype=bool)
    y_score = np.asarray(y_score)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must be equal (N, K)")
    if y_score.dtype.kind != "f":
        y_score = y_score.astype(np.float64)        # integer scores: exact, and +-inf exist to pad with
    if annotated is not None:
        annotated = np.asarray(annotated, dtype=bool)
    workers = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    # Chunks of equal width, a multiple of the workers in number, so that no core waits for the last.
    num_chunks = math.ceil(math.ceil(y_true.shape[1] / chunk_size) / workers) * workers
    width = math.ceil(y_true.shape[1] / num_chunks)
    columns = [slice(c, c + width) for c in range(0, y_true.shape[1], width)]
    return np.concatenate(_map_chunks(lambda cols: _ap_columns(
        y_true[:, cols], y_score[:, cols], None if annotated is None else annotated[:, cols], device,
        skip_without_positive), columns, workers))


def _map_chunks(fn, chunks, workers):
    """``fn`` of each chunk, on ``workers`` threads, each running torch single-threaded: numpy's sort
    uses one core, so a chunk per core beats every torch operation spread over the cores (2x at
    125,000 x 5,000 on 2 cores)."""
    if workers == 1 or len(chunks) == 1:
        return [fn(chunk) for chunk in chunks]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, chunks))
    finally:
        torch.set_num_threads(threads)


def _ap_columns(y_true, y_score, annotated, device, skip_without_positive=False):
    """Sorting and searching on ``device``; the per-positive sums in numpy, on (C, P) numbers."""
    hits, scores = _rows(y_true, device), _rows(y_score, device)      # (C, N), one row per class
    num_entries = torch.full((scores.shape[0],), scores.shape[1], device=device)
    if annotated is not None:
        # Unannotated entries become negatives at -inf, taken out of the counts below.
        counted = _rows(annotated, device)
        hits = hits & counted
        scores = torch.where(counted, scores, -torch.inf)
        num_entries = counted.sum(dim=1, dtype=torch.int32)
    num_pos = hits.sum(dim=1, dtype=torch.int32)                        # int32: a faster bool sum than int64
    # Each class's positive scores ascending, padded with +inf, which is never below a score.
    positives = _sort_rows(torch.where(hits, scores, torch.inf))[:, :int(num_pos.max())].contiguous()
    ranked = _sort_rows(scores)
    if torch.isnan(ranked[:, -1:]).any():                               # NaN sorts last
        raise ValueError("y_score contains NaN")
    num_below = torch.searchsorted(ranked, positives).cpu().numpy()    # (C, P) entries scoring less
    positives, num_pos, num_entries = (x.cpu().numpy() for x in (positives, num_pos, num_entries))
    if annotated is not None:
        # The unannotated -inf entries are below every positive but one scoring -inf itself.
        num_below = np.maximum(num_below - (ranked.shape[1] - num_entries)[:, None], 0)
    pos_at_or_above = num_pos[:, None] - _first_of_ties(positives)
    is_pos = np.arange(positives.shape[1]) < num_pos[:, None]
    precision = np.divide(pos_at_or_above, num_entries[:, None] - num_below, where=is_pos,
                          out=np.zeros(positives.shape))
    ap = precision.sum(axis=1) / np.maximum(num_pos, 1)
    if annotated is not None:
        skipped = num_entries == 0
        if skip_without_positive:
            skipped |= num_pos == 0
        ap[skipped] = np.nan
    return ap


def _first_of_ties(x):
    """Index of the first element equal to each one, in rows sorted ascending (a cheaper
    ``np.searchsorted`` of each row in itself)."""
    starts = np.ones(x.shape, dtype=bool)
    starts[:, 1:] = x[:, 1:] != x[:, :-1]
    return np.maximum.accumulate(np.where(starts, np.arange(x.shape[1]), 0), axis=1)


def _rows(columns, device):
    """(N, C) numpy columns -> a new (C, N) contiguous tensor (torch transposes a contiguous block
    fast; a copy even for one column, so that it can be sorted in place)."""
    rows = torch.as_tensor(np.ascontiguousarray(columns), device=device).T
    return rows.clone(memory_format=torch.contiguous_format)


def _sort_rows(x):
    """Each row sorted ascending: in place on the CPU, where numpy's vectorised sort is several
    times torch's."""
    if x.device.type == "cpu":
        x.numpy().sort(axis=1)
        return x
    return torch.sort(x, dim=1).values


def average_precision_entries(cols, scores, positive, num_classes, skip_without_positive=False):
    """AP of every class from its known entries alone, for partially labelled splits (OpenImages):
    memory and time grow with the known entries, never with N x K.

    Equal to ``average_precision_per_class`` with ``annotated`` marking these entries (the same
    sum over positives of #(positives scoring >= s_p) / #(entries scoring >= s_p), ties exact), so to
    sklearn's per class on its known entries.

    Args:
        cols: (E,) int, the class of each known entry.
        scores: (E,) float, its score.
        positive: (E,) bool, whether its label is positive (else negative).
        num_classes: K.
        skip_without_positive: a class with entries but no positive is NaN rather than 0.
    Returns:
        (K,) float64: NaN for a class without an entry, 0 (or NaN) for one without a positive.
    """
    cols, scores, positive = np.asarray(cols, np.int64), np.asarray(scores), np.asarray(positive, bool)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    order = np.lexsort((scores, cols))                 # by class, then score ascending
    cols, scores, positive = cols[order], scores[order], positive[order]
    num_entries = np.bincount(cols, minlength=num_classes)
    num_pos = np.bincount(cols[positive], minlength=num_classes)
    ends = np.cumsum(num_entries)
    # The first entry of each run of equal scores in a class: all of them score >= that score.
    starts_tie = np.ones(len(cols), dtype=bool)
    starts_tie[1:] = (cols[1:] != cols[:-1]) | (scores[1:] != scores[:-1])
    first = np.maximum.accumulate(np.where(starts_tie, np.arange(len(cols)), 0))
    positives_before = np.cumsum(positive) - positive                        # exclusive, over all classes
    class_start = ends - num_entries
    pos_at_or_above = num_pos[cols] - (positives_before[first] - positives_before[class_start[cols]])
    precision = pos_at_or_above / (ends[cols] - first)
    ap = np.bincount(cols[positive], weights=precision[positive], minlength=num_classes) / np.maximum(num_pos, 1)
    skipped = (num_entries == 0) | ((num_pos == 0) if skip_without_positive else False)
    ap[skipped] = np.nan
    return ap


def mean_ap(ap):
    """mAP in percent of per-class APs, over the classes scored (not NaN); None if none is."""
    return None if np.isnan(ap).all() else 100.0 * float(np.nanmean(ap))


def mean_average_precision(y_true, y_score, annotated=None, skip_without_positive=False):
    """mAP in percent (SPEC section 7); see ``average_precision_per_class`` for the arguments.

    None only with ``annotated`` when no class is scored.
    """
    return mean_ap(average_precision_per_class(y_true, y_score, annotated,
                                               skip_without_positive=skip_without_positive))


# ------------------------------------------------------------------ metrics at a decision threshold
#
# Multi-label metrics at a decision threshold (per-class and overall precision, recall, F1), the
# per-class thresholds that maximise F1 on val, and the per-class report of a split.
#
# Definitions, as ML-GCN (Chen et al., CVPR 2019, Sec. 4.1) and the multi-label literature after it
# use them, over classes k with TP_k, FP_k, FN_k counted at the threshold:
#     CP = mean_k TP_k / (TP_k + FP_k)          CR = mean_k TP_k / (TP_k + FN_k)
#     CF1 = 2 CP CR / (CP + CR)                 (the harmonic mean of CP and CR, not the mean F1)
#     OP = sum_k TP_k / sum_k (TP_k + FP_k)     OR = sum_k TP_k / sum_k (TP_k + FN_k)
#     OF1 = 2 OP OR / (OP + OR)
# CP and CR are scikit-learn's macro precision and recall, OP, OR and OF1 its micro ones. A ratio
# with a zero denominator counts 0 (scikit-learn's ``zero_division=0``). All values in percent.
#
# Labels: 0/1 ground truth, or -1/0/+1 observed labels with ``annotated`` masking the known entries
# (OpenImages-style test sets): an unannotated entry is left out of every count.




def _masked(y_true, y_pred, annotated):
    """Unannotated entries as true negatives predicted negative: TN enters no metric here, so this
    leaves them out of TP, FP and FN exactly."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    if annotated is not None:
        annotated = np.asarray(annotated, bool)
        y_true, y_pred = y_true & annotated, y_pred & annotated
    return y_true.astype(np.int8), y_pred.astype(np.int8)


def threshold_metrics(y_true, scores, thresholds=0.5, annotated=None):
    """Per-class and overall precision, recall and F1 of ``scores >= thresholds``.

    Args:
        y_true: (N, K) 0/1 ground truth (where ``annotated``, +1 entries of the observed labels).
        scores: (N, K) probabilities.
        thresholds: a float, or (K,) one per class; an entry is predicted positive at or above it.
        annotated: optional (N, K) bool, the entries whose label is known.
    Returns:
        dict: "CP", "CR", "CF1", "OP", "OR", "OF1" (floats, percent) and "per_class": (K, 3) float
        array of precision, recall and F1 (percent) per class.
    """
    y_true, y_pred = _masked(y_true, np.asarray(scores) >= np.asarray(thresholds), annotated)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    op, o_r, of1, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    cp, cr = precision.mean(), recall.mean()
    cf1 = 2 * cp * cr / (cp + cr) if cp + cr > 0 else 0.0
    overall = dict(CP=cp, CR=cr, CF1=cf1, OP=op, OR=o_r, OF1=of1)
    return {**{k: 100.0 * float(v) for k, v in overall.items()},
            "per_class": 100.0 * np.stack([precision, recall, f1], axis=1)}


def f1_thresholds(y_true, scores, annotated=None, default=0.5):
    """Per class, the threshold on ``scores`` that maximises F1 (chosen on val, used on test).

    Candidates are the class's own scores (``sklearn.metrics.precision_recall_curve``); the best F1
    wins, ties to the highest threshold (fewest predicted positives). A class without a positive
    (annotated positive) keeps ``default``.
    Returns:
        (K,) float64 thresholds.
    """
    y_true, scores = np.asarray(y_true, bool), np.asarray(scores, np.float64)
    chosen = np.full(y_true.shape[1], default, dtype=np.float64)
    for k in range(y_true.shape[1]):
        rows = slice(None) if annotated is None else np.asarray(annotated[:, k], bool)
        chosen[k] = _best_f1_threshold(y_true[rows, k], scores[rows, k], default)
    return chosen


def threshold_metrics_entries(cols, positive, scores, thresholds, num_classes):
    """``threshold_metrics`` over the known entries of a partially labelled split alone: entry e is of
    class ``cols[e]``, truly positive where ``positive[e]``, predicted positive where ``scores[e]`` is at
    or above its class's threshold. Unknown entries count nowhere, as with ``annotated``.

    Returns:
        the dict of ``threshold_metrics``.
    """
    cols, positive = np.asarray(cols, np.int64), np.asarray(positive, bool)
    predicted = np.asarray(scores) >= np.broadcast_to(np.asarray(thresholds, np.float64), (num_classes,))[cols]

    def count(mask):
        return np.bincount(cols[mask], minlength=num_classes).astype(np.float64)

    tp, fp, fn = count(predicted & positive), count(predicted & ~positive), count(~predicted & positive)
    precision, recall, f1 = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
    tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    cp, cr = precision.mean(), recall.mean()
    overall = dict(CP=cp, CR=cr, CF1=_ratio(2 * cp * cr, cp + cr), OP=_ratio(tp, tp + fp), OR=_ratio(tp, tp + fn),
                   OF1=_ratio(2 * tp, 2 * tp + fp + fn))
    return {**{k: 100.0 * float(v) for k, v in overall.items()},
            "per_class": 100.0 * np.stack([precision, recall, f1], axis=1)}


def _ratio(a, b):
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0), for arrays or scalars."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def f1_thresholds_entries(cols, positive, scores, num_classes, default=0.5):
    """``f1_thresholds`` from the known entries of a partially labelled split alone (per class, the
    same candidates and the same choice as ``f1_thresholds`` with ``annotated``)."""
    cols, positive, scores = np.asarray(cols, np.int64), np.asarray(positive, bool), np.asarray(scores, np.float64)
    order = np.argsort(cols, kind="stable")
    bounds = np.searchsorted(cols[order], np.arange(num_classes + 1))
    chosen = np.full(num_classes, default, dtype=np.float64)
    for k in range(num_classes):
        rows = order[bounds[k]:bounds[k + 1]]
        chosen[k] = _best_f1_threshold(positive[rows], scores[rows], default)
    return chosen


def _best_f1_threshold(truth, scores, default):
    """The threshold on ``scores`` with the best F1 (ties: the highest), or ``default`` without a positive."""
    if not truth.any():
        return default
    precision, recall, candidates = precision_recall_curve(truth, scores)
    precision, recall = precision[:-1], recall[:-1]     # the last pair has no threshold
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=precision + recall > 0)
    return candidates[np.flatnonzero(f1 == f1.max())[-1]]     # thresholds ascend: the last is the highest


def known_entries(split):
    """(cols, positive) of a split's entries whose label is known, in the order of its images (CSR),
    where its truth is partial (``split.labels`` is None); None where it has full labels."""
    if split.labels is not None:
        return None
    _, cols, values = split.labels_obs.entries()
    return cols, values == 1


def split_report(split, logits, class_names, thresholds):
    """``report`` of a split's scores (``train.predict_split``): (n, K) logits where its labels are
    full, or the logits of its known entries where they are partial."""
    known = known_entries(split)
    if known is None:
        return report(split.labels.dense() == 1, logits, class_names, thresholds)
    cols, positive = known
    ap = average_precision_entries(cols, logits, positive, len(class_names))
    metrics = threshold_metrics_entries(cols, positive, probabilities(logits), thresholds, len(class_names))
    return {"map": mean_ap(ap), "per_class_ap": _per_class_ap(ap, class_names),
            **_threshold_report(metrics, class_names, thresholds)}


def split_f1_thresholds(split, logits):
    """``f1_thresholds`` of a split's scores (full or known-entry, as ``split_report``)."""
    known = known_entries(split)
    if known is None:
        return f1_thresholds(split.labels.dense() == 1, probabilities(logits))
    return f1_thresholds_entries(*known, probabilities(logits), split.labels_obs.num_classes)


def threshold_report(y_true, scores, class_names, thresholds, annotated=None):
    """``threshold_metrics`` by class name, JSON-ready.

    Returns:
        dict: "threshold" (as given: a float, or {name: threshold}), the six overall metrics and
        "per_class" {name: {"precision", "recall", "f1"}}, in percent.
    """
    return _threshold_report(threshold_metrics(y_true, scores, thresholds, annotated), class_names, thresholds)


def _threshold_report(metrics, class_names, thresholds):
    per_class = {name: dict(zip(("precision", "recall", "f1"), map(float, row)))
                 for name, row in zip(class_names, metrics.pop("per_class"))}
    threshold = (float(thresholds) if np.ndim(thresholds) == 0
                 else dict(zip(class_names, map(float, thresholds))))
    return {"threshold": threshold, **metrics, "per_class": per_class}


def probabilities(logits):
    """Sigmoid of (N, K) logits in float64, where it saturates at 1 only above 36 (float32: 17),
    so that thresholds near 1 still separate images."""
    return expit(np.asarray(logits, np.float64))


def report(y_true, logits, class_names, thresholds, annotated=None):
    """mAP, per-class AP by name and ``threshold_report`` of one split's (N, K) logits (AP on the
    logits themselves, as ``train.evaluate``; the thresholds apply to ``probabilities``).

    Returns:
        dict: "map" (percent), "per_class_ap" {name: AP percent, None where undefined} and the
        entries of ``threshold_report``.
    """
    ap = average_precision_per_class(y_true, logits, annotated=annotated)
    return {"map": mean_ap(ap), "per_class_ap": _per_class_ap(ap, class_names),
            **threshold_report(y_true, probabilities(logits), class_names, thresholds, annotated)}


def _per_class_ap(ap, class_names):
    return {n: None if np.isnan(a) else 100.0 * float(a) for n, a in zip(class_names, ap)}
