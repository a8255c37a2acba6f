"""Where the time goes: images/s of the training step, the input pipeline and evaluation.

    python scripts/bench.py --arch resnet50 --image_size 448 --bsize 16 --jpegs 640x480   # the paper's step
    python scripts/bench.py --arch resnet18 --image_size 64 --device cpu --dataset demo   # a CPU check

Each measurement runs an official-equivalent baseline (fp32, channels-first, PIL pipeline,
per-class sklearn AP) and our setting side by side in the same process, so every speedup is a
ratio on the same machine:
  - model step: forward + LL-Ct loss + backward + optimizer on synthetic tensors (and compiled,
    with --compile);
  - LL overhead: the large-loss selection and loss alone, as a share of our model step;
  - with images (--dataset, or --jpegs WxH: generated JPEGs of that size, e.g. COCO's 640x480):
    the loader alone, batches on the device: the official pipeline (PIL decode, Resize, flip,
    ToTensor, Normalize; float32 from the workers) vs ours (uint8 from the workers, normalised on
    the device), same workers; each stage's ms/image; the full training step (loader + model
    step), and what it makes of an epoch of VOC and COCO;
  - mAP: per-class sklearn loop vs our vectorised AP (on the benchmark's device) on random scores
    with ties; above --sklearn_classes classes sklearn runs on that many and is extrapolated.
Prints a table and writes the numbers as JSON (--out).
"""
import argparse
import itertools
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image, ImageDraw
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


def make_step(arch, num_classes, device, amp, channels_last, compile=False):
    """A training step on a batch of images with LL-Ct's loss (epoch 5, 0.2 %/epoch): the official
    setting with amp=None and channels_last=False."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(arch, num_classes, "none").to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    forward = torch.compile(model) if compile else model
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def step(images):
        labels = torch.zeros(len(images), num_classes, dtype=torch.int8, device=device)
        labels[:, 0] = 1
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = forward(images.contiguous(memory_format=memory_format))
        loss, _ = ll_ct_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return step


def model_step_fn(arch, num_classes, bsize, image_size, device, amp, channels_last, compile=False):
    """``make_step`` on one fixed synthetic batch: the model's speed without the input pipeline."""
    step = make_step(arch, num_classes, device, amp, channels_last, compile)
    images = torch.randn(bsize, 3, image_size, image_size, device=device)
    return lambda: step(images)


def ll_loss_fn(bsize, num_classes, device):
    logits = torch.randn(bsize, num_classes, device=device, requires_grad=True)
    labels = torch.zeros(bsize, num_classes, dtype=torch.int8, device=device)
    labels[:, 0] = 1

    def step():
        loss, _ = ll_ct_loss(logits, labels)
        loss.backward()
    return step


def ll_ct_loss(logits, labels):
    """LL-Ct's loss in epoch 5 at 0.2 %/epoch: the k = ceil(B K 0.8 %) largest unobserved losses corrected."""
    return losses.large_loss(logits, labels, correct=True, k=losses.num_to_modify(*logits.shape, losses.growing_rate(5, 0.2)))


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


def write_jpeg_dataset(size, num_images=128, num_classes=80):
    """A formatted dataset (data/README.md) of ``num_images`` generated JPEGs of ``size`` (W, H):
    smooth gradients, noise and shapes at quality 90, about as costly to decode as photographs of
    that size (640 x 480: ~140 KB, as COCO's). Written once into the temporary folder; returns it."""
    width, height = size
    folder = os.path.join(tempfile.gettempdir(), f"llm_bench_jpegs_{width}x{height}_{num_images}")
    if os.path.exists(os.path.join(folder, "formatted_val_labels_obs.npy")):
        return folder
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    rng = np.random.RandomState(0)
    ys, xs = np.mgrid[0:height, 0:width]
    names = []
    for i in range(num_images):
        base = rng.randint(0, 256, size=3) * (xs[..., None] / width) + rng.randint(0, 256, size=3) * (ys[..., None] / height)
        pixels = np.clip(base / 2 + 64 + rng.normal(0, 12, size=(height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = rng.randint(0, width), rng.randint(0, height)
            draw.ellipse([x0, y0, x0 + rng.randint(1, width // 3 + 2), y0 + rng.randint(1, height // 3 + 2)],
                         fill=tuple(int(c) for c in rng.randint(0, 256, size=3)))
        names.append(f"images/{i:05d}.jpg")
        image.save(os.path.join(folder, names[-1]), quality=90)
    labels = (rng.rand(num_images, num_classes) < 0.05).astype(np.float32)
    labels[np.arange(num_images), rng.randint(num_classes, size=num_images)] = 1
    observed = datasets.generate_observed_labels(labels)
    for phase in ("train", "val"):
        np.save(os.path.join(folder, f"formatted_{phase}_images.npy"), np.array(names))
        np.save(os.path.join(folder, f"formatted_{phase}_labels.npy"), labels)
        np.save(os.path.join(folder, f"formatted_{phase}_labels_obs.npy"), observed)
    return folder


def loader_split(args):
    """The config and training split of the benchmark's images: --dataset, or --jpegs."""
    dataset, data_dir = args.dataset, args.data_dir
    if args.jpegs:
        dataset, data_dir = "custom", write_jpeg_dataset(tuple(int(v) for v in args.jpegs.split("x")))
    cfg = build_config(get_args_parser().parse_args(
        ["--dataset", dataset, "--image_size", str(args.image_size), "--bsize", str(args.bsize),
         "--num_workers", str(args.num_workers)] + (["--data_dir", data_dir] if data_dir else [])))
    if cfg.dataset == "demo":
        from data.demo import ensure_demo_dataset
        ensure_demo_dataset(cfg.data_dir)
    return cfg, datasets.load_splits(cfg)["train"]


def training_loader(cfg, split, official):
    """The official or our training loader over ``split`` (the same images and flips for both)."""
    generator = torch.Generator().manual_seed(0)
    if official:
        return DataLoader(UpstreamImageDataset(split.images, cfg.image_size), batch_size=cfg.bsize,
                          sampler=datasets.ShuffleFlipSampler(len(split), generator),
                          num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
    return make_loader(split, cfg, train=True, generator=generator)


def images_per_s(loader, official, device, num_batches, step=None, warmup=0):
    """Images/s of ``num_batches`` batches of ``loader`` moved to ``device`` (ours normalised there),
    each given to ``step`` if any; the loader cycles when it has fewer batches. Worker start-up is
    counted, alike for both loaders, unless ``warmup`` batches go first."""
    batches = itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), num_batches + warmup)
    seen = 0
    for i, (images, _) in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, seen = time.perf_counter(), 0
        images = images.to(device, non_blocking=True) if official else to_device(images, device)
        if step is not None:
            step(images)
        seen += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def loader_images_per_s(cfg, split, max_batches, device, rounds=2):
    """Images/s of the official and our training loaders over the same images, flips and workers;
    the best of ``rounds`` alternated runs, so neither profits alone from the page cache the
    other filled."""
    best = {"official": 0.0, "ours": 0.0}
    for _ in range(rounds):
        for name in best:
            official = name == "official"
            best[name] = max(best[name], images_per_s(training_loader(cfg, split, official), official, device,
                                                      max_batches))
    return best


def full_step_images_per_s(cfg, split, args, device, amp, channels_last):
    """Images/s of the whole training step, loader included: the official pipeline and fp32
    channels-first step vs ours."""
    result = {}
    for name, official in (("official", True), ("ours", False)):
        step = make_step(args.arch, split.labels_obs.shape[1], device, None if official else amp,
                         channels_last and not official)
        result[name] = images_per_s(training_loader(cfg, split, official), official, device, args.steps,
                                    step, warmup=args.warmup)
    return result


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


def random_scores(num_examples, num_classes, seed=0, block=10_000):
    """5 % positives and float32 scores with ties (3 decimals), generated in row blocks so that
    125,000 x 5,000 needs no float64 matrix."""
    rng = np.random.RandomState(seed)
    y_true = np.empty((num_examples, num_classes), dtype=bool)
    y_score = np.empty((num_examples, num_classes), dtype=np.float32)
    for start in range(0, num_examples, block):
        rows = slice(start, min(start + block, num_examples))
        y_true[rows] = rng.rand(rows.stop - start, num_classes) < 0.05
        y_score[rows] = np.round(rng.rand(rows.stop - start, num_classes), 3)
    return y_true, y_score


def map_seconds(num_examples, num_classes, device, sklearn_classes):
    """Seconds of sklearn's per-class loop (timed on at most ``sklearn_classes`` random classes and
    scaled to all) and of our AP of every class; checks that they agree to 1e-9."""
    y_true, y_score = random_scores(num_examples, num_classes)
    classes = np.sort(np.random.RandomState(1).permutation(num_classes)[:sklearn_classes])
    repeats = 3 if num_examples * len(classes) <= 10_000_000 else 1     # the best of 3 where a run is short
    results = {}

    def best(name, fn):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            results[name] = fn()
            seconds.append(time.perf_counter() - start)
        return min(seconds)
    t_ours = best("ours", lambda: average_precision_per_class(y_true, y_score, device=device))
    t_sklearn = best("sklearn", lambda: [average_precision_score(y_true[:, k], y_score[:, k]) for k in classes])
    t_sklearn *= num_classes / len(classes)
    assert np.allclose(results["ours"][classes], results["sklearn"], atol=1e-9)
    return t_sklearn, t_ours, len(classes)


# Training images per epoch (our train split: 80 % of the official train set), for the epoch times.
EPOCH_IMAGES = {"VOC": 4_574, "COCO": 65_665}


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
                   help="also time our model step with torch.compile (as main.py --compile); the compilation "
                        "is timed apart")
    p.add_argument("--steps", type=int, default=10, help="timed steps (full step: batches)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dataset", default=None, help="time the input pipeline and the full step on this dataset")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--jpegs", default=None, metavar="WxH",
                   help="instead of --dataset: 128 generated JPEGs of this size (COCO: 640x480, VOC: 500x375)")
    p.add_argument("--num_workers", type=int, default=4)
    p.add_argument("--map_sizes", default="40000x80", help="comma-separated NxK score matrices for the mAP timing "
                                                           "(OpenImages' test set: 125000x5000)")
    p.add_argument("--sklearn_classes", type=int, default=250,
                   help="sklearn's loop is timed on at most this many classes and scaled to all")
    p.add_argument("--out", default="bench.json")
    args = p.parse_args()
    device = torch.device(args.device)
    amp = AMP_DTYPES[args.amp or ("bf16" if device.type == "cuda" else "none")]
    channels_last = device.type == "cuda"

    rows = []         # (measure, official, ours, "rate" (higher is better) or "time")
    results = {"args": vars(args), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch_threads": torch.get_num_threads()}
    step_kwargs = dict(arch=args.arch, num_classes=args.num_classes, bsize=args.bsize,
                       image_size=args.image_size, device=device)
    t_base = timed(model_step_fn(**step_kwargs, amp=None, channels_last=False), args.steps, args.warmup, device)
    t_ours = timed(model_step_fn(**step_kwargs, amp=amp, channels_last=channels_last), args.steps, args.warmup, device)
    results["model_step"] = {"baseline_images_per_s": args.bsize / t_base, "ours_images_per_s": args.bsize / t_ours}
    rows.append(("model step (images/s)", args.bsize / t_base, args.bsize / t_ours, "rate"))
    if args.compile:
        start = time.perf_counter()
        compiled_step = model_step_fn(**step_kwargs, amp=amp, channels_last=channels_last, compile=True)
        compiled_step()                                          # compiles
        results["compile_s"] = time.perf_counter() - start
        t_compiled = timed(compiled_step, args.steps, args.warmup, device)
        results["model_step"]["compiled_images_per_s"] = args.bsize / t_compiled
        rows.append(("  compiled (images/s)", args.bsize / t_base, args.bsize / t_compiled, "rate"))
        rows.append(("  compilation (s)", None, results["compile_s"], "time"))
    t_ll = timed(ll_loss_fn(args.bsize, args.num_classes, device), args.steps * 10, args.warmup, device)
    results["ll_loss_share_of_step"] = t_ll / t_ours
    rows.append(("LL loss, % of our step", None, 100 * t_ll / t_ours, "time"))
    if args.dataset or args.jpegs:
        cfg, split = loader_split(args)
        results["loader_images_per_s"] = loader_images_per_s(cfg, split, args.steps * 5, device)
        results["loader_stage_ms_per_image"] = pipeline_stage_ms(split.images[:2 * args.bsize], args.image_size,
                                                                 args.bsize, device)
        loader, stages = results["loader_images_per_s"], results["loader_stage_ms_per_image"]
        rows.append((f"loader, {args.num_workers} workers (images/s)", loader["official"], loader["ours"], "rate"))
        rows += [(f"  {stage} (ms/image)", ms["official"], ms["ours"], "time") for stage, ms in stages.items()]
        full = results["full_step_images_per_s"] = full_step_images_per_s(cfg, split, args, device, amp, channels_last)
        rows.append(("full step (images/s)", full["official"], full["ours"], "rate"))
        for name, count in EPOCH_IMAGES.items():
            minutes = {k: count / v / 60 for k, v in full.items()}
            results[f"epoch_minutes_{name}"] = minutes
            rows.append((f"  {name} epoch, {count:,} images (min)", minutes["official"], minutes["ours"], "time"))
    for size in args.map_sizes.split(","):
        n, k = (int(v) for v in size.split("x"))
        t_sklearn, t_vec, timed_classes = map_seconds(n, k, device, args.sklearn_classes)
        results[f"map_{size}"] = {"sklearn_s": t_sklearn, "ours_s": t_vec, "sklearn_classes_timed": timed_classes}
        note = f", sklearn x{k / timed_classes:g}" if timed_classes < k else ""
        rows.append((f"mAP {size} (s{note})", t_sklearn, t_vec, "time"))

    print(f"{'measure':38s} {'official':>10s} {'ours':>10s} {'speedup':>8s}")
    for name, base, ours, kind in rows:
        fmt = lambda v: f"{'':10s}" if v is None else f"{v:10.2f}" if v >= 0.1 else f"{v:10.2g}"   # noqa: E731
        speedup = f"{(ours / base if kind == 'rate' else base / ours):7.2f}x" if base and ours else ""
        print(f"{name:38s} {fmt(base)} {fmt(ours)} {speedup}")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
