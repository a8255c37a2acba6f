"""Collect finished runs (each folder's config.json and results.json) into the paper's tables, as
Markdown with our mean ± std over seeds beside the paper's numbers, and into its figures, as PNG.

    python scripts/collect.py table runs/table2_end_to_end            # Table 2, end-to-end
    python scripts/collect.py table runs/table2_linear_init           # Table 2, LinearInit
    python scripts/collect.py table runs/table3_openimages            # Table 3 (G1..G5 and all)
    python scripts/collect.py sweep runs/figure5 --png figure5.png    # Figure 5 / any delta_rel sweep
    python scripts/collect.py fraction runs/figure6 --png figure6.png # Figure 6
    python scripts/collect.py per_class runs/mine --png per_class.png # test AP per class, methods as columns
    python scripts/collect.py curves runs/mine/a runs/mine/b --out ab.png  # runs' val mAP and loss per epoch

A table's paper column is chosen from the folder name (or --paper); runs not yet finished are
left out and counted.
"""
import argparse
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import curves  # noqa: E402  (after the repository is on the path)
import datasets  # noqa: E402
import methods  # noqa: E402
import run_files  # noqa: E402

DATASET_NAMES = {name: dataset.display for name, dataset in datasets.DATASETS.items()}
GROUPS = ["G1", "G2", "G3", "G4", "G5"]
# The tables whose published numbers the registry holds (each row's ``published``); the end-to-end
# Table 2 also shows the later methods' own papers' numbers beside theirs.
TABLES = ("table2_end_to_end", "table2_linear_init", "table3_openimages")


def paper_column(table):
    """The published numbers beside a table, {row's display name: {dataset: {metric: value}}}: the
    rows of that table in the registry (methods/), or None for a folder of no paper table."""
    if table not in TABLES:
        return None
    return {row.display: row.published[table] for row in methods.rows_in_order() if table in row.published}


def load_runs(folder):
    """One dict per finished run under ``folder``: its config.json updated with its results.json."""
    records, unfinished = [], 0
    for name in sorted(os.listdir(folder)):
        run_dir = os.path.join(folder, name)
        if not os.path.isfile(os.path.join(run_dir, run_files.CONFIG)):
            continue
        if not run_files.finished(run_dir):
            unfinished += 1
            continue
        record = {**run_files.read_json(run_dir, run_files.CONFIG), **run_files.read_json(run_dir, run_files.RESULTS)}
        records.append(record)
    if unfinished:
        print(f"({unfinished} unfinished runs in {folder} left out)", file=sys.stderr)
    return records


def method_label(record):
    """A run's row in the tables: the display name of its registry row (methods/), else of its method."""
    row = methods.row_of(record)
    return row.display if row is not None else methods.display_name(record["mod_scheme"])


def mean_std(values):
    """'71.23 ± 0.41 (n=3)' over seeds (sample std); the mean alone for one seed; '' for none."""
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} (n={len(values)})"


def _rank(label):
    """The paper's order of rows (the registry's, methods.rows_in_order); others after them, by name."""
    order = [row.display for row in methods.rows_in_order()]
    return (order.index(label) if label in order else len(order), label)


def _order(labels):
    return sorted(labels, key=_rank)


def how_run(record):
    """The protocol a run trained under ('ll' for run folders older than --protocol), and its
    LinearInit style: read from the run's own record, so that runs of different kinds never share a
    row, whatever their folder names."""
    protocol = record.get("protocol", "ll")
    if record.get("train_mode") == "linear_init":
        protocol += f", LinearInit {record.get('linear_init_style', 'within')}"
    return protocol


def linear_only(record):
    """A run of the LinearInit linear-only search (Cole et al.'s linear phase, --num_epochs 0): it
    only picks the linear-phase pair of the fine-tuning runs and is no row of a table."""
    return record.get("train_mode") == "linear_init" and record.get("num_epochs") == 0


def select_runs(records):
    """The run reported per row, dataset and seed: where several runs share them (Cole et al.'s
    search over bsize x lr), the one with the best val mAP, as their train.py reports it. A row is a
    method under one protocol and LinearInit style (how_run). Returns (record, searched) pairs;
    ``searched``: it was chosen among more than one run. Linear-only runs are left out."""
    groups = defaultdict(list)
    for r in records:
        if not linear_only(r):
            groups[(method_label(r), how_run(r), r["train_mode"], r["dataset"], r["seed"])].append(r)
    return [(max(runs, key=lambda r: r["best_val_map"]), len(runs) > 1) for runs in groups.values()]


def table_markdown(records, paper=None):
    """Rows: a method under one protocol (and LinearInit style), shown in the protocol column; per
    dataset our test mAP (mean ± std over seeds; for a searched row, of the run chosen on val mAP per
    seed, its bsize and lr in brackets) and the paper's. Datasets with class groups (OpenImages) get
    a column per group too, ours and the paper's. Rows the paper only quotes (Curriculum, IMCL) are
    listed with its numbers alone."""
    paper = paper or {}
    cells = defaultdict(list)                  # ((method, how), dataset, metric) -> values over seeds
    chosen = defaultdict(set)                  # ((method, how), dataset) -> {(bsize, lr)} of searched rows
    records = [r for r in records if not linear_only(r)]
    datasets = [d for d in DATASET_NAMES if any(r["dataset"] == d for r in records)]
    modes = {r["train_mode"] for r in records}
    for r, searched in select_runs(records):
        row = (method_label(r) + (" (LinearInit)" if len(modes) > 1 and r["train_mode"] == "linear_init" else ""),
               how_run(r))
        if searched:
            chosen[(row, r["dataset"])].add((r.get("bsize"), r.get("lr")))
        for key, value in r.items():
            if key == "test_map" or key.startswith("test_map_G"):
                cells[(row, r["dataset"], key)].append(value)
    quoted = [(row.display, "quoted, no run of ours") for row in methods.rows_in_order()
              if row.method is None and any(d in paper.get(row.display, {}) for d in datasets)]
    rows = sorted({row for row, _, _ in cells} | set(quoted), key=lambda row: (_rank(row[0]), row[1]))
    header, keys = ["method", "protocol"], []
    for d in datasets:
        groups = [g for g in GROUPS if any((row, d, f"test_map_{g}") in cells for row in rows)]
        for metric, name in [*((f"test_map_{g}", f" {g}") for g in groups), ("test_map", " all" if groups else "")]:
            header.append(f"{DATASET_NAMES[d]}{name} ours")
            keys.append((d, metric, "ours"))
            if any(metric in p.get(d, {}) for p in paper.values()):
                header.append(f"{DATASET_NAMES[d]}{name} paper")
                keys.append((d, metric, "paper"))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m, how in rows:
        line = [m, how]
        for d, metric, source in keys:
            if source == "paper":
                value = paper.get(m, {}).get(d, {}).get(metric)
                line.append("-" if value is None else f"{value:.1f}")
                continue
            cell = mean_std(cells.get(((m, how), d, metric), []))
            if cell and metric == "test_map" and chosen.get(((m, how), d)):
                cell += " [" + ", ".join(f"b{b} lr {lr:g}" for b, lr in sorted(chosen[((m, how), d)])) + "]"
            line.append(cell)
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines + image_counts(records, datasets))


def image_counts(records, datasets):
    """A line per dataset with the images its runs trained, selected and were tested on (results.json's
    num_images), so the protocol of the numbers shows: Table 3 trains on all of OpenImages' official
    train set, selects on its validation set and tests on its test set."""
    lines = []
    for d in datasets:
        sizes = sorted({tuple(r["num_images"][s] for s in ("train", "val", "test"))
                        for r in records if r["dataset"] == d and "num_images" in r})
        if sizes:
            lines.append(f"{DATASET_NAMES[d]} images, train / val / test: "
                         + "; ".join(" / ".join(f"{n:,}" for n in size) for size in sizes))
    return [""] + lines if lines else []


def _by(records, *keys):
    groups = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def best_delta(records):
    """{(dataset, scheme): delta_rel with the best mean best_val_map over seeds} (the authors' rule)."""
    best = {}
    for (dataset, scheme, delta), runs in sorted(_by(records, "dataset", "mod_scheme", "delta_rel").items()):
        score = np.mean([r["best_val_map"] for r in runs])
        if (dataset, scheme) not in best or score > best[(dataset, scheme)][1]:
            best[(dataset, scheme)] = (delta, score)
    return {key: delta for key, (delta, _) in best.items()}


def sweep_table(records):
    """Val and test mAP per delta_rel, and the value chosen on val mAP."""
    if not records:
        return "no finished runs"
    lines = ["| dataset | scheme | delta_rel (%/epoch) | val mAP | test mAP |", "|---|---|---|---|---|"]
    for (dataset, scheme, delta), runs in sorted(_by(records, "dataset", "mod_scheme", "delta_rel").items()):
        lines.append(f"| {DATASET_NAMES.get(dataset, dataset)} | {scheme} | {delta:g} | "
                     f"{mean_std([r['best_val_map'] for r in runs])} | {mean_std([r['test_map'] for r in runs])} |")
    for (dataset, scheme), delta in best_delta(records).items():
        lines.append(f"\nBest delta_rel on val mAP for {scheme} on {DATASET_NAMES.get(dataset, dataset)}: {delta:g}")
    return "\n".join(lines)


def fraction_table(records):
    """Test mAP per method and fraction of training images."""
    fractions = sorted({r["ss_frac_train"] for r in records})
    methods = _order({method_label(r) for r in records})
    lines = ["| method | " + " | ".join(f"{100 * f:g} %" for f in fractions) + " |", "|---|" + "---|" * len(fractions)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(
            mean_std([r["test_map"] for r in records if r["ss_frac_train"] == f and method_label(r) == m])
            for f in fractions) + " |")
    return "\n".join(lines)


def per_class_ap(records):
    """({method: {class: [test AP over seeds]}}, class names in column order) of the runs that
    record per-class AP (results.json's test_per_class_ap); runs of other classes raise ValueError."""
    records = [r for r in records if "test_per_class_ap" in r]
    if not records:
        return {}, []
    names = list(records[0]["test_per_class_ap"])
    table = defaultdict(lambda: defaultdict(list))
    for r in records:
        if list(r["test_per_class_ap"]) != names:
            raise ValueError(f"runs of different classes in one folder: {names[:3]}... and "
                             f"{list(r['test_per_class_ap'])[:3]}...")
        for name, ap in r["test_per_class_ap"].items():
            if ap is not None:
                table[method_label(r)][name].append(ap)
    return table, names


def per_class_table(table, names):
    """Rows: classes; columns: methods, each the mean ± std of test AP over seeds."""
    methods = _order(table)
    lines = ["| class | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(mean_std(table[m].get(name, [])) or "-" for m in methods) + " |")
    return "\n".join(lines)


def plot_per_class(table, names, png):
    """Grouped bars: per class, each method's mean test AP over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = _order(table)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names) * max(1, len(methods) / 2)), 3.5))
    for i, m in enumerate(methods):
        means = [np.mean(table[m][n]) if table[m].get(n) else np.nan for n in names]
        ax.bar(np.arange(len(names)) + (i - (len(methods) - 1) / 2) * width, means, width, label=m)
    ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test AP (%)")
    ax.set_title("Test AP per class")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=150)
    plt.close(fig)
    print(f"wrote {png}")


def _plot(series, xlabel, title, png, percent_axis=False):
    """series: {label: {x: [values over seeds]}} -> PNG with mean and std error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in series.items():
        xs = sorted(points)
        means = [np.mean(points[x]) for x in xs]
        stds = [np.std(points[x], ddof=1) if len(points[x]) > 1 else 0.0 for x in xs]
        ax.errorbar([100 * x if percent_axis else x for x in xs], means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test mAP (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=150)
    plt.close(fig)
    print(f"wrote {png}")


def plot_sweep(records, png):
    series = defaultdict(lambda: defaultdict(list))
    for r in records:
        series[f"{r['mod_scheme']} ({DATASET_NAMES.get(r['dataset'], r['dataset'])})"][r["delta_rel"]].append(r["test_map"])
    _plot(series, "delta_rel (% per epoch)", "Test mAP against delta_rel (paper Fig. 5)", png)


def plot_fraction(records, png):
    series = defaultdict(lambda: defaultdict(list))
    for r in records:
        series[method_label(r)][r["ss_frac_train"]].append(r["test_map"])
    _plot(series, "training images kept (%)", "Test mAP against training-set size (paper Fig. 6)", png,
          percent_axis=True)


def draw_curves(parser, run_dirs, out):
    """One run: all its panels (curves.draw_run); several: their val mAP and loss on one figure."""
    missing = [d for d in run_dirs if not os.path.isfile(os.path.join(d, run_files.LOG))]
    if missing:
        parser.error(f"no log.jsonl in {', '.join(missing)}")
    if len(run_dirs) > 1 and out is None:
        parser.error("curves of several runs need --out FILE.png")
    path = curves.draw_run(run_dirs[0], out) if len(run_dirs) == 1 else curves.draw_runs(run_dirs, out)
    print(f"wrote {path}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("table", "sweep", "fraction", "per_class", "curves"))
    p.add_argument("runs", nargs="+", help="the folder holding the run folders (a script's --save_path); "
                   "curves: one or more run folders (each with its log.jsonl)")
    p.add_argument("--paper", choices=TABLES, default=None,
                   help="which paper numbers to show beside ours (default: from the folder name)")
    p.add_argument("--png", default=None, help="sweep, fraction and per_class: also draw the figure into this PNG file")
    p.add_argument("--out", default=None, help="curves: the PNG file to draw (default, for one run: "
                   "RUN/curves.png; several runs need it)")
    opts = p.parse_args(argv)
    if opts.kind == "curves":
        return draw_curves(p, opts.runs, opts.out)
    if len(opts.runs) > 1:
        p.error(f"{opts.kind} takes one folder of runs")
    opts.runs = opts.runs[0]
    if not os.path.isdir(opts.runs):
        p.error(f"{opts.runs} is not a folder")
    records = load_runs(opts.runs)
    if not records:
        print(f"no finished runs in {opts.runs}")
        return 1
    if opts.kind == "table":
        print(table_markdown(records, paper_column(opts.paper or os.path.basename(os.path.normpath(opts.runs)))))
        return 0
    if opts.kind == "per_class":
        try:
            table, names = per_class_ap(records)
        except ValueError as err:
            p.error(str(err))
        if not names:
            print(f"no run in {opts.runs} records per-class AP (results.json's test_per_class_ap)")
            return 1
        print(per_class_table(table, names))
        if opts.png:
            plot_per_class(table, names, opts.png)
        return 0
    print(sweep_table(records) if opts.kind == "sweep" else fraction_table(records))
    if opts.png:
        (plot_sweep if opts.kind == "sweep" else plot_fraction)(records, opts.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
