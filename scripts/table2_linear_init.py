"""Table 2, LinearInit rows: the same methods, but the linear head trains first on the frozen
backbone's features (cached once per image and flip), then everything is fine-tuned.

Command:   python scripts/table2_linear_init.py --data_dir data --seeds 3
           then  python scripts/collect.py table runs/table2_linear_init --paper table2_linear_init
Runs:      9 methods x 4 datasets x seeds, as table2_end_to_end.py (the same protocols per row and
           Cole et al.'s search for WAN, LSAN, EPR and ROLE: 37 runs per dataset and seed), with
           --train_mode linear_init. WAN, LSAN, EPR and ROLE in Cole et al.'s style
           (--linear_init_style cole: 25 linear epochs at one linear_init_lr / linear_init_bsize, the
           best on val, then a fresh 10-epoch fine-tuning, the part their search varies). Cole et al.
           fix one linear-phase pair for all fine-tuning runs: LSAN and ROLE take their published one
           (config.COLE_LINEAR_INIT); WAN and EPR first run the linear-only search, one run per
           (bsize, lr) of the same grid as --linear_init_bsize / --linear_init_lr with --num_epochs 0,
           and their fine-tuning runs then take the pair with the best val mAP per dataset and seed
           (listed "[after linear search]" until those runs are done; the launcher runs them first).
           So 16 more runs per dataset and seed, short ones (25 epochs on cached features). The LL rows
           as we read the LL paper's "initial epochs" (style within: --linear_init_epochs 1 of the 10
           frozen, the LL epoch counter over both phases); --ll_linear_init_style cole runs them
           Cole et al.'s way. The LL authors never released this mode (README "Table 2").
Hardware:  one GPU with 16 GB or more; about the time of the end-to-end table (a linear phase costs
           one feature pass over the training images and its mirror, then epochs on cached features):
           about 160 GPU-hours per seed with the search, 40 with --cole_bsizes 16 --cole_lrs 1e-4, on
           an A100-class GPU (estimated, not measured).
Results:   runs/table2_linear_init/<dataset>_<method>_<protocol>_li-<style>[_linear][_b<bsize>_lr<lr>]_s<seed>/
           results.json (scheme in scripts/experiments.py; collect.py leaves the _linear runs out)
Demo:      python scripts/table2_linear_init.py --demo
"""
import sys

import table2_end_to_end


def main(argv=None):
    return table2_end_to_end.table2(argv, __doc__, "table2_linear_init", linear_init=True)


if __name__ == "__main__":
    sys.exit(main())
