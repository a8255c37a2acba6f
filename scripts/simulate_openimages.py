"""Table 3 at the paper's size on one machine: a full-size simulation of OpenImages V3 (a benchmark, not a test).

    python scripts/simulate_openimages.py --work /scratch/oi_sim            # the paper's size (about 35 min)
    python scripts/simulate_openimages.py --work /tmp/oi_small --scale 0.01  # 1 %, a few minutes

Writes a fake OpenImages V3 (2017_11) release in the official format, at the paper's size: 3.4 M
train / 42 k validation / 125 k test images, 5,000 trainable classes, annotation CSVs with the
release's line counts (20.9 M / 0.55 M / 1.67 M human verifications, 2 % of them of classes that are
not trainable), and every image a hard link to one of a few dozen small JPEGs (no inode, no space). Then,
each as its own stage, timed and watched:
  - prepare: ``data/prepare.py --dataset openimages`` (the official train, validation and test splits);
  - train: ``torchrun --nproc_per_node 2 main.py`` on the CPU, LL-Cp at the paper's batch of 288, one
    epoch capped at ``--steps`` batches (``--max_steps_per_epoch``), then val (all 42 k images), then
    killed once epoch 1's checkpoint is written;
  - resume: the same command with ``--resume``: epoch 2, val, test (all 125 k images), results.json.
For each stage: wall seconds, peak memory (PSS, from /proc/PID/smaps_rollup twice a second, summed
over the stage's processes and the largest single one) and what it wrote. A watchdog kills a stage
whose processes pass ``--max_gb`` together, and says so. The model is a ResNet-18 at 32 px: the point
is the memory and the protocol at N x K, not the network (docs/speed.md has the figures).

``--repo DIR`` runs another checkout's prepare.py and main.py on the same release (docs/speed.md:
the same figures at 0976ac2).
"""
import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)
import run_files  # noqa: E402  (the run folder's file names: the same in every checkout --repo may name)
# The paper's OpenImages V3 (Section 4.2) and the release's human-verification lines per split.
RELEASE = {"train": (3_400_000, 20_900_000), "validation": (42_000, 550_000), "test": (125_000, 1_670_000)}
NUM_CLASSES = 5000
NOT_TRAINABLE = 0.02            # share of the lines of classes outside classes-trainable.txt
LINKS_PER_SOURCE = 60_000     # ext4 allows 65,000 links to a file


def class_ids(count, prefix):
    return [f"/m/{prefix}{k:05d}" for k in range(count)]


def write_release(root, scale=1.0, num_classes=NUM_CLASSES, seed=0, progress=print):
    """A fake 2017_11 release under ``root`` (the layout of data/README.md, 'openimages') at ``scale``
    of the paper's size: class files, annotations-human.csv per split (lines grouped by image, class
    popularity falling as a power law, so that the groups G1..G5 differ; confidences 0 and 1) and
    images/<split>/<ImageID>.jpg as hard links. Returns {split: (images, lines)}."""
    rng = np.random.RandomState(seed)
    meta = os.path.join(root, "2017_11")
    trainable, other = class_ids(num_classes, "t"), class_ids(max(1, num_classes // 100), "x")
    os.makedirs(meta, exist_ok=True)
    with open(os.path.join(meta, "classes-trainable.txt"), "w") as f:
        f.writelines(f"{mid}\n" for mid in trainable)
    with open(os.path.join(meta, "class-descriptions.csv"), "w") as f:
        f.writelines(f"{mid},Class {mid[3:]}\n" for mid in trainable + other)
    total = sum(max(2, round(images * scale)) for images, _ in RELEASE.values())
    sources = itertools.cycle(source_jpegs(os.path.join(root, "source_jpegs"), rng,
                                           max(8, -(-total // LINKS_PER_SOURCE))))
    popularity = 1.0 / (np.arange(num_classes) + 20.0) ** 0.9
    popularity /= popularity.sum()
    sizes = {}
    for split, (full_images, full_lines) in RELEASE.items():
        num_images, num_lines = max(2, round(full_images * scale)), max(4, round(full_lines * scale))
        ids = np.char.mod("%016x", np.unique(rng.randint(0, 2 ** 62, size=int(num_images * 1.01) + 8,
                                                         dtype=np.int64))[:num_images])
        rng.shuffle(ids)
        per_image = 1 + rng.multinomial(num_lines - num_images, np.full(num_images, 1.0 / num_images))
        write_annotations(os.path.join(meta, split, "annotations-human.csv"), ids, per_image, trainable, other,
                          popularity, rng)
        link_images(os.path.join(root, "images", split), ids, sources)
        sizes[split] = (num_images, num_lines)
        progress(f"release: {split}: {num_images:,} images, {num_lines:,} lines")
    return sizes


def source_jpegs(folder, rng, count):
    """A few small JPEGs (48 x 64), to which every image of the release is a hard link."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(os.path.join(folder, f"{i}.jpg"))
        Image.fromarray(rng.randint(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(paths[-1], quality=90)
    return paths


def write_annotations(path, ids, per_image, trainable, other, popularity, rng, chunk=1_000_000):
    """ImageID,Source,LabelName,Confidence lines, ``per_image`` of them for each image, in chunks."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    names = np.array(trainable + other, dtype=object)
    with open(path, "w") as f:
        f.write("ImageID,Source,LabelName,Confidence\n")
        image_of_line = np.repeat(np.arange(len(ids)), per_image)
        for start in range(0, len(image_of_line), chunk):
            images = image_of_line[start:start + chunk]
            classes = rng.choice(len(trainable), size=len(images), p=popularity)
            outside = rng.rand(len(images)) < NOT_TRAINABLE
            classes[outside] = len(trainable) + rng.randint(0, len(other), size=int(outside.sum()))
            confidence = (rng.rand(len(images)) < 0.4).astype(int)
            f.writelines(f"{i},verification,{c},{v}\n" for i, c, v in zip(ids[images], names[classes], confidence))


def link_images(folder, ids, sources):
    """images/<split>/<ImageID>.jpg, each a hard link to the next of ``sources`` (an endless cycle over
    enough files that none gets more links than ext4 allows)."""
    os.makedirs(folder, exist_ok=True)
    present = set(os.listdir(folder))
    for image in ids:
        if f"{image}.jpg" not in present:
            os.link(next(sources), os.path.join(folder, f"{image}.jpg"))


# ------------------------------------------------------------------ watched stages

def process_tree(root):
    """The live processes descended from ``root`` (and ``root``), found through /proc's parent ids:
    torchrun starts its workers in sessions of their own, so a process group would miss them."""
    children = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(name))
        except (OSError, ValueError, IndexError):
            continue                    # not a process, or it ended meanwhile
    tree, todo = [], [root]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def tree_pss(pids):
    """{pid: PSS bytes} (/proc/PID/smaps_rollup) of the processes still alive."""
    sizes = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                sizes[pid] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return sizes


def run_stage(name, command, log_path, max_bytes, stop=None):
    """Run ``command``, its output to ``log_path``; watch the memory of its process tree twice a
    second. Killed when its processes pass ``max_bytes`` together (the machine's safety) or when
    ``stop()`` says so. Returns a dict of the stage's figures."""
    start, peak_total, peak_one, outcome = time.time(), 0, 0, None
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        polls = 0
        while process.poll() is None:
            if polls % 10 == 0:                    # memory twice a second, the stop condition more often
                sizes = tree_pss(process_tree(process.pid))
                total = sum(sizes.values())
                peak_total, peak_one = max(peak_total, total), max(peak_one, max(sizes.values(), default=0))
                if total > max_bytes:
                    outcome = f"killed by the watchdog at {total / 2**30:.1f} GB after {time.time() - start:.0f} s"
            if outcome is None and stop is not None and stop():
                outcome = "stopped, as planned"
            if outcome:
                for pid in process_tree(process.pid)[::-1]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                process.wait()
                break
            polls += 1
            time.sleep(0.05)
    return {"stage": name, "seconds": round(time.time() - start, 1), "peak_gb_total": round(peak_total / 2**30, 2),
            "peak_gb_process": round(peak_one / 2**30, 2), "exit": outcome or f"exit {process.returncode}",
            "log": log_path}


def folder_bytes(folder):
    """Bytes of the files under ``folder``, not following links (the prepared folder links the images)."""
    total = 0
    for parent, _, files in os.walk(folder):
        total += sum(os.lstat(os.path.join(parent, f)).st_size for f in files)
    return total


def train_command(repo, data, runs, nproc, steps, resume=False):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            os.path.join(repo, "main.py"), "--dataset", "openimages", "--data_dir", data, "--save_path", runs,
            "--exp_name", "sim", "--mod_scheme", "LL-Cp", "--delta_rel", "0.2", "--arch", "resnet18", "--weights",
            "none", "--image_size", "32", "--bsize", "288", "--max_steps_per_epoch", str(steps), "--num_epochs", "2",
            "--num_workers", "1", "--device", "cpu", "--amp", "none", *(["--resume"] if resume else [])]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="a folder with room for the release and the prepared data "
                                                  "(about 3 GB at full size; the images are hard links)")
    p.add_argument("--scale", type=float, default=1.0, help="of the paper's image and line counts")
    p.add_argument("--steps", type=int, default=3, help="training batches of 288 per epoch")
    p.add_argument("--nproc", type=int, default=2, help="processes (torchrun --nproc_per_node)")
    p.add_argument("--max_gb", type=float, default=20.0, help="kill a stage whose processes pass this together")
    p.add_argument("--repo", default=REPO_DIR, help="the checkout whose data/prepare.py and main.py run")
    p.add_argument("--stages", nargs="+", default=["prepare", "train", "resume"], choices=("prepare", "train", "resume"))
    args = p.parse_args(argv)
    raw, data, runs = (os.path.join(args.work, name) for name in ("raw", "data", "runs"))
    if not os.path.isfile(os.path.join(raw, "release.json")):
        begun = time.time()
        sizes = write_release(raw, args.scale)
        with open(os.path.join(raw, "release.json"), "w") as f:
            json.dump({"scale": args.scale, "sizes": sizes, "seconds": round(time.time() - begun, 1)}, f)
    max_bytes = args.max_gb * 2**30
    results = []
    os.makedirs(runs, exist_ok=True)
    log = os.path.join(runs, "sim", run_files.LOG)
    for stage in args.stages:
        if stage == "prepare":
            shutil.rmtree(data, ignore_errors=True)
            command = [sys.executable, os.path.join(args.repo, "data", "prepare.py"), "--dataset", "openimages",
                       "--root", raw, "--out", data]
            results.append(run_stage("prepare", command, os.path.join(args.work, "prepare.log"), max_bytes))
            results[-1]["written_gb"] = round(folder_bytes(data) / 2**30, 3) if os.path.isdir(data) else None
        elif stage == "train":
            shutil.rmtree(os.path.join(runs, "sim"), ignore_errors=True)
            results.append(run_stage(
                "train: epoch 1 + val, killed after its checkpoint", train_command(args.repo, data, runs, args.nproc, args.steps),
                os.path.join(args.work, "train.log"), max_bytes,
                stop=lambda: os.path.isfile(log) and os.path.getsize(log) > 0))
        else:
            results.append(run_stage("resume: epoch 2 + val + test", train_command(
                args.repo, data, runs, args.nproc, args.steps, resume=True), os.path.join(args.work, "resume.log"), max_bytes))
            last = os.path.join(runs, "sim", run_files.LAST)
            results[-1]["last_pt_gb"] = round(os.path.getsize(last) / 2**30, 3) if os.path.isfile(last) else None
        print(json.dumps(results[-1]), flush=True)
    with open(os.path.join(args.work, "simulation.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| stage | wall (s) | peak PSS, all processes (GB) | peak PSS, one process (GB) | outcome |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['stage']} | {r['seconds']} | {r['peak_gb_total']} | {r['peak_gb_process']} | {r['exit']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
