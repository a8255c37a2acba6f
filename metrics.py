"""Average precision per class and mAP, vectorised over classes (in torch: on the CPU, or on the
GPU when given ``device``)."""
import numpy as np
import torch


def average_precision_per_class(y_true, y_score, annotated=None, chunk_size=256, device="cpu"):
    """AP of every column, equal to ``sklearn.metrics.average_precision_score`` column by column.

    sklearn's AP is sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, so tied scores
    form one step: every positive in a tie group gets the precision at the group's last element.

    Args:
        y_true: (N, K) 0/1 ground truth.
        y_score: (N, K) scores (any monotone transform of the logits gives the same AP).
        annotated: optional (N, K) bool, for partially labelled test sets (OpenImages): each class's
            AP then uses only its annotated entries.
        chunk_size: classes processed at once, bounding memory at about 40 * N * chunk_size bytes.
        device: where to compute ("cuda" sorts every class at once, far faster than sklearn's loop).
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
    ap = np.concatenate([_ap_columns(y_true[:, c:c + chunk_size], y_score[:, c:c + chunk_size], device)
                         for c in range(0, y_true.shape[1], chunk_size)])
    if annotated is not None:
        ap[~y_true.any(axis=0)] = np.nan
    return ap


def _ap_columns(y_true, y_score, device):
    scores = torch.as_tensor(y_score.T.copy(), device=device)                 # (C, N), one row per class
    scores, order = torch.sort(scores, dim=1, descending=True)
    hits = torch.gather(torch.as_tensor(y_true.T.copy(), device=device), 1, order).double()
    num = scores.shape[1]
    rows = torch.arange(num, device=device)
    precision = hits.cumsum(dim=1) / (rows + 1)
    # Each position gets the precision at the last position of its tie group: mark the group ends,
    # then propagate each end's index backwards with a reversed running minimum.
    group_end = torch.ones_like(scores, dtype=torch.bool)
    group_end[:, :-1] = scores[:, :-1] != scores[:, 1:]
    end_row = torch.where(group_end, rows, num).flip(1).cummin(dim=1).values.flip(1)
    precision = torch.gather(precision, 1, end_row)
    num_pos = hits.sum(dim=1)
    ap = torch.where(num_pos > 0, (hits * precision).sum(dim=1) / num_pos.clamp(min=1), 0.0)
    return ap.cpu().numpy()


def mean_ap(ap):
    """mAP in percent of per-class APs, over the classes scored (not NaN); None if none is."""
    return None if np.isnan(ap).all() else 100.0 * float(np.nanmean(ap))


def mean_average_precision(y_true, y_score, annotated=None):
    """mAP in percent (SPEC section 7); see ``average_precision_per_class`` for the arguments.

    None only with ``annotated`` when no class has an annotated positive.
    """
    return mean_ap(average_precision_per_class(y_true, y_score, annotated))
