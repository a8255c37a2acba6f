"""Sweep delta_rel (percent per epoch) for any dataset and LL scheme, and pick the value with the
best validation mAP (the mean over seeds of each run's best_val_map), as the authors chose theirs.

Command:   python scripts/sweep_delta.py --dataset coco --scheme LL-Ct --seeds 1
Runs:      one run per delta_rel (default the authors' grid 0.1 0.2 0.3 0.4 0.5) and seed, with the
           dataset's paper settings otherwise; extra main.py flags (e.g. --train_mode linear_init)
           are passed on to every run.
Hardware:  one GPU; 5 runs per seed, e.g. about 50 GPU-hours per seed for COCO on an A100-class
           GPU (estimated, not measured).
Results:   runs/sweep_<dataset>_<scheme>/<dataset>_<scheme>_d<delta_rel>_s<seed>/results.json;
           when all have finished it prints val and test mAP per delta_rel and the chosen value
           (also: python scripts/collect.py sweep runs/sweep_<dataset>_<scheme>).
Demo:      python scripts/sweep_delta.py --demo --scheme LL-Ct   (grid 1 2 3 4 5 on the demo)
"""
import os
import sys

import collect
import experiments

PAPER_GRID = [0.1, 0.2, 0.3, 0.4, 0.5]
DEMO_GRID = [1.0, 2.0, 3.0, 4.0, 5.0]     # 6 demo epochs need larger rates to act


def sweep_runs(dataset, scheme, deltas, seeds):
    return [experiments.Run(f"{dataset}_{scheme}_d{delta:g}_s{seed}", dataset,
                            [*experiments.METHODS[scheme], "--delta_rel", str(delta), "--seed", str(seed)],
                            experiments.ROWS[scheme].method)
            for delta in deltas for seed in range(seeds)]


def sweep(argv, doc, default_dataset=None, default_scheme=None, save_name=None):
    """Build, launch and summarise a delta_rel sweep (shared with figure5_delta_sweep.py)."""
    parser = experiments.script_parser(doc, save_name)
    parser.add_argument("--dataset", default=default_dataset, help="required unless --demo")
    parser.add_argument("--scheme", default=default_scheme or "LL-Ct", choices=experiments.LL_METHODS)
    parser.add_argument("--deltas", nargs="+", type=float, default=None,
                        help="delta_rel values, percent per epoch (default 0.1-0.5; 1-5 with --demo)")
    opts, passthrough = experiments.parse(parser, argv)
    if opts.dataset is None and not opts.demo:
        parser.error("--dataset is required (or --demo)")
    dataset = "demo" if opts.demo else opts.dataset
    if opts.save_path is None:
        opts.save_path = os.path.abspath(os.path.join("runs", f"sweep_{dataset}_{opts.scheme}"))
    deltas = opts.deltas or (DEMO_GRID if opts.demo else PAPER_GRID)
    status = experiments.launch(sweep_runs(dataset, opts.scheme, deltas, opts.seeds), opts, passthrough)
    if not opts.dry_run:
        print(collect.sweep_table(collect.load_runs(opts.save_path)))
    return status


def main(argv=None):
    return sweep(argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
