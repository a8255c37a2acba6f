"""Table 2, end-to-end rows: every method on VOC, COCO, NUS-WIDE and CUB, trained from ImageNet
weights with everything learning from the start.

Command:   python scripts/table2_end_to_end.py --data_dir data --seeds 3
           then  python scripts/collect.py table runs/table2_end_to_end --paper table2_end_to_end
Runs:      9 methods (Full label, Naive AN, WAN, LSAN, EPR, ROLE, LL-R, LL-Ct, LL-Cp) x 4 datasets x
           seeds; ResNet-50, 448 px, batch 16, 10 epochs, the authors' optimizer, lr and delta_rel
           per dataset (config.PAPER_SETTINGS). Add --datasets or --methods to run a part.
Hardware:  one GPU with 16 GB or more. Time, estimated from the number of images (not measured):
           per seed about 2 GPU-hours for VOC, 10 for COCO, 25 for NUS-WIDE, 2 for CUB on an
           A100-class GPU, so about 40 GPU-hours per seed in all.
Results:   runs/table2_end_to_end/<dataset>_<method>_s<seed>/results.json (test_map of the best
           val epoch). Rerunning skips finished runs and resumes interrupted ones.
Demo:      python scripts/table2_end_to_end.py --demo   (9 runs on a CPU, see README)
"""
import sys

import experiments

DATASETS = ("pascal", "coco", "nuswide", "cub")
METHODS = ("full", "AN", "WAN", "LSAN", "EPR", "ROLE", "LL-R", "LL-Ct", "LL-Cp")


def table2(argv, doc, save_name, linear_init):
    """Build and launch the runs of one half of Table 2 (shared with table2_linear_init.py)."""
    parser = experiments.script_parser(doc, save_name)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    beyond = [m for m in experiments.BEYOND_PAPER if not (linear_init and m.endswith("+BoostLU"))]
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=(*METHODS, *beyond),
                        help=f"rows beyond the paper, added by name: {', '.join(beyond)} (README 'Beyond the "
                             f"paper'; BoostLU trains end to end only)")
    if linear_init:
        parser.add_argument("--linear_init_epochs", type=int, default=1,
                            help="frozen-backbone epochs, counted within main.py's --num_epochs")
    opts, passthrough = experiments.parse(parser, argv)
    extra = ["--train_mode", "linear_init", "--linear_init_epochs", str(opts.linear_init_epochs)] if linear_init else []
    datasets = ["demo"] if opts.demo else opts.datasets
    return experiments.launch(experiments.method_runs(opts.methods, datasets, opts.seeds, extra), opts, passthrough)


def main(argv=None):
    return table2(argv, __doc__, "table2_end_to_end", linear_init=False)


if __name__ == "__main__":
    sys.exit(main())
