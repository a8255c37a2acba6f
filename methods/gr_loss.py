"""GR-Loss (Chen et al., "Boosting Single Positive Multi-label Classification with Generalized Robust
Loss", IJCAI 2024; yan4xi1/GRLoss): soft pseudo-labels and Gaussian reweighting of the unobserved
labels with per-epoch schedules; the loss, its schedule, the authors' defaults, flags and registry
entry. AEVLP's GPR loss extends it (vision_language.py). Label semantics: -1/0/+1; every loss matrix
is averaged over all B*K entries. The equations are numbered (G1, ...) in each docstring.
"""
import dataclasses

import torch

import losses
from methods import Flag, Method, end_to_end, in_range, register

GR_LOG_EPSILON = 1e-7        # the GR-Loss code's -log(x + 1e-7), and AEVLP's


def linear_schedule(start, end, progress):
    """start + (end - start) * progress."""
    return start + (end - start) * progress


def gr_schedule(epoch, num_epochs, k_schedule, v_schedule, linear_init_epochs=0):
    """GR-Loss's per-epoch hyperparameters (Chen et al., IJCAI 2024, Sec. 3.3; the authors' train.py):
      (G1) w(t) = w0 + (wT - w0) * max(t - n - 1, 0) / (T - n),  b(t) likewise from (b0, bT);
      (G2) mu(t) = mu0 + (muT - mu0) * max(t - n, 0) / (T - n),  sigma(t) likewise from (sigma0, sigmaT);
    with t the 1-based epoch, T = num_epochs and n the linear-initialisation epochs. (The code lags
    w and b by one epoch behind mu and sigma; kept.)

    Args:
        k_schedule: (w0, wT, b0, bT) of the pseudo-label function k (the authors' default (0, 2, -2, -2)).
        v_schedule: (mu0, sigma0, muT, sigmaT) of the weight function v (default (0.5, 2, 0.8, 0.5)).
    Returns:
        dict w, b, mu, sigma.
    """
    w0, w_end, b0, b_end = k_schedule
    mu0, sigma0, mu_end, sigma_end = v_schedule
    span = num_epochs - linear_init_epochs
    # Clamped to [0, 1]: the epochs of Cole et al.'s 25-epoch linear phase past T keep the final values.
    lagged = min(max(epoch - linear_init_epochs - 1, 0) / span, 1.0)
    current = min(max(epoch - linear_init_epochs, 0) / span, 1.0)
    return dict(w=linear_schedule(w0, w_end, lagged), b=linear_schedule(b0, b_end, lagged),
                mu=linear_schedule(mu0, mu_end, current), sigma=linear_schedule(sigma0, sigma_end, current))


def gr_pseudo_label(p, w, b):
    """(G3) The soft pseudo-label k(p; w, b) = sigmoid(w p + b): the estimated chance that an unobserved
    label is positive, from the detached prediction p."""
    return torch.sigmoid(w * p + b)


def gr_weight(p, mu, sigma):
    """(G4) The Gaussian reweighting v(p; mu, sigma) = exp(-(p - mu)^2 / (2 sigma^2))."""
    return torch.exp(-0.5 * ((p - mu) / sigma) ** 2)


def gr_positive_part(p, q):
    """(G5) L2(p) = (1 - p^q) / q, the robust loss of an entry taken as positive (q -> 0: -log p)."""
    return (1 - p.pow(q)) / q


def gr_negative_part(p, q):
    """(G6) L3(p) = (1 - (1 - p)^q) / q, the robust loss of an entry taken as negative (q = 1: p)."""
    return (1 - (1 - p).pow(q)) / q


def gr_loss(logits, label_vec_obs, w, b, mu, sigma, q2=0.01, q3=1.0):
    """Generalized Robust Loss (Chen et al., "Boosting Single Positive Multi-label Classification with
    Generalized Robust Loss", IJCAI 2024, Sec. 3), as the authors' code computes it:
      (G7) observed positive: L1(p) = -log(p + 1e-7);
           unobserved: v(p) * [k(p) L2(p) + (1 - k(p)) L3(p)], k and v on the detached p (G3, G4);
           observed negative: L3(p) (k = 0, v = 1; the authors' code has none and gives them 0).

    Args:
        logits: (B, K); label_vec_obs: (B, K) in {-1, 0, +1}.
        w, b, mu, sigma: this epoch's values (``gr_schedule``).
        q2, q3: the exponents of L2 and L3 (the authors' default 0.01 and 1).
    Returns:
        loss: scalar, mean over B*K.
        modified: (B, K) bool, all False (GR-Loss reweights, it selects nothing).
    """
    p = torch.sigmoid(logits.float())
    _, _, unobserved_term = gr_unobserved(p, w, b, mu, sigma, q2, q3)
    loss = torch.where(label_vec_obs == 1, losses.neg_log(p, GR_LOG_EPSILON),
                       torch.where(label_vec_obs == -1, gr_negative_part(p, q3), unobserved_term))
    return loss.mean(), torch.zeros_like(label_vec_obs, dtype=torch.bool)


def gr_unobserved(p, w, b, mu, sigma, q2, q3):
    """GR-Loss's term of an unobserved label (G7), v(p) [k(p) L2(p) + (1 - k(p)) L3(p)], with k and v
    on the detached p; returns (k, v, term), (B, K) each."""
    p_fixed = p.detach()
    k, v = gr_pseudo_label(p_fixed, w, b), gr_weight(p_fixed, mu, sigma)
    return k, v, v * (k * gr_positive_part(p, q2) + (1 - k) * gr_negative_part(p, q3))


_GR = "Chen et al., Boosting Single Positive Multi-label Classification with Generalized Robust Loss, IJCAI 2024"
GR_K = Flag("gr_k_schedule", "w0 wT b0 bT: the soft pseudo-label k(p) = sigmoid(w p + b), w and b moving linearly "
            "from (w0, b0) to (wT, bT) over the epochs (the authors' default 0 2 -2 -2)", nargs=4,
            default=(0.0, 2.0, -2.0, -2.0), check=in_range(-100, 100),
            metavar=("W0", "WT", "B0", "BT"))
GR_V = Flag("gr_v_schedule", "mu0 sigma0 muT sigmaT: the Gaussian weight v(p) = exp(-(p - mu)^2 / 2 sigma^2) of the "
            "unobserved labels, mu in [0, 1] and sigma > 0 moving linearly (default 0.5 2 0.8 0.5)", nargs=4,
            default=(0.5, 2.0, 0.8, 0.5), metavar=("MU0", "SIGMA0", "MUT", "SIGMAT"))
GR_Q = Flag("gr_q", "q2 q3: exponents of the robust losses of a label taken as positive, (1 - p^q2)/q2, and as "
            "negative, (1 - (1-p)^q3)/q3; each in (0, 1] (default 0.01 1)", nargs=2, default=(0.01, 1.0),
            check=in_range(0, 1), metavar=("Q2", "Q3"))


def _check_gr_v(value):
    mu0, sigma0, mu_end, sigma_end = value
    if not (0 <= mu0 <= 1 and 0 <= mu_end <= 1 and sigma0 > 0 and sigma_end > 0):
        return "mu0 and muT in [0, 1], sigma0 and sigmaT > 0"
    return None


GR_V = dataclasses.replace(GR_V, check=_check_gr_v)


def epoch_schedule(epoch, cfg):
    """This epoch's w, b, mu, sigma of GR-Loss (``gr_schedule`` with the run's settings)."""
    options = cfg.method_options
    # Style within counts the frozen epochs in --num_epochs; after Cole et al.'s separate linear phase the
    # fine-tuning epochs count from 1 (cfg.phase_epoch), so the schedule starts there.
    n = cfg.linear_init_epochs if cfg.train_mode == "linear_init" and not cfg.separate_linear_phase else 0
    return gr_schedule(epoch, cfg.num_epochs, options["gr_k_schedule"], options["gr_v_schedule"], n)


def _gr(logits, labels, batch):
    q2, q3 = batch.cfg.method_options["gr_q"]
    return gr_loss(logits, labels, **epoch_schedule(batch.epoch, batch.cfg), q2=q2, q3=q3)


register(Method("GR-Loss", _gr, "generalized robust loss: soft pseudo-labels and Gaussian reweighting", _GR,
                flags=(GR_K, GR_V, GR_Q), advice=f"GR-Loss ({_GR}; defaults of the authors' config.py)",
                # The authors' config.py: Adam at 1e-5, batch 8, 8 epochs, early stop 2 points below the best.
                settings=lambda dataset: dict(optimizer="adam", lr=1e-5, bsize=8, num_epochs=8, early_stop_drop=2.0),
                schedule=epoch_schedule,
                paper_row=False, published=end_to_end({"pascal": 89.8, "coco": 73.2, "nuswide": 49.1})))
