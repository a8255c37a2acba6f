"""Table 2, end-to-end rows: every method on VOC, COCO, NUS-WIDE and CUB, trained from ImageNet
weights with everything learning from the start.

Command:   python scripts/table2_end_to_end.py --data_dir data --seeds 3
           then  python scripts/collect.py table runs/table2_end_to_end --paper table2_end_to_end
Runs:      9 methods (Full label, Naive AN, WAN, LSAN, EPR, ROLE, LL-R, LL-Ct, LL-Cp) x 4 datasets x
           seeds, each row under the protocol that made its published number (its registry entry's protocol):
           Full label, Naive AN and the LL rows under the LL paper's (ResNet-50, 448 px, batch 16, 10
           epochs, the authors' optimizer, lr and delta_rel per dataset, config.PAPER_SETTINGS); WAN, LSAN,
           EPR and ROLE under Cole et al.'s (Adam, no 10x head, no early stop), each as their search of
           8 runs, bsize {8, 16} x lr {1e-2, 1e-3, 1e-4, 1e-5}, the best on val mAP reported (by
           collect.py). So 5 + 4 x 8 = 37 runs per dataset and seed. Cheaper: one pair per baseline row
           with --cole_bsizes 16 --cole_lrs 1e-4 (Cole et al. publish no chosen pair: that is our pick,
           not theirs). Add --datasets or --methods to run a part. Rows after the paper are added
           by name (--methods EM-APL GR-Loss VLPL AEVLP ...); VLPL and AEVLP read zero-shot scores,
           made first, once per dataset, from --clip_vlpl FILE and --clip_damp FILE (docs/methods.md; --demo scores
           with the demo backbone's own head).
Hardware:  one GPU with 16 GB or more. Time, estimated from the number of images (not measured):
           per seed and row about 0.2 GPU-hours for VOC, 1 for COCO, 2.5 for NUS-WIDE, 0.2 for CUB on
           an A100-class GPU: about 4 GPU-hours per row and seed over the 4 datasets, so about 160
           GPU-hours per seed with the search (37 rows' worth), 40 with --cole_bsizes 16 --cole_lrs 1e-4.
Results:   runs/table2_end_to_end/<dataset>_<method>_<protocol>[_b<bsize>_lr<lr>]_s<seed>/results.json
           (test_map of the best val epoch; <protocol> ll or cole, b/lr for a Cole search run; the
           scheme in scripts/experiments.py). Rerunning skips finished runs and resumes interrupted ones.
Demo:      python scripts/table2_end_to_end.py --demo   (9 runs on a CPU, one search pair, see README)
"""
import sys

import experiments

sys.path.insert(0, experiments.REPO_DIR)
import config  # noqa: E402  (after the repository is on the path: the protocols' search grid and styles)
import datasets  # noqa: E402

DATASETS = datasets.TABLE2
METHODS = ("full", "AN", "WAN", "LSAN", "EPR", "ROLE", "LL-R", "LL-Ct", "LL-Cp")


def table2(argv, doc, save_name, linear_init):
    """Build and launch the runs of one half of Table 2 (shared with table2_linear_init.py)."""
    parser = experiments.script_parser(doc, save_name)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    beyond = [m for m in experiments.BEYOND_PAPER if not (linear_init and m.endswith("+BoostLU"))]
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=(*METHODS, *beyond),
                        help=f"rows beyond the paper, added by name: {', '.join(beyond)} (README 'Beyond the "
                             f"paper'; BoostLU trains end to end only)")
    parser.add_argument("--cole_bsizes", nargs="+", type=int, default=None,
                        help="batch sizes of Cole et al.'s search for the WAN, LSAN, EPR and ROLE rows (default "
                             "theirs, 8 16; --demo: 16)")
    parser.add_argument("--cole_lrs", nargs="+", type=float, default=None,
                        help="learning rates of that search (default theirs, 1e-2 1e-3 1e-4 1e-5; --demo: 1e-4, "
                             "the lr of the demo's LL rows, which start from pretrained weights)")
    if linear_init:
        parser.add_argument("--ll_linear_init_style", default="within", choices=config.LINEAR_INIT_STYLES,
                            help="LinearInit of the LL-protocol rows (Full label, Naive AN, LL-*): within (the first "
                                 "--linear_init_epochs of the 10 frozen) or cole (Cole et al.'s 25-epoch linear "
                                 "phase, then 10 epochs). The Cole-protocol rows always run Cole et al.'s")
        parser.add_argument("--linear_init_epochs", type=int, default=1,
                            help="style within: frozen-backbone epochs, counted within main.py's --num_epochs")
    opts, passthrough = experiments.parse(parser, argv)
    search = {"bsize": opts.cole_bsizes or ((16,) if opts.demo else config.COLE_SEARCH["bsize"]),
              "lr": opts.cole_lrs or ((1e-4,) if opts.demo else config.COLE_SEARCH["lr"])}

    def style_of(protocol):
        if not linear_init:
            return None
        return "cole" if protocol == "cole" else opts.ll_linear_init_style

    def extra_of(protocol):
        style = style_of(protocol)
        if style is None:
            return []
        epochs = ["--linear_init_epochs", str(opts.linear_init_epochs)] if style == "within" else []
        return ["--train_mode", "linear_init", "--linear_init_style", style, *epochs]

    datasets = ["demo"] if opts.demo else opts.datasets
    runs = experiments.protocol_runs(opts.methods, datasets, opts.seeds, search, extra_of, style_of)
    return experiments.launch(runs, opts, passthrough)


def main(argv=None):
    return table2(argv, __doc__, "table2_end_to_end", linear_init=False)


if __name__ == "__main__":
    sys.exit(main())
