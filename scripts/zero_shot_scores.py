"""Zero-shot class scores of a dataset's official train images, for VLPL and AEVLP (zero_shot.py).

    python scripts/zero_shot_scores.py --dataset demo --mode damp       # the demo: no download, CPU
    python scripts/zero_shot_scores.py --dataset coco --mode damp --weights data/clip/ViT-B-16.pt
    python scripts/zero_shot_scores.py --dataset coco --mode vlpl --weights data/clip/ViT-L-14-336px.pt

Writes <data_dir>/zero_shot_<mode>.npz and its JSON record (written last). An interrupted run
continues where it stopped when run again with the same settings.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402  (needs the path above)
import datasets  # noqa: E402
import zero_shot  # noqa: E402
from errors import UserError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# VLPL's VOC/COCO text features are of the class names alone (their *_labelonly.npy); AEVLP's prompt
# learner starts from (and, never trained, stays at) "a photo of a".
DEFAULT_PROMPT = {"damp": "a photo of a {}.", "vlpl": "{}"}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=datasets.SINGLE_POSITIVE)
    p.add_argument("--data_dir", default=None, help="formatted dataset folder; default data/<dataset>")
    p.add_argument("--mode", required=True, choices=zero_shot.MODES,
                   help="vlpl: the whole image; damp: AEVLP's whole image + grid of tiles")
    p.add_argument("--scorer", default=None, choices=("clip", "demo"),
                   help="default: demo (the demo backbone's 36-way head) for --dataset demo, else clip")
    p.add_argument("--weights", default=None,
                   help="local CLIP weights: OpenAI's .pt (TorchScript) or an open_clip state_dict/safetensors; "
                        "default data/clip/<OpenAI's file name> in the repository")
    p.add_argument("--model", default=None, help="open_clip model name; default damp ViT-B-16, vlpl ViT-L-14-336")
    p.add_argument("--model_config", default=None,
                   help="an open_clip model config JSON (its file name is the model's name: --model defaults to it)")
    p.add_argument("--prompt", default=None, help="text per class, {} is the class name; default damp "
                                                  "'a photo of a {}.', vlpl '{}'")
    p.add_argument("--temperature", type=float, default=None,
                   help="softmax temperature; default 0.01 (damp on cub: 0.1), the authors'")
    p.add_argument("--grid_size", type=int, default=None, help="damp's tiles per side; default 4, cub 5, demo 2")
    p.add_argument("--relation", default=None,
                   help="AEVLP's K x K relation+<dataset>.npy: adds their (random, untrained) GCN residual "
                        "to the text features")
    p.add_argument("--gcn_seed", type=int, default=0, help="seed of the GCN's weights (the authors' are unseeded)")
    p.add_argument("--sparse_topk", type=int, default=None,
                   help="entries kept per row of the relation; default the authors' per dataset (else all)")
    p.add_argument("--batch_size", type=int, default=32,
                   help="images per forward pass (damp: each image is grid_size^2 + 1 views)")
    p.add_argument("--num_workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--chunk_size", type=int, default=zero_shot.CHUNK_SIZE, help="images per resumable chunk")
    p.add_argument("--device", default=None, help="default cuda if available, else cpu")
    p.add_argument("--out", default=None, help="npz path; default <data_dir>/zero_shot_<mode>.npz")
    p.add_argument("--force", action="store_true",
                   help="recompute from scratch, even if a complete or a partial score file exists")
    return p


def default_weights(model):
    name = model.replace("-quickgelu", "")
    if name in zero_shot.OPENAI_URLS:
        return os.path.join(REPO, "data", "clip", os.path.basename(zero_shot.OPENAI_URLS[name]))
    return os.path.join(REPO, "data", "clip", f"{model}.pt")


def build_scorer(args, class_names, device):
    if args.scorer == "demo":
        return zero_shot.DemoHeadScorer(device, class_names)
    model = args.model or (os.path.splitext(os.path.basename(args.model_config))[0] if args.model_config
                           else zero_shot.DEFAULT_MODEL[args.mode])
    temperature = args.temperature or (0.1 if args.mode == "damp" and args.dataset == "cub" else 0.01)
    sparse_topk = args.sparse_topk or zero_shot.AEVLP_RELATION.get(args.dataset, (None,))[0]
    return zero_shot.ClipScorer(model, args.weights or default_weights(model), class_names,
                                args.prompt or DEFAULT_PROMPT[args.mode], temperature, device,
                                relation_file=args.relation, gcn_seed=args.gcn_seed, model_config=args.model_config,
                                sparse_topk=sparse_topk)


def read_class_names(data_dir):
    names = datasets.read_class_names(data_dir)
    if names is None:
        raise UserError(f"{os.path.join(data_dir, datasets.CLASS_NAMES_FILE)} not found: the text prompts need "
                        f"the class names (data/README.md)")
    return names


def run(args):
    data_dir = config.dataset_dir(args.dataset, args.data_dir)
    if args.dataset == "demo":
        from data.demo import ensure_demo_dataset
        ensure_demo_dataset(data_dir)
    args.scorer = args.scorer or ("demo" if args.dataset == "demo" else "clip")
    npz_path = args.out or zero_shot.score_paths(data_dir, args.mode)[0]
    grid_size = args.grid_size or (5 if args.dataset == "cub" else 2 if args.dataset == "demo" else 4)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scorer = build_scorer(args, read_class_names(data_dir), device)
    record, computed = zero_shot.compute_scores(data_dir, args.dataset, scorer, args.mode, grid_size, args.batch_size,
                                      out=npz_path, chunk_size=args.chunk_size, num_workers=args.num_workers,
                                      resume=not args.force)
    if not computed:
        print(f"{npz_path} is complete and of these settings (pass --force to recompute)")
        return
    rate = record["images_per_second"]
    views = f" x {grid_size ** 2 + 1} views" if args.mode == "damp" else ""
    print(f"wrote {npz_path} and {zero_shot.record_path(npz_path)}: {record['num_images']} images "
          f"({record['images_scored']} scored now{views}) in {record['seconds']:.1f} s, {rate:.3g} images/s on {device}")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    started = time.time()
    try:
        run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
