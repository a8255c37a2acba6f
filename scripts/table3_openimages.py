"""Table 3: OpenImages V3, real partial labels (human-verified positives and negatives), test mAP
per class group G1..G5 (1000 classes each, by how many training images annotate them) and over all.

Command:   python scripts/table3_openimages.py --data_dir data --seeds 1 --delta_rel 0.2 --nproc_per_node 4
           then  python scripts/collect.py table runs/table3_openimages --paper table3_openimages
Runs:      Naive AN, Naive IU, WAN, LSAN, LL-R, LL-Ct, LL-Cp x seeds on --dataset openimages (prepare
           it with data/prepare.py: the official train, validation and test splits), all under
           --protocol ll, the LL paper's settings: ResNet-101, 224 px, batch 288, Adam lr 1e-5, 10
           epochs, trained on all 3.4 M official train images, the epoch selected on the official
           validation set (42 k), test mAP on the official test set (125 k). The authors
           trained with batch 288 on 4 GPUs: --nproc_per_node 4 runs each under torchrun, 72 images
           per GPU, with the loss and its top-k over the whole 288 (--loss_scope global). On one
           device lower --bsize if it does not fit, which also changes k per batch. The paper
           publishes no delta_rel for OpenImages: --delta_rel is required for the LL rows (find one
           with scripts/sweep_delta.py --dataset openimages on val mAP). Decoding the originals at
           224 px needs more cores than a GPU node has: make the pre-resized copy once first,
           python data/resize_images.py --dataset openimages --image_size 224 (identical pixels).
           WAN and LSAN: Cole et al. never ran OpenImages, so their Table 3 numbers come from the LL
           authors under these same settings, not from Cole et al.'s protocol and search.
Hardware:  4 GPUs per run, as in the paper (--nproc_per_node 4). Time, estimated (not measured): about one
           GPU-day per run on an A100-class GPU, so about 7 GPU-days per seed.
Results:   runs/table3_openimages/openimages_<method>_ll_s<seed>/results.json (test_map and
           test_map_G1..G5).
Demo:      python scripts/table3_openimages.py --demo   (the same 7 methods on the demo dataset,
           where single-positive labels have no observed negatives, so Naive IU learns only positives)
"""
import sys

import experiments
import methods

METHODS = ("AN", "IU", "WAN", "LSAN", "LL-R", "LL-Ct", "LL-Cp")
PAPER_FLAGS = ["--arch", "resnet101", "--image_size", "224", "--bsize", "288"]


def main(argv=None):
    parser = experiments.script_parser(__doc__, "table3_openimages")
    beyond = [key for key, row in experiments.ROWS.items() if key not in METHODS and not row.boostlu
              and methods.get(row.method).scores is None]        # no zero-shot scores of OpenImages
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=(*METHODS, *beyond),
                        help=f"rows beyond the paper, added by name: {', '.join(beyond)}")
    parser.add_argument("--delta_rel", type=float, default=None,
                        help="percent per epoch for LL-R/LL-Ct/LL-Cp on OpenImages (required, no published value)")
    opts, passthrough = experiments.parse(parser, argv)
    if opts.delta_rel is None and not opts.demo and any(m in experiments.LL_METHODS for m in opts.methods):
        parser.error("--delta_rel is required for the LL rows: the paper publishes none for OpenImages "
                     "(choose it with scripts/sweep_delta.py --dataset openimages)")
    # Every row under the LL paper's protocol (WAN and LSAN too: the LL authors' runs), named as
    # experiments.py's scheme: openimages_<method>_ll_s<seed>.
    runs = experiments.method_runs(opts.methods, ["demo" if opts.demo else "openimages"], opts.seeds,
                                   ["--protocol", "ll", *([] if opts.demo else PAPER_FLAGS)], suffix="_ll")
    for run in runs:
        if opts.delta_rel is not None and experiments.rate_scheme(run.method):
            run.args += ["--delta_rel", str(opts.delta_rel)]
    return experiments.launch(runs, opts, passthrough)


if __name__ == "__main__":
    sys.exit(main())
