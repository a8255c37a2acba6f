"""Where the time goes: images/s of the training step, the input pipeline and evaluation.

    python scripts/bench.py --arch resnet50 --image_size 448 --bsize 16 --device cuda --amp bf16
    python scripts/bench.py --arch resnet18 --image_size 64 --device cpu --dataset demo   # a CPU check

Each measurement runs an official-equivalent baseline (fp32, channels-first, per-class sklearn AP)
and our setting side by side in the same process, so every speedup is a ratio on the same machine:
  - model step: forward + assume-negative/LL loss + backward + optimizer on synthetic tensors;
  - LL overhead: the large-loss selection and loss alone, as a share of the model step;
  - loader (if --dataset): images/s of the dataset's training pipeline, batches on the device: the
    official one (PIL decode, Resize, flip, ToTensor, Normalize; float32 from the workers) vs ours
    (uint8 from the workers, normalised on the device), same workers; and each stage's ms/image;
  - mAP: per-class sklearn loop vs our vectorised AP (on the benchmark's device) on random scores
    with ties.
Prints a table and writes the numbers as JSON (--out).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import average_precision_score
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402  (needs the path above)
import losses  # noqa: E402
from config import build_config, get_args_parser  # noqa: E402
from metrics import average_precision_per_class  # noqa: E402
from models import build_model  # noqa: E402
from train import make_loader, to_device  # noqa: E402

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def timed(fn, steps, warmup, device):
    """Seconds per call of fn, after warm-up calls, synchronising CUDA around the timed calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def model_step_fn(arch, num_classes, bsize, image_size, device, amp, channels_last, compile=False):
    """One training step on fixed synthetic tensors, with LL-Ct's loss (epoch 5, 0.2 %/epoch)."""
    model = build_model(arch, num_classes, "none").to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    forward = torch.compile(model) if compile else model
    images = torch.randn(bsize, 3, image_size, image_size, device=device).to(memory_format=memory_format)
    labels = torch.zeros(bsize, num_classes, dtype=torch.int8, device=device)
    labels[:, 0] = 1
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = forward(images)
        loss, _ = losses.compute_batch_loss(logits, labels, "LL-Ct", 0.2, 5)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return step


def ll_loss_fn(bsize, num_classes, device):
    logits = torch.randn(bsize, num_classes, device=device, requires_grad=True)
    labels = torch.zeros(bsize, num_classes, dtype=torch.int8, device=device)
    labels[:, 0] = 1

    def step():
        loss, _ = losses.compute_batch_loss(logits, labels, "LL-Ct", 0.2, 5)
        loss.backward()
    return step


class UpstreamImageDataset(Dataset):
    """The official per-image pipeline: PIL decode, Resize, flip (here the sampler's), ToTensor, Normalize."""

    def __init__(self, paths, image_size):
        self.paths = paths
        self.resize = transforms.Resize((image_size, image_size))
        self.to_input = transforms.Compose([transforms.ToTensor(),
                                            transforms.Normalize(datasets.IMAGENET_MEAN, datasets.IMAGENET_STD)])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        idx, flip = item
        with Image.open(self.paths[idx]) as image:
            image = self.resize(image.convert("RGB"))
        return self.to_input(image.transpose(Image.FLIP_LEFT_RIGHT) if flip else image), idx


def loader_split(args):
    """The config and training split of the benchmark's --dataset."""
    cfg = build_config(get_args_parser().parse_args(
        ["--dataset", args.dataset, "--image_size", str(args.image_size), "--bsize", str(args.bsize),
         "--num_workers", str(args.num_workers)] + (["--data_dir", args.data_dir] if args.data_dir else [])))
    if cfg.dataset == "demo":
        from data.demo import ensure_demo_dataset
        ensure_demo_dataset(cfg.data_dir)
    return cfg, datasets.load_splits(cfg)["train"]


def loader_images_per_s(cfg, split, max_batches, device, rounds=2):
    """Images/s of the official and our training loaders over the same images, flips and workers,
    each batch moved to ``device`` (ours normalised there); the best of ``rounds`` alternated runs,
    so neither profits alone from the page cache the other filled."""
    def run(official):
        generator = torch.Generator().manual_seed(0)          # the same images and flips for both
        if official:
            loader = DataLoader(UpstreamImageDataset(split.images, cfg.image_size), batch_size=cfg.bsize,
                                sampler=datasets.ShuffleFlipSampler(len(split), generator),
                                num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
        else:
            loader = make_loader(split, cfg, train=True, generator=generator)
        start, seen = time.perf_counter(), 0
        for i, (images, _) in enumerate(loader):       # worker start-up counted alike for both
            images = images.to(device, non_blocking=True) if official else to_device(images, device)
            seen += len(images)
            if i + 1 == max_batches:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return seen / (time.perf_counter() - start)

    best = {"official": 0.0, "ours": 0.0}
    for _ in range(rounds):
        for name in best:
            best[name] = max(best[name], run(name == "official"))
    return best


def pipeline_stage_ms(paths, image_size, bsize, device, reps=3):
    """ms/image of each stage, official vs ours, in this process (torch's threads), on ``paths``.
    resize: PIL's vs ``datasets.image_transform`` (the copy out of PIL included); normalise:
    ToTensor + Normalize on each image vs ``datasets.normalize`` of a batch on ``device``."""
    def per_image(fn, items):
        return 1e3 * min(timed(lambda: [fn(x) for x in items], 1, 1, device) for _ in range(reps)) / len(items)

    def decode(path):
        with Image.open(path) as image:
            return image.convert("RGB")
    images = [decode(p) for p in paths]
    official_resize, our_resize = transforms.Resize((image_size, image_size)), datasets.image_transform(image_size)
    resized = [official_resize(image) for image in images]
    batch = torch.stack([our_resize(image) for image in images[:bsize]]).to(device)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    decode_ms = per_image(decode, paths)            # the same PIL decode in both
    return {"decode": {"official": decode_ms, "ours": decode_ms},
            "resize": {"official": per_image(official_resize, images), "ours": per_image(our_resize, images)},
            "normalise": {"official": per_image(UpstreamImageDataset(paths, image_size).to_input, resized),
                          "ours": per_image(lambda b: datasets.normalize(b, memory_format), [batch]) / len(batch)}}


def map_seconds(num_examples, num_classes, device):
    rng = np.random.RandomState(0)
    y_true = rng.rand(num_examples, num_classes) < 0.05
    y_score = np.round(rng.rand(num_examples, num_classes), 3).astype(np.float32)   # ties
    start = time.perf_counter()
    ours = average_precision_per_class(y_true, y_score, device=device)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = [average_precision_score(y_true[:, k], y_score[:, k]) for k in range(num_classes)]
    t_sklearn = time.perf_counter() - start
    assert np.allclose(ours, reference, atol=1e-9)
    return t_sklearn, t_ours


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--image_size", type=int, default=448)
    p.add_argument("--bsize", type=int, default=16)
    p.add_argument("--num_classes", type=int, default=80)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", default=None, choices=tuple(AMP_DTYPES),
                   help="our precision; default bf16 on CUDA, none on CPU (bf16 is slow without CPU support)")
    p.add_argument("--compile", action="store_true",
                   help="also time our step with torch.compile (as main.py --compile; the compilation is "
                        "timed apart)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dataset", default=None, help="also time the input pipeline of this dataset")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--num_workers", type=int, default=4)
    p.add_argument("--map_sizes", default="40000x80", help="comma-separated NxK score matrices for the mAP timing")
    p.add_argument("--out", default="bench.json")
    args = p.parse_args()
    device = torch.device(args.device)
    amp = AMP_DTYPES[args.amp or ("bf16" if device.type == "cuda" else "none")]
    channels_last = device.type == "cuda"

    rows, results = [], {"args": vars(args), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    step_kwargs = dict(arch=args.arch, num_classes=args.num_classes, bsize=args.bsize,
                       image_size=args.image_size, device=device)
    t_base = timed(model_step_fn(**step_kwargs, amp=None, channels_last=False), args.steps, args.warmup, device)
    t_ours = timed(model_step_fn(**step_kwargs, amp=amp, channels_last=channels_last), args.steps, args.warmup, device)
    results["model_step"] = {"baseline_images_per_s": args.bsize / t_base, "ours_images_per_s": args.bsize / t_ours}
    rows.append(("model step (images/s)", args.bsize / t_base, args.bsize / t_ours))
    if args.compile:
        start = time.perf_counter()
        compiled_step = model_step_fn(**step_kwargs, amp=amp, channels_last=channels_last, compile=True)
        compiled_step()                                          # compiles
        results["compile_s"] = time.perf_counter() - start
        t_compiled = timed(compiled_step, args.steps, args.warmup, device)
        results["model_step"]["compiled_images_per_s"] = args.bsize / t_compiled
        rows.append(("compiled step (images/s)", args.bsize / t_base, args.bsize / t_compiled))
        rows.append(("compilation (s)", None, results["compile_s"]))
    t_ll = timed(ll_loss_fn(args.bsize, args.num_classes, device), args.steps * 10, args.warmup, device)
    results["ll_loss_share_of_step"] = t_ll / t_ours
    rows.append(("LL loss, % of our step", None, 100 * t_ll / t_ours))
    if args.dataset:
        cfg, split = loader_split(args)
        results["loader_images_per_s"] = loader_images_per_s(cfg, split, args.steps * 5, device)
        results["loader_stage_ms_per_image"] = pipeline_stage_ms(split.images[:2 * args.bsize], args.image_size,
                                                                 args.bsize, device)
        loader, stages = results["loader_images_per_s"], results["loader_stage_ms_per_image"]
        rows.append((f"loader, {args.num_workers} workers (images/s)", loader["official"], loader["ours"]))
        rows += [(f"  {stage} (ms/image)", ms["official"], ms["ours"]) for stage, ms in stages.items()]
    for size in args.map_sizes.split(","):
        n, k = (int(v) for v in size.split("x"))
        t_sklearn, t_vec = map_seconds(n, k, device)
        results[f"map_{size}"] = {"sklearn_s": t_sklearn, "ours_s": t_vec}
        rows.append((f"mAP {size} (s)", t_sklearn, t_vec))

    print(f"{'measure':28s} {'baseline':>12s} {'ours':>12s} {'ratio':>8s}")
    for name, base, ours in rows:
        fmt = lambda v: f"{v:12.2f}" if v is not None else f"{'':12s}"   # noqa: E731
        ratio = f"{(ours / base if 'images' in name else base / ours):8.2f}" if base and ours else ""
        print(f"{name:28s} {fmt(base)} {fmt(ours)} {ratio}")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
