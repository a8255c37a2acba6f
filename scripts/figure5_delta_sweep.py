"""Figure 5: LL-Ct test mAP on COCO against delta_rel in {0.1, ..., 0.5} (percent per epoch).

Command:   python scripts/figure5_delta_sweep.py --data_dir data --seeds 3
           then  python scripts/collect.py sweep runs/figure5 --png figure5.png
Runs:      5 delta_rel values x seeds, LL-Ct on COCO with the paper settings (ResNet-50, 448 px,
           Adam lr 1e-5, batch 16, 10 epochs).
Hardware:  one GPU; about 50 GPU-hours per seed on an A100-class GPU (estimated, not measured).
Results:   runs/figure5/coco_LL-Ct_d<delta_rel>_s<seed>/results.json; the figure plots test mAP
           (mean and std over seeds) against delta_rel.
Demo:      python scripts/figure5_delta_sweep.py --demo   (delta_rel 1-5 on the demo)
"""
import sys

import sweep_delta


def main(argv=None):
    return sweep_delta.sweep(argv, __doc__, default_dataset="coco", default_scheme="LL-Ct", save_name="figure5")


if __name__ == "__main__":
    sys.exit(main())
