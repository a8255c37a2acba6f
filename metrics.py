"""Average precision per class and mAP (SPEC section 7), vectorised over classes."""
import numpy as np


def average_precision_per_class(y_true, y_score, chunk_size=256):
    """AP of every column, equal to ``sklearn.metrics.average_precision_score`` column by column.

    sklearn's AP is sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, so tied scores
    form one step: every positive in a tie group gets the precision at the group's last element.

    Args:
        y_true: (N, K) 0/1 ground truth.
        y_score: (N, K) scores (any monotone transform of the logits gives the same AP).
        chunk_size: classes processed at once, bounding memory at about 40 * N * chunk_size bytes.
    Returns:
        (K,) float64 AP in [0, 1]; 0 for a class without positives (upstream convention).
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must be equal (N, K)")
    return np.concatenate([_ap_columns(y_true[:, c:c + chunk_size], y_score[:, c:c + chunk_size])
                           for c in range(0, y_true.shape[1], chunk_size)])


def _ap_columns(y_true, y_score):
    num = y_true.shape[0]
    order = np.argsort(-y_score, axis=0, kind="stable")                    # (N, C) descending
    scores = np.take_along_axis(y_score, order, axis=0)
    hits = np.take_along_axis(y_true, order, axis=0).astype(np.float64)
    precision = np.cumsum(hits, axis=0) / np.arange(1, num + 1)[:, None]
    # Each row gets the precision at the last row of its tie group: take the group-end row index
    # and propagate it upwards with a reversed running minimum.
    group_end = np.ones_like(scores, dtype=bool)
    group_end[:-1] = scores[:-1] != scores[1:]
    end_row = np.where(group_end, np.arange(num)[:, None], num)
    end_row = np.minimum.accumulate(end_row[::-1], axis=0)[::-1]
    precision = np.take_along_axis(precision, end_row, axis=0)
    num_pos = hits.sum(axis=0)
    return np.divide((hits * precision).sum(axis=0), num_pos, out=np.zeros_like(num_pos), where=num_pos > 0)


def mean_average_precision(y_true, y_score, annotated=None):
    """mAP in percent over the classes of (N, K) matrices.

    Args:
        y_true: (N, K) 0/1 ground truth.
        y_score: (N, K) scores.
        annotated: optional (N, K) bool, for partially labelled test sets (OpenImages): each class's
            AP then uses only its annotated entries, and classes without an annotated positive are
            skipped. Without it, every entry counts and a class without positives scores 0.
    """
    if annotated is None:
        return 100.0 * float(np.mean(average_precision_per_class(y_true, y_score)))
    # Unannotated entries become negatives ranked below everything, which adds nothing to any AP.
    y_true = np.asarray(y_true).astype(bool) & annotated
    ap = average_precision_per_class(y_true, np.where(annotated, y_score, -np.inf))
    has_positive = y_true.any(axis=0)
    if not has_positive.any():
        raise ValueError("no class has an annotated positive: mAP is undefined")
    return 100.0 * float(ap[has_positive].mean())
