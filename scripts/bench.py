"""Where the time goes: images/s of the training step, the input pipeline and evaluation.

    python scripts/bench.py --arch resnet50 --image_size 448 --bsize 16 --device cuda --amp bf16
    python scripts/bench.py --arch resnet18 --image_size 64 --device cpu --dataset demo   # a CPU check

Each measurement runs an official-equivalent baseline (fp32, channels-first, per-class sklearn AP)
and our setting side by side in the same process, so every speedup is a ratio on the same machine:
  - model step: forward + assume-negative/LL loss + backward + optimizer on synthetic tensors;
  - LL overhead: the large-loss selection and loss alone, as a share of the model step;
  - loader: images/s of the dataset's training pipeline (PIL decode + resize + flip), if --dataset;
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
from sklearn.metrics import average_precision_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402  (needs the path above)
import losses  # noqa: E402
from config import build_config, get_args_parser  # noqa: E402
from metrics import average_precision_per_class  # noqa: E402
from models import build_model  # noqa: E402
from train import make_loader  # noqa: E402

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


def loader_images_per_s(args, max_batches):
    cfg = build_config(get_args_parser().parse_args(
        ["--dataset", args.dataset, "--image_size", str(args.image_size), "--bsize", str(args.bsize),
         "--num_workers", str(args.num_workers)] + (["--data_dir", args.data_dir] if args.data_dir else [])))
    if cfg.dataset == "demo":
        from data.demo import ensure_demo_dataset
        ensure_demo_dataset(cfg.data_dir)
    loader = make_loader(datasets.load_splits(cfg)["train"], cfg, train=True)
    start, seen = time.perf_counter(), 0
    for i, (images, _) in enumerate(loader):
        seen += len(images)
        if i + 1 == max_batches:
            break
    return seen / (time.perf_counter() - start)


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
        results["loader_images_per_s"] = loader_images_per_s(args, max_batches=args.steps * 5)
        rows.append(("loader (images/s)", results["loader_images_per_s"], None))
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
