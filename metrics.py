"""Average precision per class and mAP (SPEC section 7), vectorised over classes."""
import numpy as np


def average_precision_per_class(y_true, y_score, annotated=None, chunk_size=256):
    """AP of every column, equal to ``sklearn.metrics.average_precision_score`` column by column.

    sklearn's AP is sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, so tied scores
    form one step: every positive in a tie group gets the precision at the group's last element.

    Args:
        y_true: (N, K) 0/1 ground truth.
        y_score: (N, K) scores (any monotone transform of the logits gives the same AP).
        annotated: optional (N, K) bool, for partially labelled test sets (OpenImages): each class's
            AP then uses only its annotated entries.
        chunk_size: classes processed at once, bounding memory at about 40 * N * chunk_size bytes.
    Returns:
        (K,) float64 AP in [0, 1]. A class without a positive scores 0 (upstream convention), or
        NaN (skipped) when ``annotated`` is given.
    """
    y_true = np.asarray(y_true).astype(bool)
    y_score = np.asarray(y_score)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must be equal (N, K)")
    if annotated is not None:
        # Unannotated entries become negatives ranked below everything: they add nothing to any AP.
        y_true = y_true & annotated
        y_score = np.where(annotated, y_score, -np.inf)
    ap = np.concatenate([_ap_columns(y_true[:, c:c + chunk_size], y_score[:, c:c + chunk_size])
                         for c in range(0, y_true.shape[1], chunk_size)])
    if annotated is not None:
        ap[~y_true.any(axis=0)] = np.nan
    return ap


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


def mean_ap(ap):
    """mAP in percent of per-class APs, over the classes scored (not NaN); None if none is."""
    return None if np.isnan(ap).all() else 100.0 * float(np.nanmean(ap))


def mean_average_precision(y_true, y_score, annotated=None):
    """mAP in percent (SPEC section 7); see ``average_precision_per_class`` for the arguments.

    None only with ``annotated`` when no class has an annotated positive.
    """
    return mean_ap(average_precision_per_class(y_true, y_score, annotated))
