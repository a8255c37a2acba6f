"""Figure 6: test mAP against the fraction of training images kept (10 % ... 100 %), with weak
(single positive) labels against full labels.

Command:   python scripts/figure6_fraction.py --data_dir data --dataset coco --seeds 1
           then  python scripts/collect.py fraction runs/figure6 --png figure6.png
Runs:      fractions 0.1 0.2 ... 1.0 (--ss_frac_train: a fixed seeded subset, the same for every
           method) x methods (default: Full label, Naive AN, LL-R, LL-Ct, LL-Cp) x seeds, with the
           dataset's paper settings.
Hardware:  one GPU; a run costs about its fraction of a full run: about 5.5 full runs per method
           and seed, e.g. 50 GPU-hours per seed for 5 methods on COCO (estimated, not measured).
Results:   runs/figure6/<dataset>_<method>_f<fraction>_s<seed>/results.json
Demo:      python scripts/figure6_fraction.py --demo --fractions 0.25 0.5 1.0
"""
import sys

import experiments
import datasets  # noqa: E402  (experiments puts the repository on the path)

FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
METHODS = ("full", "AN", "LL-R", "LL-Ct", "LL-Cp")


def main(argv=None):
    parser = experiments.script_parser(__doc__, "figure6")
    parser.add_argument("--dataset", default="coco", choices=datasets.TABLE2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=tuple(experiments.METHODS))
    parser.add_argument("--fractions", nargs="+", type=float, default=FRACTIONS,
                        help="fractions of the training images to keep, in (0, 1]")
    opts, passthrough = experiments.parse(parser, argv)
    dataset = "demo" if opts.demo else opts.dataset
    runs = [run for frac in opts.fractions
             for run in experiments.method_runs(opts.methods, [dataset], opts.seeds,
                                                ["--ss_frac_train", str(frac)], suffix=f"_f{frac:g}")]
    return experiments.launch(runs, opts, passthrough)


if __name__ == "__main__":
    sys.exit(main())
