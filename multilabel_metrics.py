"""Multi-label metrics at a decision threshold (per-class and overall precision, recall, F1), the
per-class thresholds that maximise F1 on val, and the per-class report of a split.

Definitions, as ML-GCN (Chen et al., CVPR 2019, Sec. 4.1) and the multi-label literature after it
use them, over classes k with TP_k, FP_k, FN_k counted at the threshold:
    CP = mean_k TP_k / (TP_k + FP_k)          CR = mean_k TP_k / (TP_k + FN_k)
    CF1 = 2 CP CR / (CP + CR)                 (the harmonic mean of CP and CR, not the mean F1)
    OP = sum_k TP_k / sum_k (TP_k + FP_k)     OR = sum_k TP_k / sum_k (TP_k + FN_k)
    OF1 = 2 OP OR / (OP + OR)
CP and CR are scikit-learn's macro precision and recall, OP, OR and OF1 its micro ones. A ratio
with a zero denominator counts 0 (scikit-learn's ``zero_division=0``). All values in percent.

Labels: 0/1 ground truth, or -1/0/+1 observed labels with ``annotated`` masking the known entries
(OpenImages-style test sets): an unannotated entry is left out of every count.
"""
import numpy as np
from scipy.special import expit
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support

from metrics import average_precision_entries, average_precision_per_class, mean_ap


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
