"""Shared by the experiment scripts: the common flags, the main.py command of each run, and a
launcher that lists the runs (--dry_run) or starts the unfinished ones, one after another.

A run is one call of main.py into its own folder ``<save_path>/<name>``. A folder that holds
results.json is finished and skipped; one that holds last.pt only was interrupted and is continued
with --resume; so rerunning a script resumes a sweep where it stopped.
"""
import argparse
import dataclasses
import os
import subprocess
import sys

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_DIR, "main.py")
sys.path.insert(0, REPO_DIR)
import methods  # noqa: E402  (after the repository is on the path)

# --demo: the demo dataset with the small-model flags of the README's quick start, so a script's
# whole pipeline runs on a CPU in minutes: ResNet-18 from the demo's pretrained weights (the stand-in
# for ImageNet, data/demo_backbone.py), at a fine-tuning lr. 6 epochs at delta_rel 3 %/epoch modify up
# to 15 % of the entries; the paper's 0.1-0.5 %/epoch would barely act in 6 epochs.
DEMO_FLAGS = ["--arch", "resnet18", "--weights", "demo", "--image_size", "64", "--lr", "1e-4",
              "--num_epochs", "6", "--num_workers", "2"]
DEMO_DELTA_REL = 3.0

# The rows of Tables 2 and 3: folder key, main.py flags. LL-* rows take the authors' delta_rel for
# the dataset (config.PAPER_SETTINGS) unless a script passes --delta_rel.
METHODS = {
    "full": ["--mod_scheme", "AN", "--train_set_variant", "clean"],
    "AN": ["--mod_scheme", "AN"],
    "WAN": ["--mod_scheme", "WAN"],
    "LSAN": ["--mod_scheme", "LSAN"],
    "EPR": ["--mod_scheme", "EPR"],
    "ROLE": ["--mod_scheme", "ROLE"],
    "IU": ["--mod_scheme", "IU"],
    "LL-R": ["--mod_scheme", "LL-R"],
    "LL-Ct": ["--mod_scheme", "LL-Ct"],
    "LL-Cp": ["--mod_scheme", "LL-Cp"],
}
LL_METHODS = ("LL-R", "LL-Ct", "LL-Cp")
# Not rows of the paper, added by name (--methods): every registered method that is not one (CSL, EM,
# EM-APL, GR-Loss, ...), and the LL schemes with BoostLU.
BEYOND_PAPER = {name: ["--mod_scheme", name] for name, m in methods.REGISTRY.items() if not m.paper_row}
BEYOND_PAPER.update({f"{scheme}+BoostLU": ["--mod_scheme", scheme, "--boostlu"] for scheme in LL_METHODS})
METHODS.update(BEYOND_PAPER)


def row_flags(method, dataset):
    """The flags a method's entry adds on a dataset (its authors' batch size, ...; methods.Method.row_flags)."""
    args = METHODS[method]
    return methods.get(args[args.index("--mod_scheme") + 1]).row_flags(dataset)

# The one place that decides under which training protocol (main.py --protocol, config.PROTOCOLS) each
# row runs: the protocol that made its published number. The LL paper cites Cole et al. [7] for WAN,
# LSAN, EPR and ROLE, so those rows run Cole et al.'s way, with their search over COLE_SEARCH. Full
# label, Naive AN, Naive IU, the LL rows and CSL run under the LL paper's settings (README "Table 2").
# The methods after the paper (BEYOND_PAPER) report their numbers under the LL protocol, with their
# authors' own batch size and stopping (row_flags).
ROW_PROTOCOLS = {"full": "ll", "AN": "ll", "WAN": "cole", "LSAN": "cole", "EPR": "cole", "ROLE": "cole",
                 "IU": "ll", "LL-R": "ll", "LL-Ct": "ll", "LL-Cp": "ll", "CSL": "ll",
                 **{name: "ll" for name in BEYOND_PAPER}}


@dataclasses.dataclass
class Run:
    name: str          # folder name under the script's --save_path
    dataset: str
    args: list         # main.py flags besides --dataset, --data_dir, --save_path, --exp_name


def script_parser(doc, save_name):
    """The flags every experiment script shares. Unknown flags are passed on to main.py."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=os.path.join(REPO_DIR, "data"),
                   help="parent folder holding one formatted folder per dataset (<data_dir>/coco, ...; "
                        "data/README.md)")
    p.add_argument("--seeds", type=int, default=1, help="number of training seeds: 0, 1, ..., seeds-1")
    p.add_argument("--save_path", default=save_name and os.path.join("runs", save_name),
                   help="the runs' parent folder (default runs/<table or figure>)")
    p.add_argument("--nproc_per_node", type=int, default=1,
                   help="GPUs per run: above 1, each run starts under torchrun with this many processes, "
                        "which share each --bsize batch (README 'Several GPUs')")
    p.add_argument("--dry_run", action="store_true", help="list the runs and their state; start nothing")
    p.add_argument("--demo", action="store_true",
                   help="run on the demo dataset with a small model (ResNet-18 from scratch, 64 px, 6 "
                        "epochs): the whole pipeline on a CPU in minutes")
    return p


def parse(parser, argv):
    """(options, flags for main.py): what the script does not know goes to every run. Paths become
    absolute, since the runs start in the repository folder."""
    opts, passthrough = parser.parse_known_args(argv)
    opts.data_dir = os.path.abspath(opts.data_dir)
    if opts.save_path is not None:
        opts.save_path = os.path.abspath(opts.save_path)
    return opts, passthrough


def method_runs(methods, datasets, seeds, extra=(), suffix=""):
    """One run per method, dataset and seed, named <dataset>_<method><suffix>_s<seed>."""
    return [Run(f"{dataset}_{method}{suffix}_s{seed}", dataset,
                [*METHODS[method], *row_flags(method, dataset), *extra, "--seed", str(seed)])
            for dataset in datasets for method in methods for seed in range(seeds)]


def protocol_runs(methods, datasets, seeds, search, extra_of=lambda protocol: ()):
    """The runs of table rows, each under its ROW_PROTOCOLS protocol: one run per dataset and seed for
    an LL row, <dataset>_<method>_s<seed>; a Cole row, one per (bsize, lr) of ``search`` (a dict like
    config.COLE_SEARCH), <dataset>_<method>_b<bsize>_lr<lr>_s<seed>, of which the collector keeps the
    best on val mAP. ``extra_of(protocol)``: more main.py flags for the rows of that protocol."""
    runs = []
    for dataset in datasets:
        for method in methods:
            protocol = ROW_PROTOCOLS[method]
            flags = [*METHODS[method], *row_flags(method, dataset), "--protocol", protocol, *extra_of(protocol)]
            grid = ([(b, lr) for b in search["bsize"] for lr in search["lr"]] if protocol == "cole" else [None])
            for seed in range(seeds):
                for pair in grid:
                    if pair is None:
                        runs.append(Run(f"{dataset}_{method}_s{seed}", dataset, [*flags, "--seed", str(seed)]))
                    else:
                        runs.append(Run(f"{dataset}_{method}_b{pair[0]}_lr{pair[1]:g}_s{seed}", dataset,
                                        [*flags, "--bsize", str(pair[0]), "--lr", str(pair[1]), "--seed", str(seed)]))
    return runs


def command(run, opts, passthrough=()):
    """The main.py command line of a run (without --resume)."""
    demo = [*DEMO_FLAGS] if opts.demo else []
    if opts.demo and "--delta_rel" not in run.args and any(m in run.args for m in LL_METHODS):
        demo += ["--delta_rel", str(DEMO_DELTA_REL)]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={opts.nproc_per_node}"]
                if opts.nproc_per_node > 1 else [sys.executable])
    # The demo's flags before the run's, so a searched --lr or --bsize wins; the user's last.
    return [*launcher, MAIN, "--dataset", run.dataset, "--data_dir", os.path.join(opts.data_dir, run.dataset),
            "--save_path", opts.save_path, "--exp_name", run.name, *demo, *run.args, "--amp", "none", *passthrough]


def run_state(run, opts):
    """'done' (results.json), 'resume' (last.pt only) or 'new'."""
    folder = os.path.join(opts.save_path, run.name)
    if os.path.exists(os.path.join(folder, "results.json")):
        return "done"
    return "resume" if os.path.exists(os.path.join(folder, "last.pt")) else "new"


def launch(runs, opts, passthrough=()):
    """List the runs; unless --dry_run, start each unfinished one in turn. Returns the exit status:
    0 when every run finished, 1 when one failed (the others still run)."""
    states = [run_state(run, opts) for run in runs]
    print(f"{len(runs)} runs in {opts.save_path}: {states.count('done')} done, "
          f"{states.count('resume')} to resume, {states.count('new')} new")
    for run, state in zip(runs, states):
        print(f"[{state}] {' '.join(command(run, opts, passthrough)[1:])}")
    if opts.dry_run:
        return 0
    failed = []
    for run, state in zip(runs, states):
        if state == "done":
            continue
        print(f"\n=== {run.name} ===", flush=True)
        resume = ["--resume"] if state == "resume" else []
        if subprocess.run([*command(run, opts, passthrough), *resume], cwd=REPO_DIR).returncode != 0:
            failed.append(run.name)
    if failed:
        print(f"\n{len(failed)} runs failed: {', '.join(failed)}; rerun the script to retry them")
        return 1
    print(f"\nAll {len(runs)} runs finished in {opts.save_path}")
    return 0
