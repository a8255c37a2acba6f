"""A picture of a run: its log.jsonl (one record per epoch) drawn as curves.

    draw_run(run_dir)             # <run_dir>/curves.png: val mAP (best epoch marked), training loss,
                                  # and for LL schemes with known truth the share of modified (and
                                  # for LL-Cp, written) entries truly positive (analysis.precision_curves)
    draw_runs(run_dirs, out)      # several runs' val mAP and loss on one figure, one line a run

Drawn with matplotlib's Agg canvas (no pyplot, no display, no global state), so train.py may call
draw_run at the end of a run, and scripts/collect.py's ``curves`` command draws finished ones.
"""
import math
import os

import analysis
import run_files

PANEL_WIDTH, PANEL_HEIGHT = 4.5, 3.5        # inches per panel; the figure is one row of panels
DPI = 120


def read_best_epoch(run_dir):
    """results.json's best_epoch, or None where the run has not finished (no results.json)."""
    return run_files.read_json(run_dir, run_files.RESULTS).get("best_epoch") if run_files.finished(run_dir) else None


def panels(records):
    """The panels draw_run draws for these records, in order: val mAP and training loss, and the
    precision of modification where any record knows it (an LL scheme on a split with ground truth:
    ``analysis.precision_curves``)."""
    names = ["val_map", "train_loss"]
    if analysis.precision_curves(records):
        names.append("modification_precision")
    return names


def _series(records, key, scale=1.0):
    """(epochs, values) of ``key``, NaN where a record lacks it or holds None (a gap in the line)."""
    epochs = [r["epoch"] for r in records]
    values = [scale * r[key] if r.get(key) is not None else math.nan for r in records]
    return epochs, values


def _figure(num_panels):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(PANEL_WIDTH * num_panels, PANEL_HEIGHT), dpi=DPI)
    axes = fig.subplots(1, num_panels, squeeze=False)[0]
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs are whole numbers
    return fig, list(axes)


def _save(fig, out):
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI, format="png")
    return out


def _mark_best(ax, records, best_epoch, **style):
    by_epoch = {r["epoch"]: r.get("val_map") for r in records}
    if best_epoch is not None and by_epoch.get(best_epoch) is not None:
        ax.axvline(best_epoch, color=style.get("color", "grey"), linestyle=":", alpha=0.6)
        ax.plot([best_epoch], [by_epoch[best_epoch]], marker="*", markersize=12, linestyle="none", **style)


def plot_precision(ax, records, name=None):
    """Fig. 4, the precision of modification of a run's records (``analysis.precision_curves``: each
    epoch's modified entries, and LL-Cp's written ones, truly positive, in %), on ``ax``; the lines
    labelled with ``name`` where several runs share the axes. Returns the curves drawn."""
    precision = analysis.precision_curves(records)
    for (label, (epochs, shares)), color in zip(precision.items(), ("tab:green", "tab:purple")):
        ax.plot(epochs, [100 * v for v in shares], marker="o", markersize=3, color=None if name else color,
                label=f"{name}, {label}" if name else label)
    ax.set_ylim(-2, 102)
    ax.set_ylabel("truly positive (%)")
    if precision:
        ax.legend(fontsize=8)
    return precision


def draw_run(run_dir, out=None):
    """Draws ``run_dir``'s log.jsonl into ``out`` (default <run_dir>/curves.png) and returns its path:
    val mAP per epoch with results.json's best epoch marked, training loss per epoch, and, where
    the truth is known, the precision of modification (``analysis.precision_curves``: each epoch's
    modified entries, and LL-Cp's written ones, truly positive), titled with how many entries were
    modified (and written). A run without results.json (still running) is drawn without the mark."""
    records = run_files.read_log(run_dir)
    best_epoch = read_best_epoch(run_dir)
    names = panels(records)
    fig, axes = _figure(len(names))
    title = os.path.basename(os.path.normpath(run_dir))
    for ax, name in zip(axes, names):
        if name == "val_map":
            ax.plot(*_series(records, "val_map"), marker="o", markersize=3, label="val mAP")
            _mark_best(ax, records, best_epoch, color="tab:red",
                       label=f"best epoch {best_epoch}" if best_epoch is not None else None)
            ax.set_ylabel("val mAP (%)")
            ax.set_title(f"{title}: val mAP")
            if best_epoch is not None:
                ax.legend(fontsize=8)
        elif name == "train_loss":
            ax.plot(*_series(records, "train_loss"), marker="o", markersize=3, color="tab:orange")
            ax.set_ylabel("training loss")
            ax.set_title(f"{title}: training loss")
        else:
            plot_precision(ax, records)
            ax.set_title(analysis.modification_counts(records), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _save(fig, out or os.path.join(run_dir, run_files.CURVES))


def draw_runs(run_dirs, out):
    """Draws several runs' val mAP (each best epoch marked) and training loss on one figure of two
    panels, a line per run, the legend naming each run by its folder; returns ``out``."""
    fig, (ax_map, ax_loss) = _figure(2)
    colors = [f"C{i % 10}" for i in range(len(run_dirs))]
    for run_dir, color in zip(run_dirs, colors):
        records = run_files.read_log(run_dir)
        name = os.path.basename(os.path.normpath(run_dir))
        ax_map.plot(*_series(records, "val_map"), marker="o", markersize=3, color=color, label=name)
        _mark_best(ax_map, records, read_best_epoch(run_dir), color=color)
        ax_loss.plot(*_series(records, "train_loss"), marker="o", markersize=3, color=color, label=name)
    ax_map.set_ylabel("val mAP (%)")
    ax_map.set_title("val mAP (best epoch starred)")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss")
    for ax in (ax_map, ax_loss):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out)
