"""Table 2, LinearInit rows: the same methods, but the backbone is frozen for the first epochs and
only the linear head trains (on features cached once per image and flip), then everything is
fine-tuned. The LL epoch counter runs over both phases: epoch 1 is the warm-up.

Command:   python scripts/table2_linear_init.py --data_dir data --seeds 3 --linear_init_epochs 1
           then  python scripts/collect.py table runs/table2_linear_init --paper table2_linear_init
Runs:      9 methods x 4 datasets x seeds, as table2_end_to_end.py, with --train_mode linear_init.
           The authors never released this mode; --linear_init_epochs (default 1, counted within
           --num_epochs 10) is our choice, pass another value to explore.
Hardware:  one GPU with 16 GB or more; about the time of the end-to-end table (the frozen epochs
           cost one feature pass over the training images and its mirror): about 40 GPU-hours per
           seed on an A100-class GPU (estimated, not measured).
Results:   runs/table2_linear_init/<dataset>_<method>_s<seed>/results.json
Demo:      python scripts/table2_linear_init.py --demo
"""
import sys

import table2_end_to_end


def main(argv=None):
    return table2_end_to_end.table2(argv, __doc__, "table2_linear_init", linear_init=True)


if __name__ == "__main__":
    sys.exit(main())
