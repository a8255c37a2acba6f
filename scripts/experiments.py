"""Shared by the experiment scripts: the common flags, the main.py command of each run, and a
launcher that lists the runs (--dry_run) or starts the unfinished ones, one after another.

A run is one call of main.py into its own folder ``<save_path>/<name>``. A folder that holds
results.json is finished and skipped; one that holds a last.pt (in it or below it, as a CSL run's
stage-1 model in csl_prior_ignore/) but no results.json was interrupted and is continued with
--resume; so rerunning a script resumes a sweep where it stopped. A run that needs other runs'
results (the fine-tuning runs of a LinearInit search need the linear search's best pair) waits
until they are done; the launcher starts runs in their listed order, so those come first.

Folder names of table rows (protocol_runs), so that no two kinds of run ever share a folder:
    <dataset>_<method>_<protocol>[_li-<style>][_linear][_b<bsize>_lr<lr>]_s<seed>
<protocol>: ll or cole (ROW_PROTOCOLS); _li-<style>: --train_mode linear_init with --linear_init_style
within or cole; _linear: a linear-only run of the LinearInit search (--num_epochs 0), whose
b<bsize>_lr<lr> are --linear_init_bsize / --linear_init_lr; otherwise b<bsize>_lr<lr> are a Cole
search run's --bsize / --lr. Examples: coco_LL-R_ll_s0, coco_LL-R_ll_li-within_s0,
pascal_WAN_cole_b8_lr0.001_s0, pascal_WAN_cole_li-cole_linear_b16_lr0.0001_s0.
"""
import argparse
import dataclasses
import json
import os
import subprocess
import sys
import typing

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_DIR, "main.py")
SCORER = os.path.join(REPO_DIR, "scripts", "zero_shot_scores.py")
sys.path.insert(0, REPO_DIR)
import config  # noqa: E402  (after the repository is on the path: the published linear-phase pairs)
import methods  # noqa: E402
import zero_shot  # noqa: E402

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


# The one place that decides under which training protocol (main.py --protocol, config.PROTOCOLS) each
# row runs: the protocol that made its published number. The LL paper cites Cole et al. [7] for WAN,
# LSAN, EPR and ROLE, so those rows run Cole et al.'s way, with their search over COLE_SEARCH. Full
# label, Naive AN, Naive IU, the LL rows and CSL run under the LL paper's settings (README "Table 2").
# The methods after the paper (BEYOND_PAPER) report their numbers under the LL protocol, with their
# authors' own batch size and stopping (their entry's `settings`, methods.py).
ROW_PROTOCOLS = {"full": "ll", "AN": "ll", "WAN": "cole", "LSAN": "cole", "EPR": "cole", "ROLE": "cole",
                 "IU": "ll", "LL-R": "ll", "LL-Ct": "ll", "LL-Cp": "ll", "CSL": "ll",
                 **{name: "ll" for name in BEYOND_PAPER}}


@dataclasses.dataclass
class BestOf:
    """Flags taken from the best of other runs on their results.json's best_val_map: a fine-tuning
    run of Cole et al.'s LinearInit takes the (lr, bsize) of the best run of the linear search."""
    candidates: dict   # run name -> the flags it gives when it is the best
    waiting: str       # the state of a run while a candidate is unfinished, e.g. "after linear search"

    def flags(self, save_path):
        """The best candidate's flags, or None while one has no results.json yet."""
        scores = {}
        for name in self.candidates:
            path = os.path.join(save_path, name, "results.json")
            if not os.path.exists(path):
                return None
            with open(path) as f:
                scores[name] = json.load(f)["best_val_map"]
        return self.candidates[max(self.candidates, key=scores.get)]

    def placeholder(self):
        """The flags as listed before the candidates finish: their names, each value '<best>'."""
        first = next(iter(self.candidates.values()))
        return [f if f.startswith("--") else "<best>" for f in first]


@dataclasses.dataclass
class Run:
    name: str          # folder name under the script's --save_path
    dataset: str
    args: list         # main.py flags besides --dataset, --data_dir, --save_path, --exp_name
    fixed: list = dataclasses.field(default_factory=list)   # after the user's flags, which must not
                                                            # override them (a linear-only run's --num_epochs 0)
    after: typing.Optional[BestOf] = None                   # flags from other runs' results


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
    for mode, method, model in (("vlpl", "VLPL", "ViT-L/14-336"), ("damp", "AEVLP", "ViT-B/16")):
        p.add_argument(f"--clip_{mode}", default=None, metavar="FILE",
                       help=f"the CLIP {model} weights file from which the {method} rows' zero-shot scores are made "
                            f"first, once per dataset (scripts/zero_shot_scores.py --mode {mode} --weights; "
                            f"docs/methods.md). --demo scores with the demo backbone's own head instead")
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
                [*METHODS[method], *extra, "--seed", str(seed)])
            for dataset in datasets for method in methods for seed in range(seeds)]


def _pair(bsize, lr):
    return f"b{bsize}_lr{lr:g}"


def linear_search_pending(method, dataset, linear_init_style):
    """Whether a row runs the linear-only search first: Cole et al.'s LinearInit with no published
    linear-phase pair for the method on the dataset (config.COLE_LINEAR_INIT: LSAN and ROLE only)."""
    scheme = METHODS[method][METHODS[method].index("--mod_scheme") + 1]
    return linear_init_style == "cole" and config.COLE_LINEAR_INIT.get(scheme, {}).get(dataset) is None


def cole_runs(base, dataset, flags, search, seed, linear_search):
    """A Cole row's runs for one seed: one per (bsize, lr) of ``search``. With ``linear_search``, first
    the linear-only runs, one per (bsize, lr) as the linear phase's pair, 25 epochs, nothing after
    (--num_epochs 0); the fine-tuning runs then take the pair with the best val mAP, as Cole et al. fix
    one linear-phase pair, from a linear-only search, for all their fine-tuning runs."""
    grid = [(b, lr) for b in search["bsize"] for lr in search["lr"]]
    seed_flags = ["--seed", str(seed)]
    linear = {f"{base}_linear_{_pair(b, lr)}_s{seed}": ["--linear_init_lr", str(lr), "--linear_init_bsize", str(b)]
              for b, lr in grid} if linear_search else {}
    # A linear-only run trains no fine-tuning epoch, but --protocol cole requires a --lr: the linear
    # pair as --bsize / --lr too, so its config.json records the pair it ran.
    runs = [Run(name, dataset, [*flags, "--bsize", pair[3], "--lr", pair[1], *pair, *seed_flags],
                fixed=["--num_epochs", "0"]) for name, pair in linear.items()]
    after = BestOf(linear, "after linear search") if linear else None
    runs += [Run(f"{base}_{_pair(b, lr)}_s{seed}", dataset, [*flags, "--bsize", str(b), "--lr", str(lr), *seed_flags],
                 after=after) for b, lr in grid]
    return runs


def protocol_runs(methods, datasets, seeds, search, extra_of=lambda protocol: (),
                  linear_init_style_of=lambda protocol: None):
    """The runs of table rows, each under its ROW_PROTOCOLS protocol, named as the module says: one
    run per dataset and seed for an LL row; a Cole row, one per (bsize, lr) of ``search`` (a dict like
    config.COLE_SEARCH), of which the collector keeps the best on val mAP. ``extra_of(protocol)``: more
    main.py flags for the rows of that protocol; ``linear_init_style_of(protocol)``: their LinearInit
    style (None: end to end), which goes into the folder name and, when cole with no published
    linear-phase pair, adds the linear-only search before a Cole row's runs."""
    runs = []
    for dataset in datasets:
        for method in methods:
            protocol = ROW_PROTOCOLS[method]
            style = linear_init_style_of(protocol)
            flags = [*METHODS[method], "--protocol", protocol, *extra_of(protocol)]
            base = f"{dataset}_{method}_{protocol}" + (f"_li-{style}" if style else "")
            for seed in range(seeds):
                if protocol == "cole":
                    runs += cole_runs(base, dataset, flags, search, seed, linear_search_pending(method, dataset, style))
                else:
                    runs.append(Run(f"{base}_s{seed}", dataset, [*flags, "--seed", str(seed)]))
    return runs


def command(run, opts, passthrough=()):
    """The main.py command line of a run (without --resume); a run waiting on others lists the flags
    it will take from them with the value '<best>'."""
    demo = [*DEMO_FLAGS] if opts.demo else []
    if opts.demo and "--delta_rel" not in run.args and any(m in run.args for m in LL_METHODS):
        demo += ["--delta_rel", str(DEMO_DELTA_REL)]
    after = []
    if run.after is not None:
        after = run.after.flags(opts.save_path) or run.after.placeholder()
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={opts.nproc_per_node}"]
                if opts.nproc_per_node > 1 else [sys.executable])
    # The demo's flags before the run's, so a searched --lr or --bsize wins; the user's after them, then
    # the flags that the run must keep.
    return [*launcher, MAIN, "--dataset", run.dataset, "--data_dir", os.path.join(opts.data_dir, run.dataset),
            "--save_path", opts.save_path, "--exp_name", run.name, *demo, *run.args, *after, "--amp", "none",
            *passthrough, *run.fixed]


def has_checkpoint(folder):
    """Whether a last.pt lies in ``folder`` or below it: a CSL run killed in its stage 1 leaves only
    csl_prior_ignore/last.pt, and main.py refuses to restart such a folder without --resume."""
    return any("last.pt" in files for _, _, files in os.walk(folder))


def run_state(run, opts):
    """'done' (results.json), 'resume' (a last.pt in the folder or below it), the run's waiting state
    (e.g. 'after linear search') while the runs it takes flags from are unfinished, or 'new'."""
    folder = os.path.join(opts.save_path, run.name)
    if os.path.exists(os.path.join(folder, "results.json")):
        return "done"
    if has_checkpoint(folder):
        return "resume"
    if run.after is not None and run.after.flags(opts.save_path) is None:
        return run.after.waiting
    return "new"


def summary(states):
    """'1 done, 1 to resume, 2 new', then the count of each waiting state."""
    waiting = [s for s in dict.fromkeys(states) if s not in ("done", "resume", "new")]
    return ", ".join([f"{states.count('done')} done", f"{states.count('resume')} to resume",
                      f"{states.count('new')} new", *(f"{states.count(s)} {s}" for s in waiting)])


def score_mode(run):
    """The zero-shot score file a run's method reads (methods.Method.scores), or None."""
    return methods.get(run.args[run.args.index("--mod_scheme") + 1]).scores if "--mod_scheme" in run.args else None


def score_steps(runs, opts):
    """The scripts/zero_shot_scores.py command of each (dataset, mode) that the runs read, with
    whether its file is there: [(command, done)]."""
    steps = []
    for dataset, mode in dict.fromkeys((run.dataset, score_mode(run)) for run in runs if score_mode(run)):
        data_dir = os.path.join(opts.data_dir, dataset)
        weights_file = getattr(opts, f"clip_{mode}")
        weights = ["--weights", weights_file] if weights_file and dataset != "demo" else []
        done = os.path.exists(zero_shot.score_paths(data_dir, mode)[1])     # the record is written last
        steps.append(([sys.executable, SCORER, "--dataset", dataset, "--data_dir", data_dir, "--mode", mode,
                       *weights], done))
    return steps


def make_scores(steps):
    """Run the missing score steps; the names of those that failed."""
    failed = []
    for cmd, done in steps:
        if not done:
            print(f"\n=== zero-shot scores: {' '.join(cmd[1:])} ===", flush=True)
            if subprocess.run(cmd, cwd=REPO_DIR).returncode != 0:
                failed.append(f"zero-shot scores of {cmd[cmd.index('--dataset') + 1]}")
    return failed


def launch(runs, opts, passthrough=()):
    """List the runs; unless --dry_run, start each unfinished one in turn, its state read again just
    before (a run may wait on runs started before it). The zero-shot scores that VLPL and AEVLP rows
    read are made first. Returns the exit status: 0 when every run finished, 1 when one failed or
    still waits (the others still run)."""
    states = [run_state(run, opts) for run in runs]
    steps = score_steps(runs, opts)
    for cmd, done in steps:
        print(f"[{'done' if done else 'new'}] {' '.join(cmd[1:])}")
    print(f"{len(runs)} runs in {opts.save_path}: {summary(states)}")
    for run, state in zip(runs, states):
        print(f"[{state}] {' '.join(command(run, opts, passthrough)[1:])}")
    if opts.dry_run:
        return 0
    failed = make_scores(steps)
    for run in runs:
        state = run_state(run, opts)
        if state == "done":
            continue
        if state not in ("resume", "new"):
            print(f"\n=== {run.name}: not started, {state} (a run it waits on failed) ===", flush=True)
            failed.append(run.name)
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
